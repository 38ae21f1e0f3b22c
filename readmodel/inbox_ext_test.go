package readmodel

import (
	"strings"
	"testing"
)

// TestInboxShowsPendingExtension: an active request whose extension waits for
// approval is in its approvers' inbox (and its requester's), with the
// extension, and leaves it once the extension is decided.
func TestInboxShowsPendingExtension(t *testing.T) {
	e, r := extendEnv(t)
	find := func(user string) *Review {
		items, err := e.rm.Inbox(t.Context(), e.users[user])
		if err != nil {
			t.Fatal(err)
		}
		for i := range items {
			if items[i].Request.ID == r.ID {
				return &items[i]
			}
		}
		return nil
	}
	rv := find("bob")
	if rv == nil || rv.Extension == nil || rv.Extension.Seq != 1 || !rv.CanApprove || !rv.CanDeny {
		t.Fatalf("bob's inbox item: %+v", rv)
	}
	// Who can approve it, by name, as explain lists them.
	if got := strings.Join(rv.Eligible, ","); got != "bob@example.com,carol@example.com,erin@example.com" {
		t.Errorf("Eligible = %s", got)
	}
	if rv := find("alice"); rv == nil || !rv.Own || rv.CanApprove {
		t.Fatalf("alice's inbox item: %+v", rv)
	}
	if rv := find("gus"); rv != nil {
		t.Fatalf("gus, no approver, sees %+v", rv)
	}
	if code := e.decide(t, "bob", "deny", r.ID); code != "" {
		t.Fatalf("bob denies the extension: %s", code)
	}
	if rv := find("bob"); rv != nil {
		t.Fatalf("a decided extension stays in the inbox: %+v", rv)
	}
}

// TestReviewEligibleLeavesOutWhoDecided: the people who can still approve a
// step leave out the requester and those who already approved it.
func TestReviewEligibleLeavesOutWhoDecided(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "db", "30m") // two of sre, then one of leads
	rv, err := e.rm.Review(t.Context(), e.users["bob"], r.ID)
	if err != nil || strings.Join(rv.Eligible, ",") != "bob@example.com,carol@example.com,erin@example.com" {
		t.Fatalf("before any approval: %v, %v", rv.Eligible, err)
	}
	if _, err := e.svc.Approve(t.Context(), e.users["bob"], r.ID, ""); err != nil {
		t.Fatal(err)
	}
	rv, err = e.rm.Review(t.Context(), e.users["carol"], r.ID)
	if err != nil || strings.Join(rv.Eligible, ",") != "carol@example.com,erin@example.com" {
		t.Fatalf("after bob: %v, %v", rv.Eligible, err)
	}
}
