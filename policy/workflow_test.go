package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// workflowYAML has a deny rule (business hours, except break-glass), a require
// rule (a ticket for long access), an auto-approve rule, escalation, extension
// and break-glass.
const workflowYAML = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: carol@example.com, groups: [sre, engineers]}
  - {id: dave@example.com, groups: [leads]}
targets:
  prod: {provider: ssh-cert, config: {principals: [ubuntu]}}
  lab: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: prod
    targets: [prod]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    deny:
      - expr: request.kind != "breakglass" && (now.getHours("UTC") < 8 || now.getHours("UTC") >= 18)
        message: outside business hours (08:00-18:00 UTC)
    require:
      - expr: |
          request.duration <= duration("15m") ||
          request.ticket.startsWith("INC-")
        message: a ticket INC-... for more than 15 minutes
        field: ticket
    approval:
      steps: [{approvers: [group:sre], count: 1, escalate_after: 10m, escalate_to: [group:leads]}]
      auto_approve: 'request.duration <= duration("10m")'
    extend: {max_extensions: 2, max_total: 3h}
    breakglass: {allowed: [group:sre]}
  - name: lab
    targets: [lab]
    requesters: [group:engineers]
    default_duration: 1h
    max_duration: 4h
    deny:
      - {expr: 'request.params["env"] == "prod"', message: lab access is not for prod}
    approval:
      steps: [{approvers: [group:sre], count: 1}]
    extend: {max_extensions: 1, max_total: 8h, approval: none}
