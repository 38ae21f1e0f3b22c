package readmodel

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
)

// The web's review of a decision says what broker's Approve and Deny do
// (see TestReviewMatchesApproveAndDeny); these cover an extension waiting for
// approval, a passed approval deadline and a flooded inbox.

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

// extendEnv makes alice's db request, approved by bob and dave, and has her
// ask to extend it by 30m.
func extendEnv(t *testing.T) (*env, *ajar.Request) {
	t.Helper()
	e := newWorkflowEnv(t, authzPolicy)
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
	if verb == broker.VerbApprove {
		_, err = e.svc.Approve(t.Context(), e.users[user], id, "ok")
	} else {
		_, err = e.svc.Deny(t.Context(), e.users[user], id, "no")
	}
	return ajar.ErrorCode(err)
}

// TestReviewExtension: the web's review of an extension waiting for approval
// says what Approve and Deny do (broker's TestDecideExtension): nobody decides
// their own extension, escalate_to decides neither way before the step
// escalates, a later step's approver waits for it.
func TestReviewExtension(t *testing.T) {
	for _, verb := range []string{broker.VerbApprove, broker.VerbDeny} {
		t.Run(verb, func(t *testing.T) {
			e, r := extendEnv(t)
			for _, user := range []string{"alice", "mia", "dave", "root"} {
				rv, err := e.rm.Review(t.Context(), e.users[user], r.ID)
				if err == nil && (rv.CanApprove || rv.CanDeny || rv.Extension == nil || rv.Blocked == "") {
					t.Errorf("%s's review: %+v", user, rv)
				}
				if code := e.decide(t, user, verb, r.ID); code != ajar.EFORBIDDEN {
					t.Errorf("%s %s: %q, want forbidden", user, verb, code)
				}
			}
			rv, err := e.rm.Review(t.Context(), e.users["alice"], r.ID)
			if err != nil || !strings.Contains(rv.Blocked, "You asked for this extension") {
				t.Errorf("alice's review: %+v, %v", rv, err)
			}
			rv, err = e.rm.Review(t.Context(), e.users["bob"], r.ID)
			if err != nil || !rv.CanApprove || !rv.CanDeny || rv.Extension == nil || rv.Extension.Seq != 1 || rv.Step != 0 {
				t.Fatalf("bob's review: %+v, %v", rv, err)
			}
			e.clock.Add(10 * time.Minute) // step 1 of the extension escalates
			if rv, err := e.rm.Review(t.Context(), e.users["mia"], r.ID); err != nil || !rv.CanApprove || !rv.CanDeny {
				t.Fatalf("mia's review once escalated: %+v, %v", rv, err)
			}
			if code := e.decide(t, "mia", verb, r.ID); code != "" {
				t.Fatalf("mia %s once escalated: %s", verb, code)
			}
		})
	}
}

// TestReviewAfterDeadline: once the approval deadline passed, the review says
// nobody can decide, as Approve and Deny refuse (broker's
// TestDecideAfterDeadline).
func TestReviewAfterDeadline(t *testing.T) {
	e := newWorkflowEnv(t, authzPolicy)
	r := e.create(t, "alice", "db", "30m")
	e.clock.Add(time.Hour)
	if rv, err := e.rm.Review(t.Context(), e.users["bob"], r.ID); err != nil || rv.CanApprove || rv.CanDeny || !strings.Contains(rv.Blocked, "deadline") {
		t.Errorf("review after the deadline: %+v, %v", rv, err)
	}
	for _, verb := range []string{broker.VerbApprove, broker.VerbDeny} {
		if code := e.decide(t, "bob", verb, r.ID); code != ajar.ECONFLICT {
			t.Errorf("bob %s after the deadline: %q", verb, code)
		}
	}
}

// TestInboxSurvivesFlood: 1,200 pending requests from one requester do not
// push another requester's pending request out of an approver's inbox.
func TestInboxSurvivesFlood(t *testing.T) {
	e := newEnv(t)
	victim := e.create(t, "erin", "db", "")    // pending: bob must decide on it
	grant := e.create(t, "alice", "web", "5m") // auto-approved and active
	if grant.State != ajar.StateActive {
		t.Fatalf("alice's grant is %s", grant.State)
	}
	e.flood(t, "alice@example.com", 1200)

	inbox, err := e.rm.Inbox(t.Context(), e.users["bob"])
	if err != nil {
		t.Fatal(err)
	}
	if len(inbox) != 1201 || !slices.ContainsFunc(inbox, func(rv Review) bool { return rv.Request.ID == victim.ID }) {
		t.Fatalf("bob's inbox has %d requests; erin's %s among them: %v", len(inbox), victim.ID,
			slices.ContainsFunc(inbox, func(rv Review) bool { return rv.Request.ID == victim.ID }))
	}
	if inbox[0].Request.ID != victim.ID {
		t.Errorf("longest waiting first: inbox starts with %s", inbox[0].Request.ID)
	}
}

// flood stores n pending db requests by requester, created after everything
// else, as if no limit had stopped them (an older server, or many requesters).
func (e *env) flood(t *testing.T, requester string, n int) {
	t.Helper()
	e.clock.Add(time.Second)
	now := e.clock.Now()
	err := e.store.Update(t.Context(), func(tx ajar.Tx) error {
		for i := range n {
			at := now.Add(time.Duration(i) * time.Millisecond)
			r := &ajar.Request{
				ID: fmt.Sprintf("req_flood%05d", i), Target: "db", Requester: requester, Reason: "flood",
				Duration: 30 * time.Minute, Policy: "db", State: ajar.StatePending, Approvals: []ajar.Approval{},
				CreatedAt: at, UpdatedAt: at, ApprovalDeadline: at.Add(10 * time.Minute),
			}
			if err := tx.CreateRequest(t.Context(), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
