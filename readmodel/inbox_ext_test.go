package readmodel

import (
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