`

func workflowPolicy(tb testing.TB) *Policy {
	tb.Helper()
	p, err := Parse([]byte(workflowYAML), fakeCheck)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return p
}

func at(hour int) time.Time { return time.Date(2026, 3, 2, hour, 30, 0, 0, time.UTC) }

// TestConditions is the documented outcome of a deny rule, a require rule and
// an auto-approve rule for a table of requests: deny is checked first, then
// require, then auto_approve, and an evaluation error refuses.
func TestConditions(t *testing.T) {
	p := workflowPolicy(t)
	type want struct {
		code, field, msg string // an error
		auto             bool
	}
	tests := []struct {
		name string
		user string
		in   Input
		want want
	}{
		{"short, in hours: auto-approved", "alice", Input{Target: "prod", Duration: 5 * time.Minute, Now: at(10)}, want{auto: true}},
		{"long without ticket: required", "alice", Input{Target: "prod", Duration: time.Hour, Now: at(10)},
			want{code: ajar.EINVALID, field: "ticket", msg: `policy "prod" requires: a ticket INC-... for more than 15 minutes (require[0]:`}},
		{"long with ticket: needs approval", "alice", Input{Target: "prod", Duration: time.Hour, Ticket: "INC-7", Now: at(10)}, want{}},
		{"short, out of hours: denied although auto_approve holds", "alice", Input{Target: "prod", Duration: 5 * time.Minute, Now: at(20)},
			want{code: ajar.EFORBIDDEN, msg: `denied by policy "prod": outside business hours (08:00-18:00 UTC) (deny[0]:`}},
		{"long without ticket, out of hours: deny comes first", "alice", Input{Target: "prod", Duration: time.Hour, Now: at(7)},
			want{code: ajar.EFORBIDDEN, msg: "outside business hours"}},
		{"limits come before conditions", "alice", Input{Target: "prod", Duration: 3 * time.Hour, Now: at(20)},
			want{code: ajar.EINVALID, field: "duration", msg: "longer than the maximum 2h"}},
		{"evaluation error refuses", "alice", Input{Target: "lab", Now: at(10)},
			want{code: ajar.EFORBIDDEN, msg: `could not be evaluated`}},
		{"deny holds", "alice", Input{Target: "lab", Params: map[string]string{"env": "prod"}, Now: at(10)},
			want{code: ajar.EFORBIDDEN, msg: "lab access is not for prod"}},
		{"deny does not hold", "alice", Input{Target: "lab", Params: map[string]string{"env": "dev"}, Now: at(10)}, want{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := p.Evaluate(user(t, p, tc.user+"@example.com"), tc.in)
			if tc.want.code != "" {
				if ajar.ErrorCode(err) != tc.want.code || ajar.ErrorField(err) != tc.want.field || !strings.Contains(ajar.ErrorMessage(err), tc.want.msg) {
					t.Fatalf("Evaluate: %v (field %q), want %s field %q containing %q", err, ajar.ErrorField(err), tc.want.code, tc.want.field, tc.want.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if d.AutoApprove != tc.want.auto {
				t.Errorf("AutoApprove = %v, want %v (%+v)", d.AutoApprove, tc.want.auto, d.Conditions)
			}
		})
	}
}

func TestBreakglassEvaluation(t *testing.T) {
	p := workflowPolicy(t)
	bob, alice := user(t, p, "bob@example.com"), user(t, p, "alice@example.com")
	// bob is no requester of prod, but break-glass names him; out of hours too.
	d, err := p.EvaluateBreakglass(bob, Input{Target: "prod", Duration: time.Hour, Reason: "outage", Ticket: "INC-1", Now: at(23)})
	if err != nil || d.Rule.Name != "prod" || !d.AutoApprove || d.Duration != time.Hour {
		t.Fatalf("bob's break-glass: %+v, %v", d, err)
	}
	_, err = p.EvaluateBreakglass(alice, Input{Target: "prod", Reason: "x", Now: at(10)})
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN || ajar.ErrorField(err) != "target" {
		t.Errorf("alice's break-glass: %v", err)
	}
	_, err = p.EvaluateBreakglass(bob, Input{Target: "prod", Now: at(10)})
	if ajar.ErrorField(err) != "reason" {
		t.Errorf("break-glass without a reason: %v", err)
	}
	_, err = p.EvaluateBreakglass(bob, Input{Target: "prod", Duration: time.Hour, Reason: "x", Now: at(10)})
	if ajar.ErrorField(err) != "ticket" {
		t.Errorf("require applies to break-glass too: %v", err)
	}
	_, err = p.EvaluateBreakglass(bob, Input{Target: "lab", Reason: "x", Now: at(10)})
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Errorf("break-glass on a rule without it: %v", err)
	}
}

func TestExtensionEvaluation(t *testing.T) {
	p := workflowPolicy(t)
	alice := user(t, p, "alice@example.com")
	base := ExtensionInput{Policy: "prod", Target: "prod", Ticket: "INC-1", Start: at(10), Window: time.Hour, By: time.Hour, Now: at(11)}
	tests := []struct {
		name             string
		edit             func(*ExtensionInput)
		code, field, msg string
		auto             bool
		window           time.Duration
	}{
		{name: "within limits needs approval", window: 2 * time.Hour},
		{name: "past max_total", edit: func(in *ExtensionInput) { in.Window = 2*time.Hour + 30*time.Minute },
			code: ajar.EINVALID, field: "by", msg: `would make the window 3h30m, longer than extend.max_total 3h of policy "prod" (at most 30m more)`},
		{name: "overflowing by", edit: func(in *ExtensionInput) { in.By = overflowBy(t) },
			code: ajar.EINVALID, field: "by", msg: "longer than extend.max_total 3h"},
		{name: "overflowing by, approval none", edit: func(in *ExtensionInput) {
			in.Policy, in.Target, in.Params, in.By = "lab", "lab", map[string]string{"env": "dev"}, overflowBy(t)
		}, code: ajar.EINVALID, field: "by", msg: "longer than extend.max_total 8h"},
		{name: "too many", edit: func(in *ExtensionInput) { in.Extensions = 2 },
			code: ajar.EFORBIDDEN, msg: "extend.max_extensions"},
		{name: "not positive", edit: func(in *ExtensionInput) { in.By = 0 }, code: ajar.EINVALID, field: "by"},
		{name: "deny applies", edit: func(in *ExtensionInput) { in.Now = at(19) }, code: ajar.EFORBIDDEN, msg: "business hours"},
		{name: "auto_approve sees the whole window", edit: func(in *ExtensionInput) { in.Window, in.By, in.Ticket = 5*time.Minute, 4*time.Minute, "" },
			auto: true, window: 9 * time.Minute},
		{name: "extend.approval none", edit: func(in *ExtensionInput) {
			in.Policy, in.Target, in.Params = "lab", "lab", map[string]string{"env": "dev"}
		},
			auto: true, window: 2 * time.Hour},
		{name: "no extend section", edit: func(in *ExtensionInput) { in.Policy = "nope" }, code: ajar.ECONFLICT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			if tc.edit != nil {
				tc.edit(&in)
			}
			d, err := p.EvaluateExtension(alice, in)
			if tc.code != "" {
				if ajar.ErrorCode(err) != tc.code || ajar.ErrorField(err) != tc.field || !strings.Contains(ajar.ErrorMessage(err), tc.msg) {
					t.Fatalf("EvaluateExtension: %v (field %q), want %s field %q containing %q", err, ajar.ErrorField(err), tc.code, tc.field, tc.msg)
				}
				return
			}
			if err != nil || d.AutoApprove != tc.auto || d.Duration != tc.window {
				t.Fatalf("EvaluateExtension = %+v, %v; want auto %v, window %s", d, err, tc.auto, tc.window)
			}
		})
	}
}

// overflowBy is the extension that wrapped window + by to a negative duration
// and was auto-approved until the year 2319.
func overflowBy(tb testing.TB) time.Duration {
	d, err := time.ParseDuration("2562047h47m16s")
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// FuzzEvaluateExtension checks that no extension EvaluateExtension accepts
// makes a window longer than the rule's max_total or ajar.MaxWindow, and that
// its Decision.Duration is exactly window + by.
func FuzzEvaluateExtension(f *testing.F) {
	p := workflowPolicy(f)
	alice := user(f, p, "alice@example.com")
	f.Add("lab", int64(time.Hour), int64(overflowBy(f)), 0)
	f.Add("prod", int64(time.Hour), int64(overflowBy(f)), 0)
	f.Add("lab", int64(time.Hour), int64(7*time.Hour), 0)
	f.Add("lab", int64(-time.Hour), int64(time.Hour), 0)
	f.Add("lab", int64(1<<62), int64(1<<62), 0)
	f.Fuzz(func(t *testing.T, policy string, window, by int64, done int) {
		in := ExtensionInput{Policy: policy, Target: policy, Ticket: "INC-1", Params: map[string]string{"env": "dev"},
			Start: at(10), Window: time.Duration(window), By: time.Duration(by), Extensions: done, Now: at(11)}
		d, err := p.EvaluateExtension(alice, in)
		if err != nil {
			return
		}
		r, _ := p.Rule(policy)
		switch {
		case in.By <= 0 || in.Window <= 0:
			t.Fatalf("accepted window %s by %s", in.Window, in.By)
		case d.Duration > r.Extend.MaxTotal || d.Duration > ajar.MaxWindow:
			t.Fatalf("window %s by %s gave %s, past max_total %s", in.Window, in.By, d.Duration, r.Extend.MaxTotal)
		case d.Duration-in.Window != in.By || d.Duration < in.Window:
			t.Fatalf("window %s by %s gave %s", in.Window, in.By, d.Duration)
		}
	})
}

// TestHardWindowLimit: no policy may grant or extend past ajar.MaxWindow.
func TestHardWindowLimit(t *testing.T) {
	src := strings.Replace(workflowYAML, "max_duration: 4h", "max_duration: 2562047h", 1)
	src = strings.Replace(src, "max_total: 8h", "max_total: 2562047h47m16s", 1)
	_, err := Parse([]byte(src), fakeCheck)
	probs := problemsOf(t, err)
	want := "policies[1].max_duration policies[1].extend.max_total"
	if got := strings.Join(fields(probs), " "); got != want {
		t.Fatalf("problems: got %v, want %s", probs, want)
	}
}

func TestExplain(t *testing.T) {
	p := workflowPolicy(t)
	alice, bob := user(t, p, "alice@example.com"), user(t, p, "bob@example.com")

	ex := p.Explain(alice, Input{Target: "prod", Duration: 5 * time.Minute, Now: at(10)})
	if ex.Outcome != OutcomeAutoApproved || ex.Policy != "prod" || ex.Error != nil {
		t.Fatalf("short request: %+v", ex)
	}
	if len(ex.Conditions) != 3 || ex.Conditions[0].Kind != "deny" || ex.Conditions[0].Value ||
		ex.Conditions[1].Kind != "require" || !ex.Conditions[1].Value || ex.Conditions[2].Kind != "auto_approve" || !ex.Conditions[2].Value {
		t.Errorf("conditions: %+v", ex.Conditions)
	}
	if len(ex.Steps) != 1 || strings.Join(ex.Steps[0].Eligible, ",") != "bob@example.com,carol@example.com" || ex.Steps[0].EscalateAfter != "10m" {
		t.Errorf("steps: %+v", ex.Steps)
	}
	if ex.Limits.MaxDuration != "2h" || ex.Limits.MaxTotal != "3h" || ex.Limits.MaxExtensions != 2 || ex.Breakglass != "" {
		t.Errorf("limits: %+v, break-glass %q", ex.Limits, ex.Breakglass)
	}
	if !strings.Contains(ex.Summary, `auto-approved: request.duration <= duration("10m") is true`) {
		t.Errorf("summary: %s", ex.Summary)
	}

	ex = p.Explain(alice, Input{Target: "prod", Duration: 3 * time.Hour, Now: at(20)})
	if ex.Outcome != OutcomeInvalid || ex.Error.Field != "duration" || ex.Checks[0].OK || !ex.Conditions[0].Value {
		t.Errorf("too long, out of hours: %+v", ex)
	}
	ex = p.Explain(alice, Input{Target: "prod", Duration: time.Hour, Now: at(20)})
	if ex.Outcome != OutcomeDenied || ex.Error.Code != ajar.EFORBIDDEN || !strings.Contains(ex.Summary, "business hours") {
		t.Errorf("out of hours: %+v", ex)
	}
	ex = p.Explain(alice, Input{Target: "prod", Duration: time.Hour, Ticket: "INC-2", Now: at(10)})
	if ex.Outcome != OutcomeNeedsApproval || !strings.Contains(ex.Summary, "is false") {
		t.Errorf("needs approval: %+v", ex)
	}
	ex = p.Explain(bob, Input{Target: "prod", Now: at(10)})
	if ex.Outcome != OutcomeNoPolicy || ex.Breakglass != "prod" || len(ex.Rules) != 1 || ex.Rules[0].Requester {
		t.Errorf("bob: %+v", ex)
	}
}

// TestConditionPositions checks that syntax and type errors in deny and
// require conditions are reported at their line and column in the file, for
// plain, quoted and literal-block expressions.
func TestConditionPositions(t *testing.T) {
	src := `users: [{id: a@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - name: r
    targets: [t]
    requesters: [a@example.com]
    default_duration: 1h
    max_duration: 1h
    deny:
      - expr: request.duration > 5
      - expr: 'request.reason =='
    require:
      - expr: |
          request.ticket != "" &&
            request.nope
      - {expr: '', message: x}
      - {expr: 'true', field: tickets}
    approval:
      steps: [{approvers: [a@example.com], count: 1}]
`
	_, err := Parse([]byte(src), fakeCheck)
	probs := problemsOf(t, err)
	want := []struct{ field, msg string }{
		{"policies[0].deny[0].expr", "line 10, column 32: found no matching overload for '_>_' applied to '(duration, int)'"},
		{"policies[0].deny[1].expr", "line 11, column 33: Syntax error"},
		{"policies[0].require[0].expr", "line 15, column 20: undefined field 'nope'"},
		{"policies[0].require[1].expr", "required"},
		{"policies[0].require[2].field", "must name a request field"},
	}
	if len(probs) != len(want) {
		t.Fatalf("problems:\n%v", probs)
	}
	for i, w := range want {
		if probs[i].Field != w.field || !strings.Contains(probs[i].Message, w.msg) {
			t.Errorf("problem %d: %s: %s\nwant %s: ...%s...", i, probs[i].Field, probs[i].Message, w.field, w.msg)
		}
	}
}

func TestWorkflowValidation(t *testing.T) {
	src := workflowYAML + `notifications:
  - {name: hook, type: webhook, url: 'https://example.com/x'}
  - {name: chat, type: slack, url_env: SLACK_URL, url: 'https://hooks.slack.com/x', events: [request.created, request.exploded]}
  - {name: log, type: log, url: 'http://x'}
  - {name: mail, type: email}
`
	src = strings.Replace(src, "escalate_after: 10m,", "escalate_after: 1d,", 1)
	_, err := Parse([]byte(src), fakeCheck)
	probs := problemsOf(t, err)
	if got := fields(probs); len(got) != 1 || got[0] != "policies[0].approval.steps[0].escalate_after" {
		t.Fatalf("structural problems first: %v", probs)
	}
	src = strings.Replace(src, "escalate_after: 1d,", "escalate_after: 24h,", 1)
	src = strings.Replace(src, "approval: none}", "approval: maybe}", 1)
	_, err = Parse([]byte(src), fakeCheck)
	probs = problemsOf(t, err)
	want := []string{
		"policies[0].approval.steps[0].escalate_after", // not shorter than the 24h timeout
		"policies[1].extend.approval",
		"notifications[0].secret_env",
		"notifications[1].url_env",
		"notifications[1].events[1]",
		"notifications[2].url",
		"notifications[3].type",
	}
	if got := fields(probs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("problems:\n got %v\nwant %v\n%v", got, want, probs)
	}
}
