package broker

import (
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
)

// caseSelfPolicy names alice with capitals; she is both a requester and an
// approver of the web target.
const caseSelfPolicy = `
users:
  - {id: Alice@Example.com, groups: [engineers, sre]}
  - {id: bob@example.com, groups: [sre]}
targets:
  web: {provider: fake}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 1h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`

// TestSelfApprovalIgnoresCase checks that a user id differing only in case is
// the same person: alice approving or denying her own request under another
// spelling of her id is refused, including a request stored under the
// spelling of the policy file before ids were canonical. (That a token minted
// for ALICE@EXAMPLE.COM authenticates as alice@example.com is tested in
// package identity.)
func TestSelfApprovalIgnoresCase(t *testing.T) {
	e := newWorkflowEnv(t, caseSelfPolicy, events.NotifyConfig{})
	ctx := t.Context()
	alice := e.users["alice"]
	if alice.ID != "alice@example.com" {
		t.Fatalf("policy user id %q, want the canonical alice@example.com", alice.ID)
	}
	// As stored before canonical ids: the policy file's spelling.
	legacy := ajar.User{ID: "Alice@Example.com", Groups: alice.Groups}
	for _, requester := range []ajar.User{alice, legacy} {
		r, err := e.svc.CreateRequest(ctx, requester, ajar.CreateInput{Target: "web", Duration: "30m", Reason: "deploy"})
		if err != nil {
			t.Fatal(err)
		}
		for _, approver := range []ajar.User{alice, legacy, {ID: "ALICE@example.COM", Groups: alice.Groups}} {
			_, err = e.svc.Approve(ctx, approver, r.ID, "")
			wantCode(t, err, ajar.EFORBIDDEN)
			_, err = e.svc.Deny(ctx, approver, r.ID, "no")
			wantCode(t, err, ajar.EFORBIDDEN)
		}
		if got := e.get(t, r.ID); got.State != ajar.StatePending || len(got.Approvals) != 0 {
			t.Fatalf("request %s after self-approval attempts: %s with %d approvals", r.ID, got.State, len(got.Approvals))
		}
		// Her own request under any spelling: she may cancel it.
		if _, err := e.svc.Cancel(ctx, alice, r.ID); err != nil {
			t.Fatalf("alice cannot cancel her request stored as %s: %v", requester.ID, err)
		}
	}
}
