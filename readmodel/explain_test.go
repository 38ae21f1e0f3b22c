package readmodel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// explainPolicy: web needs a reason, is refused on a friday and approved by
// the policy up to 5m; ssh is the real ssh-cert provider (newWorkflowEnv).
const explainPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  web: {provider: fake}
  ssh: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    require_reason: true
    deny:
      - {expr: 'request.kind != "breakglass" && request.reason.contains("friday")', message: no changes on a friday}
    approval:
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("5m")'
  - name: ssh
    targets: [ssh]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`

// TestExplainService: the dry run names the rule, the outcome and why, is only
// for admins on behalf of others, and checks the target's parameters.
func TestExplainService(t *testing.T) {
	e := newWorkflowEnv(t, explainPolicy)
	ctx := t.Context()
	ex, err := e.rm.Explain(ctx, e.users["alice"], ExplainInput{Target: "web", Duration: "5m", Reason: "x"})
	if err != nil || ex.Outcome != policy.OutcomeAutoApproved || ex.Policy != "web" {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
	_, err = e.rm.Explain(ctx, e.users["alice"], ExplainInput{Target: "web", As: "bob@example.com"})
	if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "as" {
		t.Fatalf("--as by a non-admin: %v", err)
	}
	ex, err = e.rm.Explain(ctx, e.users["root"], ExplainInput{Target: "web", Duration: "1h", Reason: "friday", As: "alice@example.com"})
	if err != nil || ex.User != "alice@example.com" || ex.Outcome != policy.OutcomeDenied || !strings.Contains(ex.Summary, "friday") {
		t.Fatalf("explain as alice: %+v, %v", ex, err)
	}
	ex, err = e.rm.Explain(ctx, e.users["alice"], ExplainInput{Target: "ssh", Params: map[string]string{"nope": "1"}})
	if err != nil || ex.Outcome != policy.OutcomeInvalid || ex.Error.Field != "params.nope" {
		t.Fatalf("bad params: %+v, %v", ex, err)
	}
	_, err = e.rm.Explain(ctx, e.users["root"], ExplainInput{Target: "web", As: "nobody@example.com"})
	wantCode(t, err, ajar.ENOTFOUND)
	_, err = e.rm.Explain(ctx, e.users["alice"], ExplainInput{Target: "web", Duration: "30m", Reason: "\x07"})
	if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "reason" {
		t.Errorf("a control character in the reason: %v", err)
	}
	if n, err := e.rm.ListRequests(ctx, e.users["root"], ListInput{}); err != nil || len(n.Requests) != 0 {
		t.Errorf("explain created requests: %+v, %v", n, err)
	}
}

// TestExplainListsMissingInputs: explaining before the reason or a required
// parameter is filled in says what approval the request would need and lists
// what is still missing, instead of answering "invalid".
func TestExplainListsMissingInputs(t *testing.T) {
	e := newWorkflowEnv(t, explainPolicy)
	// "web" requires a reason; 30m needs one approval from sre.
	ex, err := e.rm.Explain(t.Context(), e.users["alice"], ExplainInput{Target: "web", Duration: "30m"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Outcome != policy.OutcomeNeedsApproval || ex.Error != nil || fmt.Sprint(ex.Missing) != "[reason]" ||
		!strings.HasSuffix(ex.Summary, "; a request still needs: reason") {
		t.Fatalf("explain web without a reason: %+v", ex)
	}
	// A required parameter not given is missing; one given wrong is not.
	perr := ajar.FieldErrorf("params.source_ip", "required: this target pins the source address")
	if !missingParam(perr, nil) || missingParam(perr, map[string]string{"source_ip": "x"}) || missingParam(ajar.FieldErrorf("reason", "x"), nil) {
		t.Errorf("missingParam does not tell a missing parameter from a bad one")
	}
	// A parameter given wrong is invalid, not missing.
	ex, err = e.rm.Explain(t.Context(), e.users["alice"], ExplainInput{Target: "ssh", Duration: "30m", Params: map[string]string{"source_ip": "not-an-ip"}})
	if err != nil || ex.Outcome != policy.OutcomeInvalid || ex.Error == nil || ex.Error.Field != "params.source_ip" || len(ex.Missing) != 0 {
		t.Fatalf("explain with a bad source_ip: %+v, %v", ex, err)
	}
}
