package policy

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

const identityBase = `
users: [{id: alice@example.com, groups: [admins]}, {id: lee@example.com, groups: [leads]}]
targets: {web: {provider: ssh-cert, config: {principals: [ubuntu]}}}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 1h
    approval: {steps: [{approvers: [group:leads], count: 1}]}
`

const identitySSO = `
server: {public_url: https://ajar.example.com}
identity:
  oidc:
    issuer: https://idp.example.com
    client_id: ajar
    client_secret_env: AJAR_OIDC_CLIENT_SECRET
`

// env is a test environment: only the variables given are set.
func env(vars ...string) Option {
	return WithEnv(func(name string) (string, bool) {
		for i := 0; i+1 < len(vars); i += 2 {
			if vars[i] == name {
				return vars[i+1], true
			}
		}
		return "", false
	})
}

var secretEnv = env("AJAR_OIDC_CLIENT_SECRET", "s3cret-value")

func TestIdentityAbsent(t *testing.T) {
	p, err := Parse([]byte(identityBase), nil, env())
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity()
	if id.OIDC != nil || id.SessionTTL != DefaultSessionTTL || id.Refresh != DefaultIdentityRefresh || id.RevokeOnLoss {
		t.Fatalf("Identity() = %+v; want no OIDC and the defaults", id)
	}
	if u, ok := p.User("alice@example.com"); !ok || !slices.Equal(u.Groups, []string{"admins"}) {
		t.Fatalf("static user = %+v, %v", u, ok)
	}
}

func TestIdentityOIDC(t *testing.T) {
	p, err := Parse([]byte(identityBase+identitySSO), nil, secretEnv)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity()
	want := OIDC{Issuer: "https://idp.example.com", ClientID: "ajar", ClientSecretEnv: "AJAR_OIDC_CLIENT_SECRET",
		ClientSecret: "s3cret-value", Scopes: []string{"openid", "email", "profile"}, UserClaim: "email", GroupsClaim: "groups"}
	if id.OIDC == nil || fmt.Sprint(*id.OIDC) != fmt.Sprint(want) || id.OIDC.ClientSecret != want.ClientSecret || !slices.Equal(id.OIDC.Scopes, want.Scopes) {
		t.Fatalf("OIDC = %+v; want %+v with the defaults", id.OIDC, want)
	}
	if id.SessionTTL != 12*time.Hour || id.Refresh != 10*time.Minute {
		t.Errorf("session_ttl %s refresh %s; want the defaults 12h and 10m", id.SessionTTL, id.Refresh)
	}
	// Identity returns a copy.
	id.OIDC.Scopes[0] = "changed"
	if p.Identity().OIDC.Scopes[0] != "openid" {
		t.Error("Identity() shares its scopes with the policy")
	}

	full := identityBase + `
server: {public_url: "http://127.0.0.1:8700"}
identity:
  oidc:
    issuer: http://localhost:5556/dex
    client_id: ajar-dev
    client_secret_env: DEX_SECRET
    scopes: [openid, email, groups]
    user_claim: preferred_username
    groups_claim: roles
  session_ttl: 8h
  refresh: 5m
  revoke_on_loss: true
`
	p, err = Parse([]byte(full), nil, env("DEX_SECRET", "x"))
	if err != nil {
		t.Fatal(err)
	}
	id = p.Identity()
	if o := id.OIDC; o.Issuer != "http://localhost:5556/dex" || o.ClientID != "ajar-dev" || o.ClientSecret != "x" ||
		!slices.Equal(o.Scopes, []string{"openid", "email", "groups"}) || o.UserClaim != "preferred_username" || o.GroupsClaim != "roles" {
		t.Errorf("OIDC = %+v", o)
	}
	if id.SessionTTL != 8*time.Hour || id.Refresh != 5*time.Minute || !id.RevokeOnLoss {
		t.Errorf("Identity = %+v", id)
	}
}

