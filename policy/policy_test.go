package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// rulesYAML exercises rule selection: by user id, by group, first match wins.
const rulesYAML = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: carol@example.com, groups: [engineers, oncall]}
  - {id: dave@example.com, groups: [contractors]}
admins: [group:admins, carol@example.com]
targets:
  web: {provider: ssh-cert, config: {principals: [ubuntu]}}
  db: {provider: ssh-cert, config: {principals: [postgres]}}
  jump: {provider: ssh-cert, config: {principals: [jump]}}
  vault: {provider: ssh-cert, config: {principals: [root]}}
policies:
  # carol by user id, before the engineers rule that would also match her.
  - name: carol-web
    targets: [web]
    requesters: [carol@example.com]
    default_duration: 1h
    max_duration: 8h
    approval:
      steps: [{approvers: [bob@example.com], count: 1}]
  - name: engineers
    targets: [web, db]
    requesters: [group:engineers]
    default_duration: 15m
    min_duration: 5s
    max_duration: 1h
    require_reason: true
    approval:
      timeout: 30m
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("5m")'
  # Never consulted for engineers on db: the rule above matches first.
  - name: engineers-db-long
    targets: [db]
    requesters: [group:engineers]
    default_duration: 4h
    max_duration: 8h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
  - name: contractors-db
    targets: [db]
    requesters: [dave@example.com]
    default_duration: 10m
    max_duration: 30m
    ticket_pattern: 'OPS-[0-9]+'
    approval:
      steps: [{approvers: [group:sre], count: 2}, {approvers: [carol@example.com], count: 1}]
      auto_approve: 'request.params["source_ip"].startsWith("10.")'
  # No approvers: only what the condition allows can be had at all.
  - name: oncall-jump
    targets: [jump]
    requesters: [group:oncall]
    default_duration: 10m
    max_duration: 1h
    approval:
      auto_approve: '"oncall" in requester.groups && request.duration <= duration("30m") && request.target == "jump"'
