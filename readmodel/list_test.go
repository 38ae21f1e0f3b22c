package readmodel

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
)

// TestAccessSurvivesFlood: 1,200 pending requests from one requester do not
// push the flooder's own active grant out of her "My access"
// (TestInboxSurvivesFlood checks an approver's inbox).
func TestAccessSurvivesFlood(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	victim := e.create(t, "erin", "db", "")    // pending: bob must decide on it
	grant := e.create(t, "alice", "web", "5m") // auto-approved and active
	if grant.State != ajar.StateActive {
		t.Fatalf("alice's grant is %s", grant.State)
	}
	e.flood(t, "alice@example.com", 1200)

	a, err := e.rm.MyAccess(ctx, e.users["alice"])
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Active) != 1 || a.Active[0].ID != grant.ID {
		t.Fatalf("alice's active grants: %d, want her grant %s", len(a.Active), grant.ID)
	}
	if len(a.Waiting) != 1200 || len(a.History) != 0 {
		t.Fatalf("alice's waiting %d, history %d", len(a.Waiting), len(a.History))
	}
	if a, err = e.rm.MyAccess(ctx, e.users["erin"]); err != nil || len(a.Waiting) != 1 || a.Waiting[0].ID != victim.ID {
		t.Fatalf("erin's access: %+v, %v", a, err)
	}
}

// TestListRequestsPages: ListRequests pages through everything a user may see,
// each request once, newest first, with a cursor while there is more; what the
// user may not see is skipped without ending the list early.
func TestListRequestsPages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	victim := e.create(t, "erin", "db", "")
	grant := e.create(t, "alice", "web", "5m")
	e.flood(t, "alice@example.com", 1200)

	walk := func(user string, in ListInput) []string {
		t.Helper()
		var ids []string
		for pages := 0; ; pages++ {
			if pages > 2000 {
				t.Fatal("paging does not end")
			}
			page, err := e.rm.ListRequests(ctx, e.users[user], in)
			if err != nil {
				t.Fatal(err)
			}
			if in.Limit > 0 && len(page.Requests) > in.Limit {
				t.Fatalf("page of %d, limit %d", len(page.Requests), in.Limit)
			}
			for _, r := range page.Requests {
				ids = append(ids, r.ID)
			}
			if page.NextCursor == "" {
				return ids
			}
			in.Cursor = page.NextCursor
		}
	}
	for _, limit := range []int{0, 7, 1000} {
		// dave approves db requests only: the web grant is not his to see.
		ids := walk("dave", ListInput{Limit: limit})
		if len(ids) != 1201 || ids[len(ids)-1] != victim.ID || slices.Contains(ids, grant.ID) {
			t.Fatalf("limit %d: dave sees %d requests (oldest %s)", limit, len(ids), ids[len(ids)-1])
		}
		if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
			t.Fatalf("limit %d: a request was listed twice", limit)
		}
	}
	if ids := walk("alice", ListInput{Mine: true, State: ajar.StateActive}); !slices.Equal(ids, []string{grant.ID}) {
		t.Fatalf("alice's active: %v", ids)
	}
	// Erin sees her own request and, as an sre, everything else.
	if ids := walk("erin", ListInput{Limit: 500}); len(ids) != 1202 {
		t.Fatalf("erin sees %d", len(ids))
	}

	page, err := e.rm.ListRequests(ctx, e.users["bob"], ListInput{Limit: 1000})
	if err != nil || len(page.Requests) != 1000 || page.NextCursor == "" {
		t.Fatalf("first page of 1000: %d, cursor %q, %v", len(page.Requests), page.NextCursor, err)
	}
	for _, in := range []struct {
		in    ListInput
		field string
	}{
		{ListInput{Cursor: "garbage"}, "cursor"},
		{ListInput{Cursor: "r1.bm90LWEtbnVtYmVyLnJlcV94"}, "cursor"},
		{ListInput{Cursor: cursorPrefix}, "cursor"},
		{ListInput{Limit: MaxListLimit + 1}, "limit"},
		{ListInput{Limit: -1}, "limit"},
		{ListInput{State: "sleeping"}, "state"},
	} {
		_, err := e.rm.ListRequests(ctx, e.users["bob"], in.in)
		if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != in.field {
			t.Errorf("%+v: %v, want invalid %s", in.in, err, in.field)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "db", "")
	k, err := decodeCursor(encodeCursor(r.Key()))
	if err != nil || !k.CreatedAt.Equal(r.CreatedAt) || k.ID != r.ID {
		t.Fatalf("round trip: %+v, %v", k, err)
	}
}

// TestListReviewsPages: reviews page with a cursor, each once, the closed
// filter skipping open ones without ending the list early.
func TestListReviewsPages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	err := e.store.Update(ctx, func(tx ajar.Tx) error {
		for i := range 25 {
			at := e.clock.Now().Add(time.Duration(i/2) * time.Second) // pairs share a time
			id := fmt.Sprintf("req_review%02d", i)
			if err := tx.CreateReview(ctx, ajar.ReviewTask{RequestID: id, Kind: broker.ReviewKindBreakglass, Requester: "bob@example.com", Target: "web", OpenedAt: at}); err != nil {
				return err
			}
			if i%5 == 0 {
				if err := tx.CloseReview(ctx, id, "root@example.com", "ok", at); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		state string
		want  int
	}{{"all", 25}, {"open", 20}, {"closed", 5}} {
		for _, limit := range []int{1, 3, 0} {
			in := ReviewsInput{State: c.state, Limit: limit}
			seen := map[string]bool{}
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatal("paging does not end")
				}
				page, err := e.rm.ListReviews(ctx, e.users["root"], in)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page.Reviews {
					if seen[r.RequestID] {
						t.Fatalf("%s by %d: %s twice", c.state, limit, r.RequestID)
					}
					seen[r.RequestID] = true
				}
				if page.NextCursor == "" {
					break
				}
				in.Cursor = page.NextCursor
			}
			if len(seen) != c.want {
				t.Errorf("%s by %d: %d reviews, want %d", c.state, limit, len(seen), c.want)
			}
		}
	}
	if _, err := e.rm.ListReviews(ctx, e.users["bob"], ReviewsInput{}); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Errorf("bob lists reviews: %v", err)
	}
	for _, in := range []ReviewsInput{{State: "sleeping"}, {Cursor: "garbage"}, {Cursor: encodeCursor(ajar.RequestKey{CreatedAt: e.clock.Now(), ID: "x"})}, {Limit: -1}} {
		_, err := e.rm.ListReviews(ctx, e.users["root"], in)
		if ajar.ErrorCode(err) != ajar.EINVALID {
			t.Errorf("%+v: %v", in, err)
		}
	}
}
