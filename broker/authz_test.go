package broker

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/policy"
)

// authzPolicy has one rule with two steps, the first escalating to managers
// after 10m, extensions that need approval, and break-glass for oncall (who
// are no requesters).
const authzPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: carol@example.com, groups: [sre]}
  - {id: dave@example.com, groups: [leads]}
  - {id: erin@example.com, groups: [engineers, sre]}
  - {id: mia@example.com, groups: [managers]}
  - {id: otto@example.com, groups: [oncall]}
  - {id: gus@example.com, groups: [contractors]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  db: {provider: fake}
  web: {provider: fake}
policies:
  - name: db
    targets: [db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      timeout: 1h
      steps:
        - {approvers: [group:sre], count: 1, escalate_after: 10m, escalate_to: [group:managers]}
        - {approvers: [group:leads], count: 1}
    extend: {max_extensions: 3, max_total: 4h}
    breakglass: {allowed: [group:oncall]}
`

// authzPolicyLater is authzPolicy after an edit: alice is no longer a
// requester of db and otto may no longer use break-glass on it.
var authzPolicyLater = strings.NewReplacer(
	"requesters: [group:engineers]", "requesters: [group:contractors]",
	"allowed: [group:oncall]", "allowed: [group:secops]",
).Replace(authzPolicy)

// TestMayDecide covers every branch of mayDecide, for approving and denying,
// a pending request and the pending extension of an active one: the rules
// are the same for all four. Times are offsets from when what is decided
// began waiting (the request was made, the extension asked for); it waits at
// most an hour (approval.timeout for a request; for an extension, the access
// expires an hour after it was asked for).
func TestMayDecide(t *testing.T) {
	pol := mustParse(t, authzPolicy)
	s := &Service{pol: pol}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	approve := func(who string, step int, after time.Duration) ajar.Approval {
		return ajar.Approval{Approver: who + "@example.com", Step: step, Decision: ajar.DecisionApprove, At: t0.Add(after)}
	}
	type setup struct {
		requester  string // default alice
		policy     string // default db
		target     string // default db
		breakglass bool
		decided    bool // the request is approved, the extension applied
		approvals  []ajar.Approval
	}
	tests := []struct {
		name    string
		only    string // "request" or "extension"; "" for both
		setup   setup
		user    string
		at      time.Duration
		refusal string // "" when allowed
		code    string
		step    int // when allowed
	}{
		{name: "approver of the first step", user: "bob", at: time.Minute, step: 0},
		{name: "the requester", user: "alice", at: time.Minute, refusal: RefusedSelf, code: ajar.EFORBIDDEN},
		{name: "the requester who approves the step", setup: setup{requester: "erin"}, user: "erin", at: time.Minute, refusal: RefusedSelf, code: ajar.EFORBIDDEN},
		{name: "an admin who approves nothing", user: "root", at: time.Minute, refusal: RefusedNotApprover, code: ajar.EFORBIDDEN},
		{name: "approver of a later step, early", user: "dave", at: time.Minute, refusal: RefusedNotApprover, code: ajar.EFORBIDDEN},
		{name: "approver of a later step once reached", setup: setup{approvals: []ajar.Approval{approve("bob", 0, time.Minute)}}, user: "dave", at: 2 * time.Minute, step: 1},
		{name: "approver of an earlier step, too late", setup: setup{approvals: []ajar.Approval{approve("bob", 0, time.Minute)}}, user: "carol", at: 2 * time.Minute, refusal: RefusedNotApprover, code: ajar.EFORBIDDEN},
		{name: "already decided", setup: setup{approvals: []ajar.Approval{approve("bob", 0, time.Minute)}}, user: "bob", at: 2 * time.Minute, refusal: RefusedAlready, code: ajar.ECONFLICT},
		{name: "escalate_to before the escalation", user: "mia", at: 10*time.Minute - time.Second, refusal: RefusedNotApprover, code: ajar.EFORBIDDEN},
		{name: "escalate_to once escalated", user: "mia", at: 10 * time.Minute, step: 0},
		{name: "escalate_to of another step", setup: setup{approvals: []ajar.Approval{approve("bob", 0, time.Minute)}}, user: "mia", at: 30 * time.Minute, refusal: RefusedNotApprover, code: ajar.EFORBIDDEN},
		{name: "just before the deadline", user: "bob", at: time.Hour - time.Second, step: 0},
		{name: "at the deadline", user: "bob", at: time.Hour, refusal: RefusedDeadline, code: ajar.ECONFLICT},
		{name: "escalate_to after the deadline", user: "mia", at: 2 * time.Hour, refusal: RefusedDeadline, code: ajar.ECONFLICT},
		{name: "decided already", setup: setup{decided: true}, user: "bob", at: time.Minute, refusal: RefusedNotPending, code: ajar.ECONFLICT},
		{name: "policy gone", setup: setup{policy: "gone"}, user: "bob", at: time.Minute, refusal: RefusedPolicyMissing, code: ajar.EFORBIDDEN},
		{name: "target no longer in the rule", setup: setup{target: "web"}, user: "bob", at: time.Minute, refusal: RefusedRequester, code: ajar.EFORBIDDEN},
		{name: "requester no longer a requester", setup: setup{requester: "gus"}, user: "bob", at: time.Minute, refusal: RefusedRequester, code: ajar.EFORBIDDEN},
		{name: "requester no longer in the file", setup: setup{requester: "left"}, user: "bob", at: time.Minute, refusal: RefusedRequester, code: ajar.EFORBIDDEN},
		{name: "break-glass requester", only: "extension", setup: setup{requester: "otto", breakglass: true}, user: "bob", at: time.Minute, step: 0},
		{name: "break-glass requester no longer allowed", only: "extension", setup: setup{breakglass: true}, user: "bob", at: time.Minute, refusal: RefusedRequester, code: ajar.EFORBIDDEN},
		{name: "break-glass user as a requester", setup: setup{requester: "otto"}, user: "bob", at: time.Minute, refusal: RefusedRequester, code: ajar.EFORBIDDEN},
	}
	for _, tt := range tests {
		for _, what := range []string{"request", "extension"} {
			if tt.only != "" && tt.only != what {
				continue
			}
			for _, verb := range []string{VerbApprove, VerbDeny} {
				t.Run(fmt.Sprintf("%s/%s/%s", tt.name, what, verb), func(t *testing.T) {
					su := tt.setup
					r := &ajar.Request{
						ID: "req_1", Requester: cmpOr(su.requester, "alice") + "@example.com", Target: cmpOr(su.target, "db"),
						Policy: cmpOr(su.policy, "db"), Duration: 30 * time.Minute, Approvals: []ajar.Approval{},
					}
					d := decision{verb: verb, r: r, breakglass: su.breakglass}
					waitStart := t0
					if what == "request" {
						r.State, r.CreatedAt, r.ApprovalDeadline = ajar.StatePending, t0, t0.Add(time.Hour)
						r.Approvals = su.approvals
						if su.decided {
							r.State = ajar.StateApproved
						}
					} else {
						// The request was made and approved by bob and dave long
						// before: neither its approvals nor its age count for
						// the extension.
						r.State, r.CreatedAt, r.ApprovalDeadline = ajar.StateActive, t0.Add(-3*time.Hour), t0.Add(-2*time.Hour)
						r.Approvals = []ajar.Approval{approve("bob", 0, -170*time.Minute), approve("dave", 1, -169*time.Minute)}
						r.ExpiresAt = ptr(t0.Add(time.Hour))
						d.ext = &ajar.Extension{RequestID: r.ID, Seq: 1, By: time.Hour, RequestedBy: r.Requester, RequestedAt: waitStart,
							State: ajar.ExtensionPending, Approvals: slices.Clone(su.approvals)}
						if su.decided {
							d.ext.State = ajar.ExtensionApplied
						}
					}
					u, ok := pol.User(tt.user + "@example.com")
					if !ok {
						t.Fatalf("no user %s", tt.user)
					}
					rule, step, f := s.mayDecide(u, d, t0.Add(tt.at))
					if tt.refusal == "" {
						if f != nil {
							t.Fatalf("refused (%s): %v", f.reason, f.err)
						}
						if rule == nil || rule.Name != r.Policy || step != tt.step {
							t.Fatalf("rule %v, step %d; want %s, %d", rule, step, r.Policy, tt.step)
						}
						return
					}
					if f == nil {
						t.Fatalf("allowed at step %d; want refused: %s", step, tt.refusal)
					}
					if f.reason != tt.refusal || ajar.ErrorCode(f.err) != tt.code {
						t.Fatalf("refused %s (%s: %v); want %s (%s)", f.reason, ajar.ErrorCode(f.err), f.err, tt.refusal, tt.code)
					}
				})
			}
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// extendEnv makes alice's db request, approved by bob and dave, and has her
// ask to extend it by 30m.
func extendEnv(t *testing.T, sink *recordSink) (*env, *ajar.Request) {
	t.Helper()
	e := newWorkflowEnv(t, authzPolicy, events.NotifyConfig{Sinks: []notify.Sink{sink}})
	r := e.create(t, "alice", "db", "30m")
	for _, a := range []string{"bob", "dave"} {
		if _, err := e.svc.Approve(t.Context(), e.users[a], r.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := e.svc.Extend(t.Context(), e.users["alice"], r.ID, ajar.ExtendInput{By: "30m", Reason: "more"}); err != nil || out.Extension.State != ajar.ExtensionPending {
		t.Fatalf("extend: %+v, %v", out, err)
	}
	return e, e.get(t, r.ID)
}

// decide runs verb for user on request id and returns the error code.
func (e *env) decide(t *testing.T, user, verb, id string) string {
	t.Helper()
	var err error
	if verb == VerbApprove {
		_, err = e.svc.Approve(t.Context(), e.users[user], id, "ok")
	} else {
		_, err = e.svc.Deny(t.Context(), e.users[user], id, "no")
	}
	return ajar.ErrorCode(err)
}

func (e *env) extensions(t *testing.T, id string) []ajar.Extension {
	t.Helper()
	var exts []ajar.Extension
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		exts, err = tx.ListExtensions(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return exts
}

// withPolicy returns a service over e's store and clock enforcing src: the
// server restarted with an edited policy file.
func (e *env) withPolicy(t *testing.T, src string) *Service {
	t.Helper()
	svc, err := New(Config{Store: e.store, Policy: mustParse(t, src), Providers: fakeProviders{e.prov}, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestDecideExtension: approving and denying an extension go through the same
// rules as a request, through Approve and Deny (readmodel's
// TestReviewExtension checks that the web's review says what they do).
// Nobody decides their own extension (audited), escalate_to decides neither
// way before the step escalates, a later step's approver waits for it.
func TestDecideExtension(t *testing.T) {
	for _, verb := range []string{VerbApprove, VerbDeny} {
		t.Run(verb, func(t *testing.T) {
			e, r := extendEnv(t, &recordSink{name: "chat"})
			for _, c := range []struct{ user, code string }{
				{"alice", ajar.EFORBIDDEN}, // her own
				{"mia", ajar.EFORBIDDEN},   // escalate_to, not escalated yet
				{"dave", ajar.EFORBIDDEN},  // step 2
				{"root", ajar.EFORBIDDEN},  // an admin, no approver
			} {
				if code := e.decide(t, c.user, verb, r.ID); code != c.code {
					t.Errorf("%s %s: %q, want %q", c.user, verb, code, c.code)
				}
			}
			if ext := e.extensions(t, r.ID)[0]; ext.State != ajar.ExtensionPending || len(ext.Approvals) != 0 {
				t.Fatalf("after refusals: %+v", ext)
			}
			if n := count(e.actions(t, r.ID), "approval.refused"); n != 4 {
				t.Errorf("%d approval.refused events, want 4", n)
			}
			e.clock.Add(10 * time.Minute) // step 1 of the extension escalates
			if code := e.decide(t, "mia", verb, r.ID); code != "" {
				t.Fatalf("mia %s once escalated: %s", verb, code)
			}
			want := ajar.ExtensionDenied
			if verb == VerbApprove {
				if ext := e.extensions(t, r.ID)[0]; ext.State != ajar.ExtensionPending {
					t.Fatalf("after step 1: %s, want pending (step 2 waits for leads)", ext.State)
				}
				if code := e.decide(t, "dave", verb, r.ID); code != "" {
					t.Fatalf("dave: %s", code)
				}
				want = ajar.ExtensionApplied
			}
			if ext := e.extensions(t, r.ID)[0]; ext.State != want {
				t.Errorf("extension %s, want %s", ext.State, want)
			}
			if n := count(e.actions(t, r.ID), "breakglass.extended"); n != 0 {
				t.Errorf("%d breakglass.extended for access that was approved", n)
			}
		})
	}
}

// TestDecideAfterDeadline: once the approval deadline passed, nobody approves
// or denies, even before the scheduler gets to the request; then it times out.
// (readmodel's TestReviewAfterDeadline checks the web's review says so.)
func TestDecideAfterDeadline(t *testing.T) {
	e := newWorkflowEnv(t, authzPolicy, events.NotifyConfig{})
	r := e.create(t, "alice", "db", "30m")
	e.clock.Add(time.Hour)
	for _, u := range []string{"bob", "carol", "mia"} {
		for _, verb := range []string{VerbApprove, VerbDeny} {
			if code := e.decide(t, u, verb, r.ID); code != ajar.ECONFLICT {
				t.Errorf("%s %s after the deadline: %q", u, verb, code)
			}
		}
	}
	if got := e.get(t, r.ID); got.State != ajar.StatePending || len(got.Approvals) != 0 {
		t.Fatalf("after refusals: %s %+v", got.State, got.Approvals)
	}
	e.advance(t, 0)
	if st := e.get(t, r.ID).State; st != ajar.StateTimedOut {
		t.Errorf("then %s, want timed_out", st)
	}
}

// TestExtendRechecksRequester: a requester the policy no longer lets have the
// target can neither extend (audited) nor have a waiting extension approved.
func TestExtendRechecksRequester(t *testing.T) {
	e, r := extendEnv(t, &recordSink{name: "chat"})
	later := e.withPolicy(t, authzPolicyLater)
	_, err := later.Approve(t.Context(), e.users["bob"], r.ID, "")
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = later.Deny(t.Context(), e.users["bob"], r.ID, "no")
	wantCode(t, err, ajar.EFORBIDDEN)
	if _, err := e.svc.Deny(t.Context(), e.users["bob"], r.ID, "no"); err != nil {
		t.Fatal(err)
	}
	_, err = later.Extend(t.Context(), e.users["alice"], r.ID, ajar.ExtendInput{By: "30m"})
	wantCode(t, err, ajar.EFORBIDDEN)
	if exts := e.extensions(t, r.ID); len(exts) != 1 {
		t.Errorf("extensions: %+v", exts)
	}
	if n := count(e.actions(t, r.ID), "extension.refused"); n != 1 {
		t.Errorf("%d extension.refused events, want 1", n)
	}
	if _, err := e.svc.Extend(t.Context(), e.users["alice"], r.ID, ajar.ExtendInput{By: "30m"}); err != nil {
		t.Errorf("under the old policy: %v", err)
	}
}

// TestBreakglassExtension: extending break-glass access is break-glass again:
// it alerts (breakglass.extended, notified like breakglass.used), and needs
// the user to still be allowed break-glass, when asked and when approved.
func TestBreakglassExtension(t *testing.T) {
	sink := &recordSink{name: "chat", events: []string{policy.EventBreakglassUsed, policy.EventBreakglassExtended}}
	e := newWorkflowEnv(t, authzPolicy, events.NotifyConfig{Sinks: []notify.Sink{sink}})
	ctx := t.Context()
	r, err := e.svc.Breakglass(ctx, e.users["otto"], ajar.CreateInput{Target: "db", Duration: "30m", Reason: "INC-7"})
	if err != nil || r.State != ajar.StateActive {
		t.Fatalf("break-glass: %+v, %v", r, err)
	}
	later := e.withPolicy(t, authzPolicyLater)
	_, err = later.Extend(ctx, e.users["otto"], r.ID, ajar.ExtendInput{By: "30m", Reason: "still down"})
	wantCode(t, err, ajar.EFORBIDDEN)
	out, err := e.svc.Extend(ctx, e.users["otto"], r.ID, ajar.ExtendInput{By: "30m", Reason: "still down"})
	if err != nil || out.Extension.State != ajar.ExtensionPending {
		t.Fatalf("extend: %+v, %v", out, err)
	}
	e.deliver(t)
	got := sink.received()
	if !slices.Equal(types(got), []string{"breakglass.used " + r.ID, "breakglass.extended " + r.ID}) ||
		!strings.Contains(got[1].Summary, "BREAK-GLASS") || got[1].Actor != "otto@example.com" {
		t.Fatalf("notifications: %+v", got)
	}
	_, err = later.Approve(ctx, e.users["bob"], r.ID, "")
	wantCode(t, err, ajar.EFORBIDDEN) // otto may no longer use break-glass
	for _, u := range []string{"bob", "dave"} {
		if _, err := e.svc.Approve(ctx, e.users[u], r.ID, ""); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
	}
	if ext := e.extensions(t, r.ID)[0]; ext.State != ajar.ExtensionApplied {
		t.Errorf("extension %s", ext.State)
	}
	// Denying follows the same rules: otto is no requester, but break-glass
	// access is his to extend, so an approver decides.
	if _, err := e.svc.Extend(ctx, e.users["otto"], r.ID, ajar.ExtendInput{By: "30m", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	_, err = later.Deny(ctx, e.users["carol"], r.ID, "no")
	wantCode(t, err, ajar.EFORBIDDEN)
	if _, err := e.svc.Deny(ctx, e.users["carol"], r.ID, "enough"); err != nil {
		t.Fatal(err)
	}
	if n := count(e.actions(t, r.ID), "breakglass.extended"); n != 2 {
		t.Errorf("%d breakglass.extended events, want 2", n)
	}
}
