package awssg

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/mototest"
	"github.com/ajar-dev/ajar/provider/providertest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

// env is one fresh security group in the shared moto.
type env struct {
	ec2   *ec2.Client
	group string
	prov  *Provider
	cfg   json.RawMessage
}

func newEnv(t *testing.T, load awsx.Loader, extra string) *env {
	t.Helper()
	moto := mototest.Shared(t)
	c := ec2.NewFromConfig(moto.Config(t))
	out, err := c.CreateSecurityGroup(t.Context(), &ec2.CreateSecurityGroupInput{
		GroupName: aws.String("ajar-test-" + providertest.NewRequestID()), Description: aws.String("ajar test"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if load == nil {
		load = moto.Loader()
	}
	cfg := json.RawMessage(fmt.Sprintf(`{"region":%q,"group_id":%q%s}`, mototest.Region, *out.GroupId, extra))
	p, err := New("bastion-22", cfg, load)
	if err != nil {
		t.Fatal(err)
	}
	return &env{ec2: c, group: *out.GroupId, prov: p, cfg: cfg}
}

var nextIP atomic.Int32

// uniqueIP returns an address no other test uses.
func uniqueIP() string {
	n := nextIP.Add(1)
	return fmt.Sprintf("198.18.%d.%d", n/250, n%250+1)
}

func (e *env) request(id, requester, ip string) ajar.GrantRequest {
	return ajar.GrantRequest{
		RequestID: id, Target: "bastion-22", Requester: requester,
		Params: map[string]string{ParamSourceIP: ip}, ExpiresAt: time.Now().Add(time.Hour).UTC().Truncate(time.Second),
		Config: e.cfg,
	}
}

// ingress returns the group's ingress rules.
func (e *env) ingress(t testing.TB) []types.SecurityGroupRule {
	t.Helper()
	out, err := e.ec2.DescribeSecurityGroupRules(context.Background(), &ec2.DescribeSecurityGroupRulesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{e.group}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var in []types.SecurityGroupRule
	for _, r := range out.SecurityGroupRules {
		if !aws.ToBool(r.IsEgress) {
			in = append(in, r)
		}
	}
	return in
}

// rulesFor counts the ingress rules for ip (as a /32 or /128).
func (e *env) rulesFor(t testing.TB, ip string) int {
	n := 0
	for _, r := range e.ingress(t) {
		c := aws.ToString(r.CidrIpv4) + aws.ToString(r.CidrIpv6)
		if strings.HasPrefix(c, ip+"/") {
			n++
		}
	}
	return n
}

func (e *env) handAdd(t testing.TB, ip string, port int32) string {
	t.Helper()
	out, err := e.ec2.AuthorizeSecurityGroupIngress(context.Background(), &ec2.AuthorizeSecurityGroupIngressInput{
		GroupId: aws.String(e.group),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(port), ToPort: aws.Int32(port),
			IpRanges: []types.IpRange{{CidrIp: aws.String(ip + "/32"), Description: aws.String("office VPN, added by hand")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return *out.SecurityGroupRules[0].SecurityGroupRuleId
}

func TestConformance(t *testing.T) {
	e := newEnv(t, nil, `,"port":22`)
	providertest.Run(t, providertest.Subject{
		Provider: e.prov, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest {
			return e.request(id, "alice@example.com", uniqueIP())
		},
		Count: func(t testing.TB, req ajar.GrantRequest) int { return e.rulesFor(t, req.Params[ParamSourceIP]) },
	})
}

func TestGrantCreatesOneTaggedRule(t *testing.T) {
	e := newEnv(t, nil, `,"from_port":8000,"to_port":8100,"protocol":"udp"`)
	ip := uniqueIP()
	req := e.request(providertest.NewRequestID(), "alice@example.com", ip)
	h, err := e.prov.Grant(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var d handleData
	if err := json.Unmarshal(h.Data, &d); err != nil {
		t.Fatal(err)
	}
	rules := e.ingress(t)
	if len(rules) != 1 {
		t.Fatalf("%d ingress rules, want 1", len(rules))
	}
	r := rules[0]
	if got := aws.ToString(r.SecurityGroupRuleId); got != d.RuleID {
		t.Errorf("handle rule id %s, rule %s", d.RuleID, got)
	}
	if aws.ToString(r.IpProtocol) != "udp" || *r.FromPort != 8000 || *r.ToPort != 8100 || aws.ToString(r.CidrIpv4) != ip+"/32" {
		t.Errorf("rule = %s %d-%d %s", aws.ToString(r.IpProtocol), *r.FromPort, *r.ToPort, aws.ToString(r.CidrIpv4))
	}
	wantDesc := fmt.Sprintf("ajar %s alice@example.com until %s", req.RequestID, req.ExpiresAt.Format(time.RFC3339))
	if got := aws.ToString(r.Description); got != wantDesc {
		t.Errorf("description = %q, want %q", got, wantDesc)
	}
	if !hasTag(&r, TagManaged, "true") || !hasTag(&r, TagRequestPrefix+req.RequestID, "alice@example.com") {
		t.Errorf("tags = %v", tagMap(r))
	}
}

func tagMap(r types.SecurityGroupRule) map[string]string {
	m := map[string]string{}
	for _, t := range r.Tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func TestIPv6(t *testing.T) {
	e := newEnv(t, nil, `,"port":22`)
	req := e.request(providertest.NewRequestID(), "alice@example.com", "2001:db8::7")
	h, err := e.prov.Grant(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	rules := e.ingress(t)
	if len(rules) != 1 || aws.ToString(rules[0].CidrIpv6) != "2001:db8::7/128" {
		t.Fatalf("rules = %+v", rules)
	}
	if err := e.prov.Revoke(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ingress(t)); n != 0 {
		t.Fatalf("%d rules after revoke", n)
	}
}

// TestOverlapAndHandAddedRules: two requests for the same IP share one rule until
// both end; rules added by hand are never touched, and a hand-added rule for the
// requester's own address is not taken over.
func TestOverlapAndHandAddedRules(t *testing.T) {
	e := newEnv(t, nil, `,"port":22`)
	ctx := t.Context()
	ip := uniqueIP()
	office := e.handAdd(t, uniqueIP(), 22) // another address, same port

	r1 := e.request(providertest.NewRequestID(), "alice@example.com", ip)
	r2 := e.request(providertest.NewRequestID(), "alice@example.com", ip)
	h1, err := e.prov.Grant(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := e.prov.Grant(ctx, r2)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.rulesFor(t, ip); n != 1 {
		t.Fatalf("%d rules for %s, want one shared rule", n, ip)
	}
	var d1, d2 handleData
	json.Unmarshal(h1.Data, &d1)
	json.Unmarshal(h2.Data, &d2)
	if d1.RuleID != d2.RuleID {
		t.Fatalf("rule ids %s and %s, want the same rule", d1.RuleID, d2.RuleID)
	}

	// Ending the first keeps the rule for the second.
	if err := e.prov.Revoke(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if n := e.rulesFor(t, ip); n != 1 {
		t.Fatalf("%d rules after the first request ended, want 1", n)
	}
	wantVerify(t, e.prov, h1, false)
	wantVerify(t, e.prov, h2, true)
	// Revoking the first again (a retry) must not cut the second.
	if err := e.prov.Revoke(ctx, h1); err != nil {
		t.Fatal(err)
	}
	wantVerify(t, e.prov, h2, true)

	if err := e.prov.Revoke(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if n := e.rulesFor(t, ip); n != 0 {
		t.Fatalf("%d rules after both ended, want 0", n)
	}

	// A hand-added rule for the requester's own address: the grant is refused
	// with a clear reason, and neither it nor the cleanup touches the rule.
	mine := uniqueIP()
	standing := e.handAdd(t, mine, 22)
	r3 := e.request(providertest.NewRequestID(), "alice@example.com", mine)
	_, err = e.prov.Grant(ctx, r3)
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(ajar.ErrorMessage(err), standing) {
		t.Fatalf("grant over a hand-added rule: %v, want EINVALID naming %s", err, standing)
	}
	if err := e.prov.Revoke(ctx, providertest.Intent(Name, r3)); err != nil {
		t.Fatal(err)
	}

	var ids []string
	for _, r := range e.ingress(t) {
		ids = append(ids, aws.ToString(r.SecurityGroupRuleId))
		if len(r.Tags) != 0 {
			t.Errorf("hand-added rule %s has tags %v", aws.ToString(r.SecurityGroupRuleId), tagMap(r))
		}
	}
	slices.Sort(ids)
	want := []string{office, standing}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("rules left = %v, want the hand-added %v", ids, want)
	}
}

// TestReaddedRuleIsDrift: once a request was granted, an exact copy of its rule
// that nobody holds (re-added by hand) is its access back; revoking removes it.
func TestReaddedRuleIsDrift(t *testing.T) {
	e := newEnv(t, nil, `,"port":22`)
	ctx := t.Context()
	ip := uniqueIP()
	h, err := e.prov.Grant(ctx, e.request(providertest.NewRequestID(), "alice@example.com", ip))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prov.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	wantVerify(t, e.prov, h, false)
	e.handAdd(t, ip, 22)
	wantVerify(t, e.prov, h, true)
	// An intent never claims a rule it did not tag.
	wantVerify(t, e.prov, providertest.Intent(Name, h.Grant), false)
	if err := e.prov.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if n := e.rulesFor(t, ip); n != 0 {
		t.Fatalf("%d rules, want the re-added one removed", n)
	}
}

func wantVerify(t *testing.T, p *Provider, h ajar.Handle, want bool) {
	t.Helper()
	got, err := p.Verify(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Verify(%s) = %v, want %v", h.Grant.RequestID, got, want)
	}
}

func TestSourceIP(t *testing.T) {
	e := newEnv(t, nil, `,"port":22`)
	for _, tc := range []struct {
		params map[string]string
		want   string // message fragment; "" means valid
		field  string
	}{
		{map[string]string{"source_ip": "203.0.113.7"}, "", ""},
		{map[string]string{"source_ip": "203.0.113.7/32"}, "", ""},
		{map[string]string{"source_ip": "2001:db8::7/128"}, "", ""},
		{map[string]string{"source_ip": "::ffff:203.0.113.7"}, "", ""},
		{nil, "is required", "params.source_ip"},
		{map[string]string{"source_ip": ""}, "must not be empty", "params.source_ip"},
		{map[string]string{"source_ip": "203.0.113.0/24"}, "more than one address", "params.source_ip"},
		{map[string]string{"source_ip": "2001:db8::/64"}, "more than one address", "params.source_ip"},
		{map[string]string{"source_ip": "bastion.example.com"}, "host names", "params.source_ip"},
		{map[string]string{"source_ip": "203.0.113.7:22"}, "has a port", "params.source_ip"},
		{map[string]string{"source_ip": "fe80::1%eth0"}, "zone", "params.source_ip"},
		{map[string]string{"source_ip": "0.0.0.0"}, "not a host address", "params.source_ip"},
		{map[string]string{"source_ip": "0.0.0.0/0"}, "more than one address", "params.source_ip"},
		{map[string]string{"source_ip": "1.2.3.4", "port": "23"}, "unknown parameter", "params.port"},
	} {
		err := e.prov.ValidateParams(tc.params)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.params, err)
			}
			continue
		}
		if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != tc.field || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want EINVALID %s containing %q", tc.params, err, tc.field, tc.want)
		}
	}
	// Grant refuses the same way, before calling AWS.
	_, err := e.prov.Grant(t.Context(), ajar.GrantRequest{RequestID: "req_x", Target: "bastion-22"})
	if ajar.ErrorField(err) != "params.source_ip" {
		t.Fatalf("grant without source_ip: %v", err)
	}
	if n := len(e.ingress(t)); n != 0 {
		t.Fatalf("%d rules after refused grants", n)
	}
}

func TestMissingGroupIsPermanent(t *testing.T) {
	moto := mototest.Shared(t)
	p, err := New("x", json.RawMessage(`{"region":"us-east-1","group_id":"sg-0123456789abcdef0","port":22}`), moto.Loader())
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Grant(t.Context(), ajar.GrantRequest{RequestID: "req_x", Params: map[string]string{"source_ip": "203.0.113.7"}})
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("grant on a missing group: %v", err)
	}
	// Nothing to revoke there is success.
	if err := p.Revoke(t.Context(), ajar.Handle{Provider: Name, Version: 1, Grant: ajar.GrantRequest{RequestID: "req_x", Params: map[string]string{"source_ip": "203.0.113.7"}}}); err != nil {
		t.Fatal(err)
	}
}

// TestThrottlingAndOutage: a throttled call is retried by the SDK; a target that
// keeps failing gives a retryable error (never EINVALID), and nothing is created.
func TestThrottlingAndOutage(t *testing.T) {
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	e := newEnv(t, proxy.Loader(), `,"port":22`)
	var throttled atomic.Int32
	proxy.Handle("AuthorizeSecurityGroupIngress", func(w http.ResponseWriter, c *mototest.Call) bool {
		if throttled.Add(1) == 1 {
			mototest.WriteQueryError(w, http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
			return true
		}
		return false
	})
	ip := uniqueIP()
	h, err := e.prov.Grant(t.Context(), e.request(providertest.NewRequestID(), "alice@example.com", ip))
	if err != nil {
		t.Fatalf("grant after one throttled call: %v", err)
	}
	if throttled.Load() != 2 {
		t.Fatalf("AuthorizeSecurityGroupIngress called %d times, want 2 (one retry)", throttled.Load())
	}

	proxy.Handle("RevokeSecurityGroupIngress", func(w http.ResponseWriter, c *mototest.Call) bool {
		mototest.WriteQueryError(w, http.StatusInternalServerError, "InternalError", "An internal error has occurred")
		return true
	})
	err = e.prov.Revoke(t.Context(), h)
	if err == nil || ajar.ErrorCode(err) == ajar.EINVALID {
		t.Fatalf("revoke during 5xx: %v, want a retryable error", err)
	}
	if n := e.rulesFor(t, ip); n != 1 {
		t.Fatalf("%d rules", n)
	}
	proxy.SetDown(true)
	if err := e.prov.Revoke(t.Context(), h); err == nil {
		t.Fatal("revoke while moto is unreachable succeeded")
	}
	proxy.SetDown(false)
	proxy.Handle("RevokeSecurityGroupIngress", nil)
	if err := e.prov.Revoke(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if n := e.rulesFor(t, ip); n != 0 {
		t.Fatalf("%d rules after recovery", n)
	}
}

// TestAccessKey: requests share a lock key exactly when they map to one rule
// (the same address, in any spelling, on the same group and ports), so that the
// broker serialises the grants and revocations that could interleave.
func TestAccessKey(t *testing.T) {
	e := newEnv(t, nil, `,"port":22`)
	other := newEnv(t, nil, `,"port":22`)
	port := newEnv(t, nil, `,"port":443`)
	a := e.prov.AccessKey(e.request("r1", "alice@example.com", "203.0.113.7"))
	if a == "" {
		t.Fatal("no key for a valid request")
	}
	if b := e.prov.AccessKey(e.request("r2", "bob@example.com", "203.0.113.7/32")); b != a {
		t.Errorf("same rule, other request and spelling: key %q, want %q", b, a)
	}
	for name, k := range map[string]string{
		"another address": e.prov.AccessKey(e.request("r3", "alice@example.com", "203.0.113.8")),
		"another group":   other.prov.AccessKey(other.request("r4", "alice@example.com", "203.0.113.7")),
		"another port":    port.prov.AccessKey(port.request("r5", "alice@example.com", "203.0.113.7")),
	} {
		if k == a || k == "" {
			t.Errorf("%s: key %q, want one of its own", name, k)
		}
	}
	if k := e.prov.AccessKey(e.request("r6", "alice@example.com", "not an ip")); k != "" {
		t.Errorf("invalid source_ip: key %q, want none", k)
	}
}
