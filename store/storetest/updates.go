package storetest

import (
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// The scheduler writes the ends of many revocations together with
// UpdateRequests: these checks pin its compare-and-swap, all or nothing.

// testUpdateRequests checks that UpdateRequests writes every field of every
// request, bumps each Version, and leaves the audit events appended before it
// in the same function their requester and target.
func testUpdateRequests(t *testing.T, h *harness) {
	ctx := t.Context()
	h.create(t, fullRequest("ur-a", t0), simpleRequest("ur-b", "bob", "db", ajar.StateActive, t0),
		simpleRequest("ur-c", "carol", "web", ajar.StatePending, t0))
	a, b, c := h.get(t, "ur-a"), h.get(t, "ur-b"), h.get(t, "ur-c")
	a.State, a.EndReason, a.NextAt, a.EndedAt = ajar.StateExpired, ajar.EndExpired, nil, ptrTime(t0.Add(time.Hour))
	a.Params, a.Approvals, a.LastError = map[string]string{"k": "v"}, nil, ""
	b.State, b.Attempts, b.NextAt = ajar.StateRevoking, 3, ptrTime(t0.Add(time.Minute))
	c.Reason, c.Ticket = "changed", "T-1"
	h.update(t, func(tx ajar.Tx) error {
		if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: t0, Actor: "system", Action: "request.expired", Subject: "ur-b"}); err != nil {
			return err
		}
		if err := tx.UpdateRequests(ctx, nil); err != nil {
			return err
		}
		return tx.UpdateRequests(ctx, []*ajar.Request{b, a, c})
	})
	for _, r := range []*ajar.Request{a, b, c} {
		if r.Version != 2 {
			t.Fatalf("%s: Version after UpdateRequests = %d, want 2", r.ID, r.Version)
		}
		wantSameRequest(t, r, h.get(t, r.ID))
	}
	var evs []ajar.AuditEvent
	h.view(t, func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(ctx, ajar.AuditFilter{User: "bob", Target: "db"})
		return err
	})
	if len(evs) != 1 || evs[0].Subject != "ur-b" {
		t.Fatalf("events of bob on db = %+v, want the one about ur-b", evs)
	}
}

// testUpdateRequestsAllOrNothing checks that one stale or missing request
// fails UpdateRequests with ECONFLICT or ENOTFOUND, and that none of the
// others is written then; the transaction stays usable.
func testUpdateRequestsAllOrNothing(t *testing.T, h *harness) {
	ctx := t.Context()
	h.create(t, simpleRequest("un-a", "alice", "web", ajar.StatePending, t0),
		simpleRequest("un-b", "bob", "web", ajar.StatePending, t0),
		simpleRequest("un-c", "carol", "web", ajar.StatePending, t0))
	stale := h.get(t, "un-b")
	bumped := h.get(t, "un-b")
	bumped.Attempts = 1
	h.update(t, func(tx ajar.Tx) error { return tx.UpdateRequest(ctx, bumped) })

	for _, tc := range []struct {
		name string
		odd  *ajar.Request
		code string
	}{
		{"stale", stale, ajar.ECONFLICT},
		{"missing", func() *ajar.Request {
			r := simpleRequest("un-missing", "x", "web", ajar.StatePending, t0)
			r.Version = 1
			return r
		}(), ajar.ENOTFOUND},
	} {
		a, c := h.get(t, "un-a"), h.get(t, "un-c")
		a.State, c.State = ajar.StateDenied, ajar.StateDenied
		odd := *tc.odd
		odd.State = ajar.StateCancelled
		h.update(t, func(tx ajar.Tx) error {
			wantCode(t, tx.UpdateRequests(ctx, []*ajar.Request{a, &odd, c}), tc.code)
			// Usable after: write something else and commit it.
			return tx.CreateRequest(ctx, simpleRequest("un-after-"+tc.name, "alice", "web", ajar.StatePending, t0))
		})
		if a.Version != 1 || c.Version != 1 || odd.Version != tc.odd.Version {
			t.Fatalf("%s: failed UpdateRequests changed the callers' versions: %d %d %d", tc.name, a.Version, c.Version, odd.Version)
		}
		for _, id := range []string{"un-a", "un-c"} {
			if got := h.get(t, id); got.State != ajar.StatePending || got.Version != 1 {
				t.Fatalf("%s: failed UpdateRequests wrote %s: state %s version %d", tc.name, id, got.State, got.Version)
			}
		}
		if got := h.get(t, "un-b"); got.State != ajar.StatePending || got.Version != 2 {
			t.Fatalf("%s: failed UpdateRequests wrote un-b: state %s version %d", tc.name, got.State, got.Version)
		}
		h.get(t, "un-after-"+tc.name)
	}

	a := h.get(t, "un-a")
	err := h.s.Update(ctx, func(tx ajar.Tx) error { return tx.UpdateRequests(ctx, []*ajar.Request{a, a}) })
	wantCode(t, err, ajar.EINVALID)
	if got := h.get(t, "un-a"); got.Version != 1 {
		t.Fatalf("UpdateRequests naming un-a twice wrote it: version %d", got.Version)
	}
}

func ptrTime(t time.Time) *time.Time { return &t }
