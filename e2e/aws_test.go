package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/mototest"
)

// The AWS tests run the real binary against moto (through a fault-injecting
// proxy), pointed at it the way an operator would: AWS_ENDPOINT_URL and static
// credentials in the environment.

// awsEnv is the environment that points an ajar server at proxy (add it to the
// server's, never to the test process's: the tests run in parallel).
func awsEnv(t *testing.T, proxy *mototest.Proxy) []string {
	dir := t.TempDir()
	return []string{
		"AWS_ENDPOINT_URL=" + proxy.URL,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
		"AWS_SESSION_TOKEN=",
		"AWS_REGION=" + mototest.Region,
		"AWS_MAX_ATTEMPTS=1", // the scheduler retries; keep each attempt short
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
		"AWS_PROFILE=",
	}
}

// awsPolicy writes a policy file with the given targets (YAML, indented two
// spaces) that alice may request without approval, and extra top-level sections.
func awsPolicy(t *testing.T, dir, targets, extra string) string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(targets, "\n") {
		if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && strings.HasSuffix(line, ":") {
			names = append(names, strings.TrimSpace(strings.TrimSuffix(line, ":")))
		}
	}
	cfg := fmt.Sprintf(`users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: admin@example.com, groups: [secops]}
admins: [group:secops]
targets:
%s
policies:
  - name: engineers-aws
    targets: [%s]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 1h
    approval: {auto_approve: 'true'}
%s`, targets, strings.Join(names, ", "), extra)
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newSecurityGroup(t *testing.T, c *ec2.Client) string {
	t.Helper()
	out, err := c.CreateSecurityGroup(t.Context(), &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(fmt.Sprintf("e2e-%d", time.Now().UnixNano())), Description: aws.String("ajar e2e"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return *out.GroupId
}

// ingress returns the group's ingress rules by CIDR.
func ingress(t *testing.T, c *ec2.Client, group string) map[string]ec2types.SecurityGroupRule {
	t.Helper()
	out, err := c.DescribeSecurityGroupRules(context.Background(), &ec2.DescribeSecurityGroupRulesInput{
		Filters: []ec2types.Filter{{Name: aws.String("group-id"), Values: []string{group}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ec2types.SecurityGroupRule{}
	for _, r := range out.SecurityGroupRules {
		if !aws.ToBool(r.IsEgress) {
			m[aws.ToString(r.CidrIpv4)] = r
		}
	}
	return m
}

func handAddRule(t *testing.T, c *ec2.Client, group, cidr string) {
	t.Helper()
	_, err := c.AuthorizeSecurityGroupIngress(t.Context(), &ec2.AuthorizeSecurityGroupIngressInput{
		GroupId: aws.String(group),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String(cidr), Description: aws.String("added by hand")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 100ms until it is true, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func actionsOf(evs []ajar.AuditEvent, id string) map[string][]ajar.AuditEvent {
	m := map[string][]ajar.AuditEvent{}
	for _, e := range evs {
		if e.Subject == id {
			m[e.Action] = append(m[e.Action], e)
		}
	}
	return m
}

// TestAWSOutageDuringExpiry: moto becomes unreachable just before a firewall
// window expires. The request stays revoking and retries with backoff, and
// reaches expired once moto is back, with the rule gone.
func TestAWSOutageDuringExpiry(t *testing.T) {
	parallel(t, costLong)
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	srvEnv := awsEnv(t, proxy)
	c := ec2.NewFromConfig(moto.Config(t))
	group := newSecurityGroup(t, c)
	dir := t.TempDir()
	cfg := awsPolicy(t, dir, fmt.Sprintf(`  bastion-22:
    provider: aws-security-group
    config: {region: us-east-1, group_id: %s, port: 22}`, group),
		"scheduler: {max_revoke_attempts: 50}\nreconcile: {interval: 1h}\n")
	s := startServerEnv(t, dir, srvEnv, "--config", cfg, "--dev")

	r := s.request(t, "alice", "request", "bastion-22", "--for", "30s", "--reason", "outage test", "--param", "source_ip=203.0.113.7")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	if _, ok := ingress(t, c, group)["203.0.113.7/32"]; !ok {
		t.Fatal("no rule for the window")
	}

	proxy.SetDown(true)
	time.Sleep(time.Until(*r.ExpiresAt))
	// Several attempts fail while moto is unreachable; the request stays revoking.
	eventually(t, 90*time.Second, "three failed revocations", func() bool {
		return proxy.Calls("DescribeSecurityGroupRules") >= 4
	})
	cur := s.request(t, "alice", "show", r.ID)
	if cur.State != ajar.StateRevoking || cur.Attempts < 2 || cur.LastError == "" {
		t.Fatalf("during the outage: state %s, attempts %d, last error %q; want revoking with failed attempts", cur.State, cur.Attempts, cur.LastError)
	}
	if _, ok := ingress(t, c, group)["203.0.113.7/32"]; !ok {
		t.Fatal("the rule vanished while moto was unreachable")
	}

	proxy.SetDown(false)
	end := s.waitState(t, "alice", r.ID, ajar.StateExpired, 2*time.Minute)
	if _, ok := ingress(t, c, group)["203.0.113.7/32"]; ok {
		t.Fatal("the rule is still there after expired")
	}
	acts := actionsOf(s.auditEvents(t), r.ID)
	if len(acts["revoke.error"]) < 2 || len(acts["request.expired"]) != 1 {
		t.Fatalf("audit: %d revoke.error, %d request.expired", len(acts["revoke.error"]), len(acts["request.expired"]))
	}
	// The retries backed off: the gaps between failed attempts grow.
	errs := acts["revoke.error"]
	if n := len(errs); n >= 3 && errs[n-1].Time.Sub(errs[n-2].Time) <= errs[1].Time.Sub(errs[0].Time)/2 {
		t.Errorf("retry gaps did not grow: %v", errs)
	}
	if end.EndedAt.Before(*r.ExpiresAt) {
		t.Fatalf("ended %v before its expiry %v", end.EndedAt, r.ExpiresAt)
	}
}

// TestAWSDrift: a rule deleted by hand during the window is restored; a rule
// re-added by hand after the end is removed; both are audited, counted, and a
// rule for another address is never touched.
func TestAWSDrift(t *testing.T) {
	parallel(t, costLight)
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	srvEnv := awsEnv(t, proxy)
	c := ec2.NewFromConfig(moto.Config(t))
	group := newSecurityGroup(t, c)
	handAddRule(t, c, group, "198.51.100.99/32") // the office VPN, standing
	dir := t.TempDir()
	cfg := awsPolicy(t, dir, fmt.Sprintf(`  bastion-22:
    provider: aws-security-group
    config: {region: us-east-1, group_id: %s, port: 22}`, group),
		"reconcile: {interval: 1s, lookback: 1h}\n")
	s := startServerEnv(t, dir, srvEnv, "--config", cfg, "--dev")

	r := s.request(t, "alice", "request", "bastion-22", "--for", "10m", "--reason", "drift test", "--param", "source_ip=203.0.113.8")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	rule := ingress(t, c, group)["203.0.113.8/32"]
	if _, err := c.RevokeSecurityGroupIngress(t.Context(), &ec2.RevokeSecurityGroupIngressInput{
		GroupId: aws.String(group), SecurityGroupRuleIds: []string{*rule.SecurityGroupRuleId},
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the deleted rule is restored", func() bool {
		_, ok := ingress(t, c, group)["203.0.113.8/32"]
		return ok
	})

	s.request(t, "alice", "revoke", r.ID)
	s.waitState(t, "alice", r.ID, ajar.StateRevoked, 60*time.Second)
	if _, ok := ingress(t, c, group)["203.0.113.8/32"]; ok {
		t.Fatal("rule still there after revoke")
	}
	handAddRule(t, c, group, "203.0.113.8/32")
	eventually(t, 60*time.Second, "the re-added rule is removed", func() bool {
		_, ok := ingress(t, c, group)["203.0.113.8/32"]
		return !ok
	})

	if _, ok := ingress(t, c, group)["198.51.100.99/32"]; !ok {
		t.Fatal("the standing rule for another address was removed")
	}
	acts := actionsOf(s.auditEvents(t), r.ID)
	if len(acts["drift.regranted"]) != 1 || len(acts["drift.revoked"]) != 1 {
		t.Fatalf("audit: %d drift.regranted, %d drift.revoked, want 1 each", len(acts["drift.regranted"]), len(acts["drift.revoked"]))
	}
	for _, e := range append(acts["drift.regranted"], acts["drift.revoked"]...) {
		var d struct{ Target, Drift, Repair string }
		if err := json.Unmarshal(e.Details, &d); err != nil || e.Actor != ajar.ActorSystem || d.Target != "bastion-22" || d.Drift == "" || d.Repair == "" {
			t.Errorf("drift event %s: actor %s, details %s", e.Action, e.Actor, e.Details)
		}
	}
	metrics := s.okHTTP(t, "/metrics")
	if !strings.Contains(metrics, `ajar_drift_total{target="bastion-22"} 2`) {
		t.Errorf("metrics lack ajar_drift_total{target=\"bastion-22\"} 2")
	}
	if out := s.ok(t, "admin", "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: %q", out)
	}
}

// TestAWSIdentityCenterStuck: an assignment that stays IN_PROGRESS (the proxy
// says so; moto would finish it at once) is retried, the request ends in
// grant_failed with the reason in its audit trail, and nothing is left assigned.
func TestAWSIdentityCenterStuck(t *testing.T) {
	parallel(t, costLight)
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	srvEnv := awsEnv(t, proxy)
	ac := moto.Config(t)
	sso, ids := ssoadmin.NewFromConfig(ac), identitystore.NewFromConfig(ac)
	inst, err := sso.ListInstances(t.Context(), &ssoadmin.ListInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	instance, store := *inst.Instances[0].InstanceArn, *inst.Instances[0].IdentityStoreId
	sfx := fmt.Sprint(time.Now().UnixNano())
	ps, err := sso.CreatePermissionSet(t.Context(), &ssoadmin.CreatePermissionSetInput{
		InstanceArn: aws.String(instance), Name: aws.String("e2e-admin-" + sfx), SessionDuration: aws.String("PT1H"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.CreateUser(t.Context(), &identitystore.CreateUserInput{
		IdentityStoreId: aws.String(store), UserName: aws.String("alice-" + sfx), DisplayName: aws.String("Alice"),
		Name:   &istypes.Name{GivenName: aws.String("Alice"), FamilyName: aws.String("Example")},
		Emails: []istypes.Email{{Value: aws.String("alice-" + sfx + "@example.com"), Primary: true}},
	}); err != nil {
		t.Fatal(err)
	}
	stuck := func(w http.ResponseWriter, c *mototest.Call) bool {
		rec := proxy.Record(c)
		body := strings.Replace(rec.Body.String(), `"Status": "SUCCEEDED"`, `"Status": "IN_PROGRESS"`, 1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(rec.Code)
		w.Write([]byte(body))
		return true
	}
	proxy.Handle("CreateAccountAssignment", stuck)
	proxy.Handle("DescribeAccountAssignmentCreationStatus", stuck)

	dir := t.TempDir()
	cfg := awsPolicy(t, dir, fmt.Sprintf(`  prod-admin:
    provider: aws-identity-center
    config:
      region: us-east-1
      instance_arn: %s
      identity_store_id: %s
      account_id: "111122223333"
      permission_set_arn: %s
      user_names: {alice@example.com: alice-%s@example.com}
      provisioning_timeout: 1s`, instance, store, *ps.PermissionSet.PermissionSetArn, sfx),
		"scheduler: {max_grant_attempts: 2}\nreconcile: {interval: 1h}\n")
	s := startServerEnv(t, dir, srvEnv, "--config", cfg, "--dev")

	r := s.request(t, "alice", "request", "prod-admin", "--for", "30m", "--reason", "stuck test")
	end := s.waitState(t, "alice", r.ID, ajar.StateGrantFailed, 60*time.Second)
	if end.Handle == nil || len(end.Handle.Data) != 0 {
		t.Fatalf("a failed grant has a handle with data: %+v", end.Handle)
	}
	acts := actionsOf(s.auditEvents(t), r.ID)
	if len(acts["grant.error"]) != 2 || len(acts["request.grant_failed"]) != 1 {
		t.Fatalf("audit: %d grant.error (want 2: retried), %d request.grant_failed", len(acts["grant.error"]), len(acts["request.grant_failed"]))
	}
	reason := string(acts["grant.error"][1].Details)
	for _, want := range []string{"Identity Center did not finish within 1s", "IN_PROGRESS", "rolled back"} {
		if !strings.Contains(reason, want) {
			t.Errorf("grant_failed reason %s does not say %q", reason, want)
		}
	}
	if n := proxy.Calls("CreateAccountAssignment"); n != 2 {
		t.Errorf("CreateAccountAssignment called %d times, want 2", n)
	}
	out, err := sso.ListAccountAssignments(t.Context(), &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(instance), AccountId: aws.String("111122223333"), PermissionSetArn: ps.PermissionSet.PermissionSetArn,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.AccountAssignments) != 0 {
		t.Fatalf("%d assignments left after grant_failed", len(out.AccountAssignments))
	}
}

// TestAWSCredentials: an aws-sts request's credentials come once from
// "ajar credentials", in both formats, are not stored, and stop at revoke.
func TestAWSCredentials(t *testing.T) {
	parallel(t, costLight)
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	srvEnv := awsEnv(t, proxy)
	ic := iam.NewFromConfig(moto.Config(t))
	roleName := fmt.Sprintf("e2e-readonly-%d", time.Now().UnixNano())
	role, err := ic.CreateRole(t.Context(), &iam.CreateRoleInput{
		RoleName: aws.String(roleName), MaxSessionDuration: aws.Int32(3600),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := awsPolicy(t, dir, fmt.Sprintf(`  prod-readonly:
    provider: aws-sts
    config: {role_arn: %q}`, *role.Role.Arn), "reconcile: {interval: 1h}\n")
	s := startServerEnv(t, dir, srvEnv, "--config", cfg, "--dev")

	r := s.request(t, "alice", "request", "prod-readonly", "--for", "20m", "--reason", "read the logs")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	env := s.ok(t, "alice", "credentials", r.ID)
	for _, want := range []string{"export AWS_ACCESS_KEY_ID='", "export AWS_SECRET_ACCESS_KEY='", "export AWS_SESSION_TOKEN='", "export AWS_REGION='us-east-1'"} {
		if !strings.Contains(env, want) {
			t.Errorf("env output lacks %q:\n%s", want, env)
		}
	}
	proc := s.ok(t, "alice", "credentials", r.ID, "--format", "credential-process")
	if !strings.Contains(proc, `"Version": 1`) || !strings.Contains(proc, `"SecretAccessKey"`) {
		t.Errorf("credential-process output:\n%s", proc)
	}
	secret := proc[strings.Index(proc, `"SecretAccessKey": "`)+len(`"SecretAccessKey": "`):]
	secret = secret[:strings.Index(secret, `"`)]
	// Never stored: not in the database files, not in the audit log.
	for _, name := range []string{"ajar.db", "ajar.db-wal"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil && strings.Contains(string(b), secret) {
			t.Fatalf("the secret access key is in %s", name)
		}
	}
	acts := actionsOf(s.auditEvents(t), r.ID)
	if len(acts["credentials.issued"]) != 2 {
		t.Fatalf("%d credentials.issued events, want 2", len(acts["credentials.issued"]))
	}
	// Someone else cannot get them; after revoke nobody can, and the role denies
	// the request's sessions.
	if res := s.ajar(t, "admin", "credentials", r.ID); res.Code != 1 || !strings.Contains(res.Stderr, "only the requester") {
		t.Fatalf("admin got alice's credentials: %+v", res)
	}
	s.request(t, "alice", "revoke", r.ID)
	s.waitState(t, "alice", r.ID, ajar.StateRevoked, 60*time.Second)
	if res := s.ajar(t, "alice", "credentials", r.ID); res.Code != 1 || !strings.Contains(res.Stderr, "not active") {
		t.Fatalf("credentials after revoke: %+v", res)
	}
	pols, err := ic.ListRolePolicies(t.Context(), &iam.ListRolePoliciesInput{RoleName: aws.String(roleName)})
	if err != nil {
		t.Fatal(err)
	}
	if len(pols.PolicyNames) != 1 || !strings.HasPrefix(pols.PolicyNames[0], "ajar-revoke-"+r.ID+"-until-") {
		t.Fatalf("role policies after revoke: %v", pols.PolicyNames)
	}
}
