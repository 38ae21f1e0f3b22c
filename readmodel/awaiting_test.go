package readmodel

import (
	"testing"
)

// TestAwaiting: the count on the pages' "Inbox" is the inbox's entries the
// user may decide now, less their own, for every user, as requests and
// extensions come and go.
func TestAwaiting(t *testing.T) {
	e, r := extendEnv(t) // alice's db request, active, its extension waiting
	check := func(when string, want map[string]int) {
		t.Helper()
		for name, u := range e.users {
			items, err := e.rm.Inbox(t.Context(), u)
			if err != nil {
				t.Fatal(err)
			}
			inbox := 0
			for _, rv := range items {
				if !rv.Own && (rv.CanApprove || rv.CanDeny) {
					inbox++
				}
			}
			got, err := e.rm.Awaiting(t.Context(), u)
			if err != nil {
				t.Fatal(err)
			}
			if got != inbox {
				t.Errorf("%s: Awaiting(%s) = %d, but %d in the inbox", when, name, got, inbox)
			}
			if w, ok := want[name]; ok && got != w {
				t.Errorf("%s: Awaiting(%s) = %d, want %d", when, name, got, w)
			}
		}
	}
	check("extension waiting", map[string]int{"bob": 1, "alice": 0})
	e.create(t, "alice", "db", "30m")
	check("and a request", map[string]int{"bob": 2, "alice": 0})
	if code := e.decide(t, "bob", "deny", r.ID); code != "" {
		t.Fatalf("bob denies the extension: %s", code)
	}
	check("extension denied", map[string]int{"bob": 1, "alice": 0})
}
