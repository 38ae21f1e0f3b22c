package awssts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/mototest"
	"github.com/ajar-dev/ajar/provider/providertest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

type env struct {
	iam   *iam.Client
	role  string
	arn   string
	proxy *mototest.Proxy
	prov  *Provider

	mu      sync.Mutex
	assumed []url.Values // AssumeRole calls seen by the proxy
}

func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	moto := mototest.Shared(t)
	e := &env{iam: iam.NewFromConfig(moto.Config(t)), role: "prod-ro-" + providertest.NewRequestID()[4:]}
	out, err := e.iam.CreateRole(t.Context(), &iam.CreateRoleInput{
		RoleName: aws.String(e.role), MaxSessionDuration: aws.Int32(7200),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["sts:AssumeRole","sts:SetSourceIdentity"]}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.arn = *out.Role.Arn
	e.proxy = mototest.NewProxy(t, moto)
	e.proxy.Handle("AssumeRole", func(w http.ResponseWriter, c *mototest.Call) bool {
		v, _ := url.ParseQuery(string(c.Body))
		e.mu.Lock()
		e.assumed = append(e.assumed, v)
		e.mu.Unlock()
		return false
	})
	e.prov, err = New("prod-ro", json.RawMessage(fmt.Sprintf(`{"role_arn":%q%s}`, e.arn, extra)), e.proxy.Loader())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) lastAssume() url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.assumed[len(e.assumed)-1]
}

func (e *env) policies(t testing.TB) []string {
	t.Helper()
	out, err := e.iam.ListRolePolicies(context.Background(), &iam.ListRolePoliciesInput{RoleName: aws.String(e.role)})
	if err != nil {
		t.Fatal(err)
	}
	return out.PolicyNames
}

func request(id string, exp time.Time) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "prod-ro", Requester: "alice@example.com", ExpiresAt: exp}
}

func TestConformance(t *testing.T) {
	e := newEnv(t, "")
	providertest.Run(t, providertest.Subject{
		Provider: e.prov, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest { return request(id, time.Now().Add(time.Hour)) },
	})
}

func TestCredentials(t *testing.T) {
	e := newEnv(t, "")
	ctx := t.Context()
	now := time.Now()
	req := request(providertest.NewRequestID(), now.Add(40*time.Minute))
	h, err := e.prov.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(h.Data), "ASIA") || strings.Contains(string(h.Data), "secret") {
		t.Fatalf("the handle holds credentials: %s", h.Data)
	}
	probe := e.lastAssume()
	if probe.Get("RoleSessionName") != "ajar-"+req.RequestID || probe.Get("SourceIdentity") != "alice@example.com" {
		t.Fatalf("grant's AssumeRole: %v", probe)
	}

	for _, tc := range []struct {
		at   time.Time
		want string // DurationSeconds
	}{
		{now, "2400"},                        // the rest of the window
		{now.Add(35 * time.Minute), "900"},   // STS's minimum
		{now.Add(-80 * time.Minute), "7200"}, // the role's maximum (a 2h cap for a 2h40m window)
	} {
		c, err := e.prov.IssueCredentials(ctx, h, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.SessionToken == "" || c.Expiration.IsZero() || c.Region != "us-east-1" {
			t.Fatalf("credentials %+v", c)
		}
		a := e.lastAssume()
		if a.Get("DurationSeconds") != tc.want || a.Get("RoleArn") != e.arn || a.Get("RoleSessionName") != "ajar-"+req.RequestID ||
			a.Get("SourceIdentity") != "alice@example.com" {
			t.Errorf("at %s: AssumeRole %v, want DurationSeconds %s", tc.at.Sub(now), a, tc.want)
		}
		if s := fmt.Sprint(c); strings.Contains(s, c.SecretAccessKey) || strings.Contains(s, c.SessionToken) {
			t.Errorf("String() shows a secret: %s", s)
		}
	}

	if _, err := e.prov.IssueCredentials(ctx, h, now.Add(time.Hour)); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("credentials after expiry: %v", err)
	}
	if _, err := e.prov.IssueCredentials(ctx, providertest.Intent(Name, req), now); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("credentials for an intent: %v", err)
	}
}