// TestIdentityOSEnv: without WithEnv the secret is read from the process
// environment.
func TestIdentityOSEnv(t *testing.T) {
	t.Setenv("AJAR_OIDC_CLIENT_SECRET", "from-os")
	p, err := Parse([]byte(identityBase+identitySSO), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Identity().OIDC.ClientSecret; got != "from-os" {
		t.Fatalf("ClientSecret = %q", got)
	}
}

func TestIdentitySecretNotPrinted(t *testing.T) {
	p, err := Parse([]byte(identityBase+identitySSO), nil, secretEnv)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity()
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "oidc", id.OIDC, "v", *id.OIDC)
	for _, s := range []string{fmt.Sprint(id), fmt.Sprintf("%+v", id), fmt.Sprintf("%#v", *id.OIDC), fmt.Sprintf("%v", id.OIDC), logged.String()} {
		if strings.Contains(s, "s3cret-value") {
			t.Errorf("the client secret is printed: %s", s)
		}
	}
}

func TestIdentityProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		env  Option
		want map[string]string // field -> part of the message
	}{
		{"issuer missing", `
server: {public_url: https://ajar.example.com}
identity: {oidc: {client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}`, secretEnv,
			map[string]string{"identity.oidc.issuer": "required"}},
		{"issuer over http", `
server: {public_url: https://ajar.example.com}
identity: {oidc: {issuer: "http://idp.example.com", client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}`, secretEnv,
			map[string]string{"identity.oidc.issuer": "https://"}},
		{"issuer not a URL", `
server: {public_url: https://ajar.example.com}
identity: {oidc: {issuer: "idp.example.com", client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}`, secretEnv,
			map[string]string{"identity.oidc.issuer": "https://"}},
		{"issuer with a query", `
server: {public_url: https://ajar.example.com}
identity: {oidc: {issuer: "https://idp.example.com/?x=1", client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}`, secretEnv,
			map[string]string{"identity.oidc.issuer": "query"}},
		{"client_id and secret env missing", `
server: {public_url: https://ajar.example.com}
identity: {oidc: {issuer: "https://idp.example.com"}}`, secretEnv,
			map[string]string{"identity.oidc.client_id": "required", "identity.oidc.client_secret_env": "required"}},
		{"secret env not a name", `
server: {public_url: https://ajar.example.com}
identity: {oidc: {issuer: "https://idp.example.com", client_id: ajar, client_secret_env: "my secret"}}`, secretEnv,
			map[string]string{"identity.oidc.client_secret_env": "environment variable name"}},
		{"secret env unset", identitySSO, env(),
			map[string]string{"identity.oidc.client_secret_env": "AJAR_OIDC_CLIENT_SECRET is not set"}},
		{"secret env empty", identitySSO, env("AJAR_OIDC_CLIENT_SECRET", ""),
			map[string]string{"identity.oidc.client_secret_env": "AJAR_OIDC_CLIENT_SECRET is not set"}},
		{"scopes without openid", identitySSO + "    scopes: [email, profile]\n", secretEnv,
			map[string]string{"identity.oidc.scopes": "must include openid"}},
		{"bad and duplicate scopes", identitySSO + "    scopes: [openid, \"a b\", openid]\n", secretEnv,
			map[string]string{"identity.oidc.scopes[1]": "without spaces", "identity.oidc.scopes[2]": "already scopes[0]"}},
		{"claims with spaces", identitySSO + "    user_claim: \"e mail\"\n    groups_claim: \"my groups\"\n", secretEnv,
			map[string]string{"identity.oidc.user_claim": "without spaces", "identity.oidc.groups_claim": "without spaces"}},
		{"public_url missing", `
identity: {oidc: {issuer: "https://idp.example.com", client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}`, secretEnv,
			map[string]string{"server.public_url": "required with identity.oidc"}},
		{"public_url over http", `
server: {public_url: "http://ajar.example.com"}
identity: {oidc: {issuer: "https://idp.example.com", client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}`, secretEnv,
			map[string]string{"server.public_url": "https://"}},
		{"negative durations", "identity: {session_ttl: -1h, refresh: -1m}\n", env(),
			map[string]string{"identity.session_ttl": "positive", "identity.refresh": "positive"}},
		{"refresh longer than the session", "identity: {session_ttl: 1h, refresh: 2h}\n", env(),
			map[string]string{"identity.refresh": "longer than session_ttl"}},
		{"a secret in the file", identitySSO + "    client_secret: hunter2\n", secretEnv,
			map[string]string{"identity.oidc.client_secret": "unknown field"}},
		{"require_mfa not a bool", `
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 1h
    approval: {steps: [{approvers: [group:leads], count: 1, require_mfa: maybe}]}
    breakglass: {allowed: [group:sre], require_mfa: sometimes}
users: [{id: alice@example.com}]
targets: {web: {provider: ssh-cert, config: {principals: [ubuntu]}}}
`, env(), map[string]string{"policies[0].approval.steps[0].require_mfa": "must be", "policies[0].breakglass.require_mfa": "must be"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := identityBase + tc.yaml
			if strings.Contains(tc.yaml, "policies:") {
				src = tc.yaml
			}
			p, err := Parse([]byte(src), nil, tc.env)
			if p != nil {
				t.Error("Parse returned a Policy along with problems")
			}
			probs := problemsOf(t, err)
			got := map[string]string{}
			for _, pr := range probs {
				got[pr.Field] = pr.Message
			}
			if len(got) != len(tc.want) {
				t.Errorf("problems %v; want exactly %v", probs, tc.want)
			}
			for f, msg := range tc.want {
				if !strings.Contains(got[f], msg) {
					t.Errorf("%s: %q; want a problem saying %q (all: %v)", f, got[f], msg, probs)
				}
			}
			if strings.Contains(probs.Error(), "s3cret-value") {
				t.Error("a problem shows the client secret")
			}
		})
	}
}