`

func testPolicy(tb testing.TB) *Policy {
	tb.Helper()
	p, err := Parse([]byte(rulesYAML), fakeCheck)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return p
}

func user(tb testing.TB, p *Policy, id string) ajar.User {
	tb.Helper()
	u, ok := p.User(id)
	if !ok {
		tb.Fatalf("no user %s", id)
	}
	return u
}

func TestEvaluate(t *testing.T) {
	p := testPolicy(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	type want struct {
		rule     string
		duration time.Duration
		auto     bool
		autoErr  bool
		timeout  time.Duration
	}
	type wantErr struct {
		code, field string
		msg         string // substring
	}
	tests := []struct {
		name    string
		user    string
		in      Input
		want    want
		wantErr *wantErr
	}{
		{
			name: "group rule, default duration, not auto-approved",
			user: "alice@example.com",
			in:   Input{Target: "web", Reason: "deploy"},
			want: want{rule: "engineers", duration: 15 * time.Minute, timeout: 30 * time.Minute},
		},
		{
			name: "auto-approved exactly at the limit",
			user: "alice@example.com",
			in:   Input{Target: "web", Duration: 5 * time.Minute, Reason: "deploy"},
			want: want{rule: "engineers", duration: 5 * time.Minute, auto: true, timeout: 30 * time.Minute},
		},
		{
			name: "one second past the limit needs approval",
			user: "alice@example.com",
			in:   Input{Target: "web", Duration: 5*time.Minute + time.Second, Reason: "deploy"},
			want: want{rule: "engineers", duration: 5*time.Minute + time.Second, timeout: 30 * time.Minute},
		},
		{
			name: "exactly the maximum",
			user: "alice@example.com",
			in:   Input{Target: "web", Duration: time.Hour, Reason: "deploy"},
			want: want{rule: "engineers", duration: time.Hour, timeout: 30 * time.Minute},
		},
		{
			name: "exactly the minimum",
			user: "alice@example.com",
			in:   Input{Target: "web", Duration: 5 * time.Second, Reason: "deploy"},
			want: want{rule: "engineers", duration: 5 * time.Second, auto: true, timeout: 30 * time.Minute},
		},
		{
			name:    "over the maximum",
			user:    "alice@example.com",
			in:      Input{Target: "web", Duration: time.Hour + time.Second, Reason: "deploy"},
			wantErr: &wantErr{ajar.EINVALID, "duration", `1h0m1s is longer than the maximum 1h of policy "engineers"`},
		},
		{
			name:    "under the minimum",
			user:    "alice@example.com",
			in:      Input{Target: "web", Duration: 4 * time.Second, Reason: "deploy"},
			wantErr: &wantErr{ajar.EINVALID, "duration", `4s is shorter than the minimum 5s of policy "engineers"`},
		},
		{
			name:    "negative duration",
			user:    "alice@example.com",
			in:      Input{Target: "web", Duration: -time.Minute, Reason: "deploy"},
			wantErr: &wantErr{ajar.EINVALID, "duration", "must be positive"},
		},
		{
			name:    "reason required",
			user:    "alice@example.com",
			in:      Input{Target: "web"},
			wantErr: &wantErr{ajar.EINVALID, "reason", `required by policy "engineers"`},
		},
		{
			name:    "blank reason",
			user:    "alice@example.com",
			in:      Input{Target: "web", Reason: " \t\n"},
			wantErr: &wantErr{ajar.EINVALID, "reason", "required"},
		},
		{
			name: "a ticket without a pattern is fine",
			user: "alice@example.com",
			in:   Input{Target: "web", Reason: "deploy", Ticket: "anything"},
			want: want{rule: "engineers", duration: 15 * time.Minute, timeout: 30 * time.Minute},
		},
		{
			name: "user id rule matched before the group rule",
			user: "carol@example.com",
			in:   Input{Target: "web"},
			want: want{rule: "carol-web", duration: time.Hour, timeout: DefaultApprovalTimeout},
		},
		{
			name: "same user, other target: the group rule",
			user: "carol@example.com",
			in:   Input{Target: "db", Duration: time.Minute, Reason: "fix"},
			want: want{rule: "engineers", duration: time.Minute, auto: true, timeout: 30 * time.Minute},
		},
		{
			name:    "first match decides even when a later rule would allow it",
			user:    "alice@example.com",
			in:      Input{Target: "db", Duration: 2 * time.Hour, Reason: "migration"},
			wantErr: &wantErr{ajar.EINVALID, "duration", `maximum 1h of policy "engineers"`},
		},
		{
			name:    "unknown target",
			user:    "alice@example.com",
			in:      Input{Target: "nope", Reason: "x"},
			wantErr: &wantErr{ajar.ENOTFOUND, "target", `no target named "nope"`},
		},
		{
			name:    "no rule for this user",
			user:    "bob@example.com",
			in:      Input{Target: "web", Reason: "x"},
			wantErr: &wantErr{ajar.EFORBIDDEN, "target", `no policy lets bob@example.com request "web"`},
		},
		{
			name:    "target no rule covers",
			user:    "carol@example.com",
			in:      Input{Target: "vault", Reason: "x"},
			wantErr: &wantErr{ajar.EFORBIDDEN, "target", "no policy"},
		},
		{
			name:    "ticket required by the pattern",
			user:    "dave@example.com",
			in:      Input{Target: "db"},
			wantErr: &wantErr{ajar.EINVALID, "ticket", `required by policy "contractors-db": a ticket matching OPS-[0-9]+`},
		},
		{
			name:    "ticket must match as a whole",
			user:    "dave@example.com",
			in:      Input{Target: "db", Ticket: "xOPS-12"},
			wantErr: &wantErr{ajar.EINVALID, "ticket", `"xOPS-12" does not match OPS-[0-9]+ (policy "contractors-db")`},
		},
		{
			name: "CEL error is not auto-approved and not an error",
			user: "dave@example.com",
			in:   Input{Target: "db", Ticket: "OPS-12"},
			want: want{rule: "contractors-db", duration: 10 * time.Minute, autoErr: true, timeout: DefaultApprovalTimeout},
		},
		{
			name: "condition on params holds",
			user: "dave@example.com",
			in:   Input{Target: "db", Ticket: "OPS-12", Params: map[string]string{"source_ip": "10.1.2.3"}},
			want: want{rule: "contractors-db", duration: 10 * time.Minute, auto: true, timeout: DefaultApprovalTimeout},
		},
		{
			name: "condition on params fails",
			user: "dave@example.com",
			in:   Input{Target: "db", Ticket: "OPS-12", Params: map[string]string{"source_ip": "192.168.1.1"}},
			want: want{rule: "contractors-db", duration: 10 * time.Minute, timeout: DefaultApprovalTimeout},
		},
		{
			name: "auto-approve-only rule, condition holds",
			user: "carol@example.com",
			in:   Input{Target: "jump", Duration: 30 * time.Minute},
			want: want{rule: "oncall-jump", duration: 30 * time.Minute, auto: true, timeout: DefaultApprovalTimeout},
		},
		{
			name:    "auto-approve-only rule, condition fails: nobody could approve",
			user:    "carol@example.com",
			in:      Input{Target: "jump", Duration: 31 * time.Minute},
			wantErr: &wantErr{ajar.EFORBIDDEN, "", `policy "oncall-jump" has no approvers`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = now
			d, err := p.Evaluate(user(t, p, tc.user), tc.in)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Evaluate = %+v, want %s error", d, tc.wantErr.code)
				}
				if got := ajar.ErrorCode(err); got != tc.wantErr.code {
					t.Errorf("code = %q, want %q (%v)", got, tc.wantErr.code, err)
				}
				if got := ajar.ErrorField(err); got != tc.wantErr.field {
					t.Errorf("field = %q, want %q (%v)", got, tc.wantErr.field, err)
				}
				if !strings.Contains(ajar.ErrorMessage(err), tc.wantErr.msg) {
					t.Errorf("message %q does not contain %q", ajar.ErrorMessage(err), tc.wantErr.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			got := want{rule: d.Rule.Name, duration: d.Duration, auto: d.AutoApprove, autoErr: d.AutoApproveErr != nil, timeout: d.ApprovalTimeout}
			if got != tc.want {
				t.Errorf("decision:\n got %+v\nwant %+v\n(auto-approve error: %v)", got, tc.want, d.AutoApproveErr)
			}
			if (d.AutoApproveExpr != "") != (d.Rule.Approval.AutoApprove != nil) {
				t.Errorf("AutoApproveExpr = %q for a rule with condition %v", d.AutoApproveExpr, d.Rule.Approval.AutoApprove)
			}
		})
	}
}

// TestEvaluateStart checks that request.start is the requested start (or the
// time of asking), request.end the start plus the duration, and now the start
// of the window, not the time of asking.
func TestEvaluateStart(t *testing.T) {
	p, err := Parse([]byte(`