func TestMaxSessionFromConfig(t *testing.T) {
	e := newEnv(t, `,"max_session_duration":"30m"`)
	h, err := e.prov.Grant(t.Context(), request(providertest.NewRequestID(), time.Now().Add(4*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.prov.IssueCredentials(t.Context(), h, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := e.lastAssume().Get("DurationSeconds"); got != "1800" {
		t.Fatalf("DurationSeconds = %s, want the configured 1800", got)
	}
}

// TestRevokeDeniesTheRequestsSessions: revoking attaches a deny policy for the
// request's sessions issued before now, and later revocations clean up policies
// that cover nothing any more.
func TestRevokeDeniesTheRequestsSessions(t *testing.T) {
	e := newEnv(t, "")
	ctx := t.Context()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	e.prov.now = func() time.Time { return now }
	req := request("req_one", now.Add(30*time.Minute))
	h, err := e.prov.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prov.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("ajar-revoke-req_one-until-%d", now.Add(46*time.Minute).Unix())
	out, err := e.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(e.role), PolicyName: aws.String(name)})
	if err != nil {
		t.Fatalf("no deny policy %s: %v (policies: %v)", name, err, e.policies(t))
	}
	got, err := awsx.ParsePolicy(aws.ToString(out.PolicyDocument))
	if err != nil {
		t.Fatal(err)
	}
	want := DenyPolicy("req_one", now.Add(time.Minute))
	if got.JSON() != want.JSON() {
		t.Fatalf("deny policy\n%s\nwant\n%s", got.Indented(), want.Indented())
	}
	if !strings.Contains(want.JSON(), `"aws:userid":"*:ajar-req_one"`) || !strings.Contains(want.JSON(), `"aws:TokenIssueTime":"2026-03-01T09:01:00Z"`) {
		t.Fatalf("deny policy conditions: %s", want.JSON())
	}

	// A hand-written policy on the role is never touched; ajar's stale ones go.
	if _, err := e.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(e.role), PolicyName: aws.String("team-extra"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}`)}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	if ok, _ := e.prov.Verify(ctx, h); ok {
		t.Fatal("Verify after every credential expired = true")
	}
	h2, err := e.prov.Grant(ctx, request("req_two", now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prov.Revoke(ctx, h2); err != nil {
		t.Fatal(err)
	}
	pols := e.policies(t)
	slices.Sort(pols)
	want2 := []string{fmt.Sprintf("ajar-revoke-req_two-until-%d", now.Add(76*time.Minute).Unix()), "team-extra"}
	if !slices.Equal(pols, want2) {
		t.Fatalf("policies %v, want %v", pols, want2)
	}
	// Long after, revoking does nothing but clean up.
	now = now.Add(3 * time.Hour)
	if err := e.prov.Revoke(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if pols := e.policies(t); !slices.Equal(pols, []string{"team-extra"}) {
		t.Fatalf("policies %v", pols)
	}
}

func TestMissingRole(t *testing.T) {
	moto := mototest.Shared(t)
	p, err := New("x", json.RawMessage(`{"role_arn":"arn:aws:iam::123456789012:role/nope"}`), moto.Loader())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Grant(t.Context(), request("req_x", time.Now().Add(time.Hour))); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("grant on a missing role: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		config string
		fields []string
	}{
		{`{"role_arn":"arn:aws:iam::111122223333:role/prod-ro"}`, nil},
		{`{"role_arn":"arn:aws:iam::111122223333:role/team/prod-ro","region":"eu-west-1","max_session_duration":"2h"}`, nil},
		{`{}`, []string{"role_arn"}},
		{`{"role_arn":"arn:aws:iam::111122223333:user/alice","max_session_duration":"5m","region":"mars"}`,
			[]string{"region", "role_arn", "max_session_duration"}},
	} {
		var fields []string
		for _, p := range CheckConfig(json.RawMessage(tc.config)) {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: fields %q, want %q", tc.config, fields, tc.fields)
		}
	}
	if got := sourceIdentity("a b/c@example.com"); got != "a-b-c@example.com" {
		t.Errorf("sourceIdentity = %q", got)
	}
}
