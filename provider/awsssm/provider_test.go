package awsssm

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/mototest"
	"github.com/ajar-dev/ajar/provider/providertest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

const account = "111122223333"

// env talks to moto through a proxy that answers the SSM session calls moto
// does not implement, from a table of fake sessions.
type env struct {
	iam      *iam.Client
	load     awsx.Loader
	proxy    *mototest.Proxy
	sessions *fakeSessions
}

func newEnv(t *testing.T) *env {
	t.Helper()
	moto := mototest.Shared(t)
	proxy := mototest.NewProxy(t, moto)
	f := &fakeSessions{}
	f.install(t, proxy)
	return &env{iam: iam.NewFromConfig(moto.Config(t)), load: proxy.Loader(), proxy: proxy, sessions: f}
}

func (e *env) provider(t testing.TB, config string) *Provider {
	t.Helper()
	p, err := New("prod-nodes", json.RawMessage(config), e.load)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// user creates an IAM user; the ajar user NAME@example.com maps to it.
func (e *env) user(t testing.TB) (ajarID, name string) {
	t.Helper()
	name = "u-" + providertest.NewRequestID()[4:]
	if _, err := e.iam.CreateUser(context.Background(), &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	return name + "@example.com", name
}

func (e *env) policies(t testing.TB, user string) []string {
	t.Helper()
	out, err := e.iam.ListUserPolicies(context.Background(), &iam.ListUserPoliciesInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatal(err)
	}
	return out.PolicyNames
}

func request(id, requester string, exp time.Time) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "prod-nodes", Requester: requester, ExpiresAt: exp}
}

const idsConfig = `{"region":"us-east-1","account_id":"111122223333","instance_ids":["i-0aaaaaaaaaaaaaaaa","i-0bbbbbbbbbbbbbbbb"]}`

func TestConformance(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, idsConfig)
	providertest.Run(t, providertest.Subject{
		Provider: p, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest {
			who, _ := e.user(t)
			return request(id, who, time.Now().Add(time.Hour))
		},
		Count: func(t testing.TB, req ajar.GrantRequest) int {
			return len(e.policies(t, strings.TrimSuffix(req.Requester, "@example.com")))
		},
	})
}

// TestPolicyDocument: the policy as IAM stores it allows exactly StartSession on
// the target's instances and the user's own sessions, until the expiry.
func TestPolicyDocument(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, idsConfig)
	who, name := e.user(t)
	exp := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	h, err := p.Grant(t.Context(), request("req_golden", who, exp))
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.iam.GetUserPolicy(t.Context(), &iam.GetUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String("ajar-req_golden")})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := awsx.ParsePolicy(aws.ToString(out.PolicyDocument))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/user-policy.golden", pol.Indented())
	for _, st := range pol.Statement {
		if got := st.Condition["DateLessThan"]["aws:CurrentTime"]; got != "2026-03-01T09:30:00Z" {
			t.Errorf("statement %s expires %v, want the grant's expiry", st.Sid, got)
		}
	}
	if err := p.Revoke(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if got := e.policies(t, name); len(got) != 0 {
		t.Fatalf("policies after revoke: %v", got)
	}
	// The role form names sessions by the role session's user id.
	role := Policy("us-east-1", account, Principal{Kind: "role", Name: "ssm-operators"},
		[]string{"i-0aaaaaaaaaaaaaaaa", "mi-0123456789abcdef0"}, []string{DefaultDocument, "AWS-StartPortForwardingSession"}, exp)
	golden(t, "testdata/role-policy.golden", role.Indented())
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update if the change is intended):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// fakeSessions answers DescribeSessions and TerminateSession, which moto does not
// implement, from a table.
type fakeSessions struct {
	mu         sync.Mutex
	sessions   []fakeSession
	terminated []string
}

type fakeSession struct{ ID, Target, Owner string }

func (f *fakeSessions) install(t *testing.T, proxy *mototest.Proxy) {
	proxy.Handle("DescribeSessions", func(w http.ResponseWriter, c *mototest.Call) bool {
		var in struct {
			State   string
			Filters []struct{ Key, Value string }
		}
		c.JSON(t, &in)
		if in.State != "Active" {
			t.Errorf("DescribeSessions state %q, want Active", in.State)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []map[string]string
		for _, s := range f.sessions {
			if slices.Contains(f.terminated, s.ID) {
				continue
			}
			match := true
			for _, fl := range in.Filters {
				match = match && (fl.Key != "Target" || fl.Value == s.Target) && (fl.Key != "Owner" || fl.Value == s.Owner)
			}
			if match {
				out = append(out, map[string]string{"SessionId": s.ID, "Target": s.Target, "Owner": s.Owner, "Status": "Connected"})
			}
		}
		mototest.WriteJSON(w, map[string]any{"Sessions": out})
		return true
	})
	proxy.Handle("TerminateSession", func(w http.ResponseWriter, c *mototest.Call) bool {
		var in struct{ SessionId string }
		c.JSON(t, &in)
		f.mu.Lock()
		f.terminated = append(f.terminated, in.SessionId)
		f.mu.Unlock()
		mototest.WriteJSON(w, map[string]string{"SessionId": in.SessionId})
		return true
	})
}

func (f *fakeSessions) add(s ...fakeSession) {
	f.mu.Lock()
	f.sessions = append(f.sessions, s...)
	f.mu.Unlock()
}

func (f *fakeSessions) ended() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.terminated)
	slices.Sort(out)
	return out
}

