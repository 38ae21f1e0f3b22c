package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// mfaPolicy is authzPolicy whose second step and break-glass require MFA.
var mfaPolicy = strings.NewReplacer(
	"- {approvers: [group:leads], count: 1}", "- {approvers: [group:leads], count: 1, require_mfa: true}",
	"breakglass: {allowed: [group:oncall]}", "breakglass: {allowed: [group:oncall], require_mfa: true}",
	"admins: [group:secops]", "admins: [group:secops]\nserver: {public_url: https://ajar.example.com}",
).Replace(authzPolicy)

func TestMFARequiredStep(t *testing.T) {
	pol := mustParse(t, mfaPolicy)
	s := &Service{pol: pol}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	now := t0.Add(time.Minute)
	r := &ajar.Request{
		ID: "R1", Target: "db", Requester: "alice@example.com", Policy: "db", State: ajar.StatePending,
		CreatedAt: t0, ApprovalDeadline: t0.Add(time.Hour),
	}
	dave := ajar.User{ID: "dave@example.com", Groups: []string{"leads"}}
	bob := ajar.User{ID: "bob@example.com", Groups: []string{"sre"}}

	// Step 1 has no require_mfa: bob approves without a second factor.
	if _, _, f := s.mayDecide(bob, decision{verb: VerbApprove, r: r}, now); f != nil {
		t.Fatalf("step 1 without MFA: %v", f)
	}
	r.Approvals = []ajar.Approval{{Approver: bob.ID, Step: 0, Decision: ajar.DecisionApprove, At: now}}
	cases := []struct {
		name  string
		mfaAt time.Time
		verb  string
		ok    bool
	}{
		{"no second factor", time.Time{}, VerbApprove, false},
		{"second factor too old", now.Add(-MFAFresh - time.Second), VerbApprove, false},
		{"second factor from the future", now.Add(2 * time.Minute), VerbApprove, false},
		{"fresh second factor", now.Add(-MFAFresh + time.Second), VerbApprove, true},
		{"fresh second factor in a CLI session", now.Add(-time.Second), VerbApprove, false},
		{"deny needs none", time.Time{}, VerbDeny, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := dave
			u.MFAAt, u.SessionKind = c.mfaAt, ajar.SessionWeb
			if strings.Contains(c.name, "CLI") {
				u.SessionKind = ajar.SessionCLI
			}
			_, step, f := s.mayDecide(u, decision{verb: c.verb, r: r}, now)
			if c.ok {
				if f != nil {
					t.Fatalf("refused: %v", f)
				}
				if step != 1 {
					t.Fatalf("step = %d", step)
				}
				return
			}
			if f == nil || f.reason != RefusedMFA || ajar.ErrorCode(f.err) != ajar.EFORBIDDEN {
				t.Fatalf("refusal = %v, want %s (EFORBIDDEN)", f, RefusedMFA)
			}
			if !strings.Contains(f.Error(), "https://ajar.example.com/requests/R1") {
				t.Fatalf("refusal does not name the page: %v", f)
			}
		})
	}
}

func TestMFABreakglass(t *testing.T) {
	pol := mustParse(t, mfaPolicy)
	s := &Service{pol: pol}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	rule, _ := pol.Rule("db")
	otto := ajar.User{ID: "otto@example.com", Groups: []string{"oncall"}}
	if err := s.checkBreakglassMFA(otto, rule, now); ajar.ErrorCode(err) != ajar.EFORBIDDEN || !strings.Contains(err.Error(), "ajar login") {
		t.Fatalf("break-glass without MFA: %v", err)
	}
	otto.MFAAt = now.Add(-time.Minute)
	if err := s.checkBreakglassMFA(otto, rule, now); err != nil {
		t.Fatalf("break-glass with MFA: %v", err)
	}
	plain, _ := mustParse(t, authzPolicy).Rule("db")
	otto.MFAAt = time.Time{}
	if err := s.checkBreakglassMFA(otto, plain, now); err != nil {
		t.Fatalf("break-glass without require_mfa: %v", err)
	}
}
