package policy

import (
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
)

// approvalPolicy is a file with users alice (engineers), bob and carol (sre)
// and one rule whose approval block is approval.
func approvalPolicy(requesters, approval string) string {
	return `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre, engineers]}
  - {id: carol@example.com, groups: [sre]}
targets: {web: {provider: ssh-cert, config: {principals: [ubuntu]}}}
policies:
  - name: web
    targets: [web]
    requesters: ` + requesters + `
    default_duration: 5m
    max_duration: 1h
    approval: ` + approval + "\n"
}

// wantProblems checks that probs has exactly the fields given, each message
// containing its text.
func wantProblems(t *testing.T, probs ajar.Problems, want map[string]string) {
	t.Helper()
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(probs), len(want), probs)
	}
	for _, p := range probs {
		w, ok := want[p.Field]
		if !ok || !strings.Contains(p.Message, w) {
			t.Errorf("problem %s: %s; want %q", p.Field, p.Message, w)
		}
	}
}

// TestUnapprovableIsAnError: with only static users, a rule whose steps no
// request could complete is refused at load, with field paths.
func TestUnapprovableIsAnError(t *testing.T) {
	for name, tc := range map[string]struct {
		requesters, approval string
		want                 map[string]string
	}{
		"group nobody is in": {"[group:engineers]", "{steps: [{approvers: [group:sres], count: 1}]}", map[string]string{
			"policies[0].approval.steps[0].approvers[0]": "no user is in group sres",
			"policies[0].approval.steps[0].count":        "needs 1 approver(s) but only 0 person(s)",
		}},
		"count larger than the approvers": {"[group:engineers]", "{steps: [{approvers: [group:sre], count: 3}]}", map[string]string{
			"policies[0].approval.steps[0].count": "needs 3 approver(s) but only 2 person(s) other than the requester may approve this step, so no request under this rule could ever be approved",
		}},
		"requesters approve only each other": {"[group:sre]", "{steps: [{approvers: [group:sre], count: 2}]}", map[string]string{
			"policies[0].approval.steps[0].count": "needs 2 approver(s) but only 1 person(s) other than the requester",
		}},
		"one person cannot approve two steps": {"[alice@example.com]",
			"{steps: [{approvers: [bob@example.com], count: 1}, {approvers: [bob@example.com], count: 1}]}", map[string]string{
				"policies[0].approval.steps": "need 2 distinct approvers in all (each person decides once per request) but only 1 person(s)",
			}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(approvalPolicy(tc.requesters, tc.approval)), fakeCheck)
			probs, ok := err.(ajar.Problems)
			if !ok {
				t.Fatalf("Parse = %v, want problems", err)
			}
			wantProblems(t, probs, tc.want)
		})
	}
}

// TestUnapprovableWarnings: a rule that only some requesters are stuck under,
// or whose auto_approve still approves some requests, loads with a warning.
func TestUnapprovableWarnings(t *testing.T) {
	// bob is an approver: only carol is left for his requests; alice has two.
	p, err := Parse([]byte(approvalPolicy("[group:engineers]", "{steps: [{approvers: [group:sre], count: 2}]}")), fakeCheck)
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, p.Warnings(), map[string]string{
		"policies[0].approval.steps[0].count": "so requests by bob@example.com could never be approved",
	})
	p, err = Parse([]byte(approvalPolicy("[group:engineers]",
		`{steps: [{approvers: [group:sres], count: 1}], auto_approve: 'request.duration <= duration("5m")'}`)), fakeCheck)
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, p.Warnings(), map[string]string{
		"policies[0].approval.steps[0].approvers[0]": "no user is in group sres",
		"policies[0].approval.steps[0].count":        "unless auto_approve approves it",
	})
	// A sound rule has none.
	p, err = Parse([]byte(approvalPolicy("[group:engineers]", "{steps: [{approvers: [group:sre], count: 1}]}")), fakeCheck)
	if err != nil || p.Warnings() != nil {
		t.Fatalf("Parse = %v, warnings %v", err, p.Warnings())
	}
}

// TestUnapprovableWithIdentityProvider: when groups also come from an identity
// provider, the static users are not everyone: the same file loads, and the
// problems are warnings.
func TestUnapprovableWithIdentityProvider(t *testing.T) {
	src := approvalPolicy("[group:engineers]", "{steps: [{approvers: [group:sres], count: 1}]}") + `
server: {public_url: "http://127.0.0.1:8700"}
identity: {oidc: {issuer: "http://127.0.0.1:9999", client_id: ajar, client_secret_env: SECRET}}
`
	env := WithEnv(func(string) (string, bool) { return "s3cret", true })
	if _, err := Parse([]byte(approvalPolicy("[group:engineers]", "{steps: [{approvers: [group:sres], count: 1}]}")), fakeCheck, env); err == nil {
		t.Fatal("without an identity provider the unapprovable rule loaded")
	}
	p, err := Parse([]byte(src), fakeCheck, env)
	if err != nil {
		t.Fatalf("Parse with an identity provider: %v", err)
	}
	wantProblems(t, p.Warnings(), map[string]string{
		"policies[0].approval.steps[0].approvers[0]": "no user is in group sres",
		"policies[0].approval.steps[0].count":        "needs 1 approver(s) but only 0 person(s)",
	})
}

// TestExplainListsWarnings: explain shows the warnings about the rule that
// applies, and none about a sound rule.
func TestExplainListsWarnings(t *testing.T) {
	p, err := Parse([]byte(approvalPolicy("[group:engineers]", "{steps: [{approvers: [group:sre], count: 2}]}")), fakeCheck)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := p.User("bob@example.com")
	ex := p.Explain(bob, Input{Target: "web"})
	if len(ex.Warnings) != 1 || !strings.HasPrefix(ex.Warnings[0], "policies[0].approval.steps[0].count: needs 2 approver(s)") {
		t.Fatalf("Warnings = %q", ex.Warnings)
	}
	p = testPolicy(t)
	alice, _ := p.User("alice@example.com")
	if ex := p.Explain(alice, Input{Target: "web"}); len(ex.Warnings) != 0 {
		t.Fatalf("sound rule: Warnings = %q", ex.Warnings)
	}
}