// TestRevokeEndsOnlyTheRequestersSessions: revoking ends the requester's
// sessions on the target's instances, and not other people's sessions, nor the
// requester's sessions on other instances or on instances another live request
// still allows.
func TestRevokeEndsOnlyTheRequestersSessions(t *testing.T) {
	e := newEnv(t)
	who, name := e.user(t)
	_, other := e.user(t)
	me := fmt.Sprintf("arn:aws:iam::%s:user/%s", account, name)
	them := fmt.Sprintf("arn:aws:iam::%s:user/%s", account, other)
	a, b, c := "i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"
	f := e.sessions
	f.add(
		fakeSession{name + "-01", a, me},
		fakeSession{name + "-02", b, me},
		fakeSession{name + "-03", c, me},    // another instance
		fakeSession{other + "-04", a, them}, // another user
	)

	both := e.provider(t, idsConfig)
	onlyB := e.provider(t, `{"region":"us-east-1","account_id":"111122223333","instance_ids":["`+b+`"]}`)
	exp := time.Now().Add(time.Hour)
	hBoth, err := both.Grant(t.Context(), request(providertest.NewRequestID(), who, exp))
	if err != nil {
		t.Fatal(err)
	}
	hB, err := onlyB.Grant(t.Context(), request(providertest.NewRequestID(), who, exp))
	if err != nil {
		t.Fatal(err)
	}

	if err := both.Revoke(t.Context(), hBoth); err != nil {
		t.Fatal(err)
	}
	if got, want := f.ended(), []string{name + "-01"}; !slices.Equal(got, want) {
		t.Fatalf("terminated %v, want %v (b is still allowed by the other request)", got, want)
	}
	if ok, _ := both.Verify(t.Context(), hBoth); ok {
		t.Fatal("the policy is still there after revoke")
	}
	if err := onlyB.Revoke(t.Context(), hB); err != nil {
		t.Fatal(err)
	}
	if got, want := f.ended(), []string{name + "-01", name + "-02"}; !slices.Equal(got, want) {
		t.Fatalf("terminated %v, want %v", got, want)
	}
	if got := e.policies(t, name); len(got) != 0 {
		t.Fatalf("policies left: %v", got)
	}
}

func TestRoleAndTagSelector(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	role := "ssm-" + providertest.NewRequestID()[4:]
	if _, err := e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role), AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[]}`)}); err != nil {
		t.Fatal(err)
	}
	env := "env-" + providertest.NewRequestID()[4:]
	ec := ec2.NewFromConfig(mototest.Shared(t).Config(t))
	run, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("Env"), Value: aws.String(env)}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range run.Instances {
		ids = append(ids, *i.InstanceId)
	}
	slices.Sort(ids)
	f := e.sessions
	f.add(
		fakeSession{"alice-01", ids[0], fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/alice", mototest.AccountID, role)},
		fakeSession{"bob-02", ids[1], fmt.Sprintf("arn:aws:sts::%s:assumed-role/other-role/bob", mototest.AccountID)},
	)

	p := e.provider(t, fmt.Sprintf(`{"region":"us-east-1","instance_tags":{"Env":%q},"role_name":%q}`, env, role))
	h, err := p.Grant(ctx, request(providertest.NewRequestID(), "alice@example.com", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	var d handleData
	json.Unmarshal(h.Data, &d)
	if !slices.Equal(d.InstanceIDs, ids) || d.AccountID != mototest.AccountID || d.Principal != (Principal{"role", role}) {
		t.Fatalf("handle %+v, want instances %v in %s on role %s", d, ids, mototest.AccountID, role)
	}
	if ok, err := p.Verify(ctx, h); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	if err := p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if got := f.ended(); !slices.Equal(got, []string{"alice-01"}) {
		t.Fatalf("terminated %v", got)
	}

	none := e.provider(t, `{"region":"us-east-1","instance_tags":{"Env":"nowhere"},"role_name":"`+role+`"}`)
	if _, err := none.Grant(ctx, request(providertest.NewRequestID(), "alice@example.com", time.Now().Add(time.Hour))); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("grant with no matching instance: %v", err)
	}
}

func TestUnknownUser(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, idsConfig)
	_, err := p.Grant(t.Context(), request(providertest.NewRequestID(), "ghost@example.com", time.Now().Add(time.Hour)))
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "ghost, which does not exist") {
		t.Fatalf("grant for a user without an IAM user: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		config string
		fields []string
	}{
		{idsConfig, nil},
		{`{"region":"us-east-1","instance_tags":{"Env":"prod"},"role_name":"ssm-{local}","documents":["AWS-StartSSHSession"]}`, nil},
		{`{}`, []string{"region", "instance_ids"}},
		{`{"region":"us-east-1","instance_ids":["i-1","i-0aaaaaaaaaaaaaaaa","i-0aaaaaaaaaaaaaaaa"],"instance_tags":{"a":"b"}}`,
			[]string{"instance_ids"}},
		{`{"region":"us-east-1","instance_ids":["i-1","i-0aaaaaaaaaaaaaaaa","i-0aaaaaaaaaaaaaaaa"]}`,
			[]string{"instance_ids[0]", "instance_ids[2]"}},
		{`{"region":"us-east-1","instance_ids":[],"role_name":"r","user_name_template":"{local}","documents":["bad doc"]}`,
			[]string{"instance_ids", "role_name", "documents[0]"}},
		{`{"region":"us-east-1","instance_tags":{"Env":""},"account_id":"12"}`, []string{"account_id", "instance_tags.Env"}},
	} {
		var fields []string
		for _, p := range CheckConfig(json.RawMessage(tc.config)) {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: fields %q, want %q (%v)", tc.config, fields, tc.fields, CheckConfig(json.RawMessage(tc.config)))
		}
	}
}
