package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	ssotypes "github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/mototest"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// lockWaitLine is what a replica logs when a grant or revocation of shared
// access waits for another one's lock.
const lockWaitLine = "shared access busy: waiting for its lock"

// gate holds every call of one AWS action at the proxy until it is opened. A
// held call whose caller gives up meanwhile never reaches moto.
type gate struct {
	arrived, open chan struct{}
	once          sync.Once
}

func holdAction(proxy *mototest.Proxy, action string) *gate {
	g := &gate{arrived: make(chan struct{}), open: make(chan struct{})}
	proxy.Handle(action, func(w http.ResponseWriter, c *mototest.Call) bool {
		g.once.Do(func() { close(g.arrived) })
		select {
		case <-g.open:
		case <-c.Request.Context().Done():
		}
		return c.Request.Context().Err() != nil // true: answered (nobody listens); false: on to moto
	})
	return g
}

// TestAttackSharedAccessAcrossReplicas: two replicas on one PostgreSQL
// database. Two requests map to one piece of shared access: a security group
// rule for the same address (holders counted by the provider in the rule's
// tags), and an Identity Center assignment for the same user (holders counted by
// the broker from the store). Replica 2 revokes the first request; its call
// that removes the access is held at the proxy (a slow AWS), after it decided
// that the first request was the last holder. Meanwhile replica 1 grants the
// second request. Before the fix replica 1 joined the access it found in place
// (tagged the rule; found the assignment) and made the request active; then
// replica 2's call went through and the live request was left without access
// until drift repair (off here). Now both run under one store lease per shared
// access: the grant waits for the revocation, then creates the access anew.
func TestAttackSharedAccessAcrossReplicas(t *testing.T) {
	parallel(t, costHeavy)
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	srvEnv := awsEnv(t, proxy)
	ac := moto.Config(t)
	ec2c := ec2.NewFromConfig(ac)
	sso, ids := ssoadmin.NewFromConfig(ac), identitystore.NewFromConfig(ac)

	group := newSecurityGroup(t, ec2c)
	inst, err := sso.ListInstances(t.Context(), &ssoadmin.ListInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	instance, store := *inst.Instances[0].InstanceArn, *inst.Instances[0].IdentityStoreId
	sfx := fmt.Sprint(time.Now().UnixNano())
	ps, err := sso.CreatePermissionSet(t.Context(), &ssoadmin.CreatePermissionSetInput{
		InstanceArn: aws.String(instance), Name: aws.String("e2e-shared-" + sfx), SessionDuration: aws.String("PT1H"),
	})
	if err != nil {
		t.Fatal(err)
	}
	psARN := *ps.PermissionSet.PermissionSetArn
	user, err := ids.CreateUser(t.Context(), &identitystore.CreateUserInput{
		IdentityStoreId: aws.String(store), UserName: aws.String("alice-" + sfx), DisplayName: aws.String("Alice"),
		Name:   &istypes.Name{GivenName: aws.String("Alice"), FamilyName: aws.String("Example")},
		Emails: []istypes.Email{{Value: aws.String("alice-" + sfx + "@example.com"), Primary: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const account = "111122223333"
	assigned := func() bool {
		out, err := sso.ListAccountAssignments(t.Context(), &ssoadmin.ListAccountAssignmentsInput{
			InstanceArn: aws.String(instance), AccountId: aws.String(account), PermissionSetArn: aws.String(psARN),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range out.AccountAssignments {
			if a.PrincipalType == ssotypes.PrincipalTypeUser && aws.ToString(a.PrincipalId) == *user.UserId {
				return true
			}
		}
		return false
	}

	pg := pgtest.StartT(t, pgtest.Options{})
	dsn, err := pg.CreateDatabase(t.Context(), "shared")
	if err != nil {
		t.Fatal(err)
	}
	cfg := awsPolicy(t, t.TempDir(), fmt.Sprintf(`  bastion-22:
    provider: aws-security-group
    config: {region: us-east-1, group_id: %s, port: 22}
  prod-admin:
    provider: aws-identity-center
    config:
      region: us-east-1
      instance_arn: %s
      identity_store_id: %s
      account_id: %q
      permission_set_arn: %s
      user_names: {alice@example.com: alice-%s@example.com}`, group, instance, store, account, psARN, sfx),
		"storage: {driver: postgres, dsn: \""+dsn+"\"}\nreconcile: {interval: 1h}\n")
	env := append([]string{"AJAR_MASTER_KEY=" + randomMasterKey()}, srvEnv...)
	r1 := startReplica(t, "r1", cfg, env...)
	r2 := startReplica(t, "r2", cfg, env...)

	// race revokes first on r2, holds its call that removes the access (action)
	// at the proxy, grants second on r1 meanwhile, then lets the removal through.
	// It returns the second request once both have settled.
	race := func(t *testing.T, first *ajar.Request, action string, second []string) *ajar.Request {
		t.Helper()
		g := holdAction(proxy, action)
		defer proxy.Handle(action, nil)
		revoked := make(chan result, 1)
		go func() { revoked <- r2.ajar(t, "alice", "revoke", first.ID, "-o", "json") }()
		select {
		case <-g.arrived:
		case <-time.After(60 * time.Second):
			t.Fatalf("replica 2's revocation never called %s", action)
		}
		waitsBefore := strings.Count(r1.logs(), lockWaitLine)
		created := make(chan result, 1)
		go func() { created <- r1.ajar(t, "alice", append(second, "-o", "json")...) }()
		// Either replica 1 granted at once (the hole) or it waits for the lock.
		var res result
		got := false
		eventually(t, 60*time.Second, "replica 1 grants the second request or waits for the lock", func() bool {
			select {
			case res = <-created:
				got = true
				return true
			default:
			}
			return strings.Count(r1.logs(), lockWaitLine) > waitsBefore
		})
		close(g.open)
		if !got {
			res = <-created
		}
		if res.Code != 0 {
			t.Fatalf("create the second request: exit %d: %s", res.Code, res.Stderr)
		}
		if rv := <-revoked; rv.Code != 0 {
			t.Fatalf("revoke the first request: exit %d: %s", rv.Code, rv.Stderr)
		}
		var y ajar.Request
		if err := json.Unmarshal([]byte(res.Stdout), &y); err != nil {
			t.Fatalf("create output: %v\n%s", err, res.Stdout)
		}
		r2.waitState(t, "alice", first.ID, ajar.StateRevoked, 90*time.Second)
		return r1.waitState(t, "alice", y.ID, ajar.StateActive, 90*time.Second)
	}

	t.Run("security-group-rule", func(t *testing.T) {
		const ip = "203.0.113.7"
		x := r1.request(t, "alice", "request", "bastion-22", "--for", "30m", "--reason", "first holder", "--param", "source_ip="+ip)
		if x.State != ajar.StateActive {
			t.Fatalf("first request is %s: %s", x.State, x.LastError)
		}
		if _, ok := ingress(t, ec2c, group)[ip+"/32"]; !ok {
			t.Fatal("no rule for the first request")
		}
		y := race(t, x, "RevokeSecurityGroupIngress",
			[]string{"request", "bastion-22", "--for", "30m", "--reason", "second holder", "--param", "source_ip=" + ip})
		rule, ok := ingress(t, ec2c, group)[ip+"/32"]
		if !ok {
			t.Fatalf("request %s is active but its rule is gone: replica 2's revocation of %s removed it", y.ID, x.ID)
		}
		tags := map[string]bool{}
		for _, tg := range rule.Tags {
			tags[aws.ToString(tg.Key)] = true
		}
		if !tags["ajar:request:"+y.ID] || tags["ajar:request:"+x.ID] {
			t.Fatalf("rule tags %v: want the live request %s as holder and not the revoked %s", tags, y.ID, x.ID)
		}
	})

	t.Run("identity-center-assignment", func(t *testing.T) {
		x := r1.request(t, "alice", "request", "prod-admin", "--for", "30m", "--reason", "first holder")
		if x.State != ajar.StateActive {
			t.Fatalf("first request is %s: %s", x.State, x.LastError)
		}
		if !assigned() {
			t.Fatal("no assignment for the first request")
		}
		y := race(t, x, "DeleteAccountAssignment", []string{"request", "prod-admin", "--for", "30m", "--reason", "second holder"})
		if !assigned() {
			t.Fatalf("request %s is active but the assignment is gone: replica 2's revocation of %s removed it", y.ID, x.ID)
		}
	})
}