users: [{id: a@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - name: r
    targets: [t]
    requesters: [a@example.com]
    default_duration: 1h
    max_duration: 1h
    approval:
      steps: [{approvers: [a@example.com], count: 1}]
      auto_approve: >-
        request.start == now && request.end == request.start + request.duration &&
        now == timestamp("2025-06-01T13:00:00Z") && request.end == timestamp("2025-06-01T14:00:00Z")
`), fakeCheck)
	if err != nil {
		t.Fatal(err)
	}
	u := ajar.User{ID: "a@example.com"}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	for _, tc := range []struct {
		start *time.Time
		want  bool
	}{{nil, false}, {&now, false}, {&later, true}} {
		d, err := p.Evaluate(u, Input{Target: "t", Start: tc.start, Now: now})
		if err != nil || d.AutoApprove != tc.want || d.AutoApproveErr != nil {
			t.Errorf("start %v: %+v, %v; want auto-approve %v", tc.start, d, err, tc.want)
		}
	}
}

// TestConditionsSeeStart is the README's business-hours rule on a request made
// at noon for a start at 02:00: the deny must see the start, not the time of
// asking. (It passed when conditions saw the time of asking.)
func TestConditionsSeeStart(t *testing.T) {
	p, err := Parse([]byte(`
users: [{id: a@example.com}, {id: b@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - name: r
    targets: [t]
    requesters: [a@example.com]
    default_duration: 1h
    max_duration: 1h
    deny:
      - expr: 'now.getHours("UTC") < 9 || now.getHours("UTC") >= 18'
        message: outside business hours
    approval:
      steps: [{approvers: [b@example.com], count: 1}]
      auto_approve: 'true'
`), fakeCheck)
	if err != nil {
		t.Fatal(err)
	}
	u := ajar.User{ID: "a@example.com"}
	noon := time.Date(2025, 6, 1, 12, 51, 0, 0, time.UTC)
	night := time.Date(2025, 6, 2, 2, 0, 0, 0, time.UTC)
	if _, err := p.Evaluate(u, Input{Target: "t", Now: noon}); err != nil {
		t.Fatalf("at noon for now: %v", err)
	}
	if d, err := p.Evaluate(u, Input{Target: "t", Start: &night, Now: noon}); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("at noon for 02:00: %+v, %v; want denied", d, err)
	}
	ex := p.Explain(u, Input{Target: "t", Start: &night, Now: noon})
	if ex.Outcome != OutcomeDenied {
		t.Errorf("Explain at noon for 02:00: %s, want %s", ex.Outcome, OutcomeDenied)
	}
	// Checked again when the grant comes due: the real time decides.
	w, _ := ajar.NewWindow(noon, time.Hour)
	in := GrantInput{Policy: "r", Target: "t", Window: w, Now: noon}
	if _, err := p.CheckGrant(u, in); err != nil {
		t.Errorf("CheckGrant at noon: %v", err)
	}
	in.Window, _ = ajar.NewWindow(night, time.Hour)
	in.Now = night
	if _, err := p.CheckGrant(u, in); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Errorf("CheckGrant at 02:00: %v, want forbidden", err)
	}
	in.Policy = "gone"
	if _, err := p.CheckGrant(u, in); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Errorf("CheckGrant of a removed rule: %v, want conflict", err)
	}
}

func TestCanApprove(t *testing.T) {
	p := testPolicy(t)
	alice, bob, carol, dave := user(t, p, "alice@example.com"), user(t, p, "bob@example.com"),
		user(t, p, "carol@example.com"), user(t, p, "dave@example.com")
	tests := []struct {
		rule string
		step int
		u    ajar.User
		want bool
	}{
		{"engineers", 0, bob, true},                                         // by group
		{"engineers", 0, alice, false},                                      // requester group, not approver
		{"engineers", 1, bob, false},                                        // no such step
		{"engineers", -1, bob, false},                                       // no such step
		{"carol-web", 0, bob, true},                                         // by user id
		{"carol-web", 0, carol, false},                                      // not named
		{"contractors-db", 0, bob, true},                                    // first step: sre
		{"contractors-db", 1, bob, false},                                   // second step: carol only
		{"contractors-db", 1, carol, true},                                  // second step by user id
		{"contractors-db", 0, dave, false},                                  // requester
		{"oncall-jump", 0, carol, false},                                    // no steps at all
		{"engineers", 0, ajar.User{ID: "x", Groups: []string{"sre"}}, true}, // not a static user: groups still count
	}
	for _, tc := range tests {
		r, ok := p.Rule(tc.rule)
		if !ok {
			t.Fatalf("no rule %s", tc.rule)
		}
		if got := r.CanApprove(tc.step, tc.u); got != tc.want {
			t.Errorf("%s.CanApprove(%d, %s) = %v, want %v", tc.rule, tc.step, tc.u.ID, got, tc.want)
		}
	}
}

func TestIsAdmin(t *testing.T) {
	p := testPolicy(t)
	tests := []struct {
		u    ajar.User
		want bool
	}{
		{user(t, p, "carol@example.com"), true},                              // by user id
		{ajar.User{ID: "eve@example.com", Groups: []string{"admins"}}, true}, // by group
		{user(t, p, "alice@example.com"), false},
		{ajar.User{ID: "group:admins"}, false}, // an id is never a group
		{ajar.User{}, false},
	}
	for _, tc := range tests {
		if got := p.IsAdmin(tc.u); got != tc.want {
			t.Errorf("IsAdmin(%+v) = %v, want %v", tc.u, got, tc.want)
		}
	}
}

func TestTargetsFor(t *testing.T) {
	p := testPolicy(t)
	tests := []struct {
		user string
		want []string // target=rule
	}{
		{"alice@example.com", []string{"db=engineers", "web=engineers"}},
		{"carol@example.com", []string{"db=engineers", "jump=oncall-jump", "web=carol-web"}},
		{"dave@example.com", []string{"db=contractors-db"}},
		{"bob@example.com", nil},
	}
	for _, tc := range tests {
		var got []string
		for _, v := range p.TargetsFor(user(t, p, tc.user)) {
			got = append(got, v.Target.Name+"="+v.Rule.Name)
			if v.Target.Provider != "ssh-cert" || len(v.Target.Config) == 0 {
				t.Errorf("%s: target %+v", tc.user, v.Target)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("TargetsFor(%s) = %q, want %q", tc.user, got, tc.want)
		}
	}
}

func TestAccessors(t *testing.T) {
	p := testPolicy(t)
	if got := p.TargetNames(); !reflect.DeepEqual(got, []string{"db", "jump", "vault", "web"}) {
		t.Errorf("TargetNames = %q", got)
	}
	var ids []string
	for _, u := range p.Users() {
		ids = append(ids, u.ID)
	}
	if want := []string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("Users = %q", ids)
	}
	if _, ok := p.User("nobody@example.com"); ok {
		t.Error("User(nobody) found")
	}
	if _, ok := p.Target("nope"); ok {
		t.Error("Target(nope) found")
	}
	if _, ok := p.Rule("nope"); ok {
		t.Error("Rule(nope) found")
	}
	var names []string
	for _, r := range p.Rules() {
		names = append(names, r.Name)
	}
	if want := []string{"carol-web", "engineers", "engineers-db-long", "contractors-db", "oncall-jump"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Rules = %q", names)
	}

	// What the accessors return is the caller's: changing it changes nothing.
	u := user(t, p, "carol@example.com")
	u.Groups[0] = "sre"
	if user(t, p, "carol@example.com").Groups[0] != "engineers" {
		t.Error("User returned the policy's own groups slice")
	}
	tg, _ := p.Target("web")
	tg.Config[0] = 'X'
	if tg, _ := p.Target("web"); tg.Config[0] != '{' {
		t.Error("Target returned the policy's own config")
	}
}

// TestConcurrentEvaluate runs Evaluate from many goroutines, for the race detector.
func TestConcurrentEvaluate(t *testing.T) {
	p := testPolicy(t)
	alice := user(t, p, "alice@example.com")
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				d, err := p.Evaluate(alice, Input{Target: "web", Duration: time.Duration(i+5) * time.Second, Reason: "r", Now: time.Now()})
				if err != nil || d.AutoApprove != (i+5 <= 300) {
					t.Errorf("Evaluate(%ds): %+v, %v", i+5, d, err)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