// TestIdentityLoopbackIssuers: http is accepted on loopback addresses only.
func TestIdentityLoopbackIssuers(t *testing.T) {
	for issuer, ok := range map[string]bool{
		"http://127.0.0.1:5556": true, "http://localhost:8080/realms/x": true, "http://[::1]:9000": true, "http://127.1.2.3": true,
		"https://idp.example.com/tenant": true,
		"http://10.0.0.1":                false, "http://idp.localhost.example.com": false, "ftp://127.0.0.1": false, "https://user:pw@idp.example.com": false,
	} {
		src := identityBase + fmt.Sprintf(`
server: {public_url: "http://127.0.0.1:8700"}
identity: {oidc: {issuer: %q, client_id: ajar, client_secret_env: S}}
`, issuer)
		_, err := Parse([]byte(src), nil, env("S", "x"))
		if (err == nil) != ok {
			t.Errorf("issuer %s: error %v; want accepted=%v", issuer, err, ok)
		}
	}
}

func TestIdentityAllProblemsAtOnce(t *testing.T) {
	src := identityBase + `
identity:
  oidc: {issuer: "http://idp.example.com", client_secret_env: NOPE, scopes: [email]}
  session_ttl: 1m
  refresh: 1h
`
	_, err := Parse([]byte(src), nil, env())
	got := fields(problemsOf(t, err))
	want := []string{"identity.refresh", "identity.oidc.issuer", "identity.oidc.client_id", "identity.oidc.client_secret_env", "identity.oidc.scopes", "server.public_url"}
	for _, f := range want {
		if !slices.Contains(got, f) {
			t.Errorf("problems %v; missing %s", got, f)
		}
	}
}

func TestRequireMFA(t *testing.T) {
	src := `
users: [{id: alice@example.com}, {id: lee@example.com, groups: [leads]}, {id: sam@example.com, groups: [sre]}]
targets: {web: {provider: ssh-cert, config: {principals: [ubuntu]}}}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 1h
    approval: {steps: [{approvers: [group:leads], count: 1, require_mfa: true}, {approvers: [group:sre], count: 1}]}
    breakglass: {allowed: [group:sre], require_mfa: true}
  - name: plain
    targets: [web]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 1h
    approval: {steps: [{approvers: [group:leads], count: 1}]}
    breakglass: {allowed: [group:sre]}
`
	p, err := Parse([]byte(src), nil, env())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := p.Rule("web")
	if !r.Approval.Steps[0].RequireMFA || r.Approval.Steps[1].RequireMFA || !r.Breakglass.RequireMFA {
		t.Errorf("web: steps %+v breakglass %+v; want MFA on step 0 and break-glass only", r.Approval.Steps, r.Breakglass)
	}
	r, _ = p.Rule("plain")
	if r.Approval.Steps[0].RequireMFA || r.Breakglass.RequireMFA {
		t.Errorf("plain: MFA required without require_mfa")
	}
}
