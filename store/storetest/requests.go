package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

func testRequestRoundTrip(t *testing.T, h *harness) {
	want := fullRequest("req-full", t0)
	r := fullRequest("req-full", t0)
	r.Version = 42 // CreateRequest ignores it and sets 1
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.CreateRequest(t.Context(), r); err != nil {
			return err
		}
		if r.Version != 1 {
			t.Errorf("after CreateRequest, Version = %d, want 1", r.Version)
		}
		// Read your own writes inside the transaction.
		got, err := tx.GetRequest(t.Context(), r.ID)
		if err != nil {
			return err
		}
		want.Version = 1
		wantSameRequest(t, want, got)
		return nil
	})
	got := h.get(t, "req-full")
	wantSameRequest(t, want, got)
	if got.Version != 1 {
		t.Fatalf("stored Version = %d, want 1", got.Version)
	}

	// Every field written by UpdateRequest comes back too, including changes from
	// set to nil.
	upd := fullRequest("req-full", t0.Add(time.Hour))
	upd.Target, upd.Requester, upd.Reason, upd.Ticket = "t2", "bob@example.com", "r2", ""
	upd.State, upd.EndReason = ajar.StateRevokeFailed, ajar.EndExpired
	upd.StartAt, upd.ActivatedAt, upd.NextAt = nil, nil, nil
	upd.Params = map[string]string{"k": "v"}
	upd.Approvals = nil
	upd.Handle.Data = nil
	upd.Attempts = 0
	upd.Version = 1
	h.update(t, func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), upd) })
	if upd.Version != 2 {
		t.Fatalf("after UpdateRequest, Version = %d, want 2", upd.Version)
	}
	wantSameRequest(t, upd, h.get(t, "req-full"))
}

func testRequestMinimalRoundTrip(t *testing.T, h *harness) {
	// Zero times, nil pointers, nil maps and slices, no handle.
	r := &ajar.Request{ID: "req-min", State: ajar.StatePending}
	h.create(t, r)
	got := h.get(t, "req-min")
	want := &ajar.Request{ID: "req-min", State: ajar.StatePending, Version: 1}
	wantSameRequest(t, want, got)
	if !got.CreatedAt.IsZero() || !got.ApprovalDeadline.IsZero() {
		t.Fatalf("zero times came back as %v, %v", got.CreatedAt, got.ApprovalDeadline)
	}
	if got.Handle != nil || got.StartAt != nil || got.NextAt != nil || got.EndedAt != nil {
		t.Fatalf("nil pointers came back set: %+v", got)
	}

	// A handle with an empty Data (the grant intent) stays a handle.
	intent := fullRequest("req-intent", t0)
	intent.Handle.Data = nil
	intent.Handle.Grant.Config = nil
	h.create(t, intent)
	got = h.get(t, "req-intent")
	if got.Handle == nil {
		t.Fatal("intent handle came back nil")
	}
	if len(got.Handle.Data) != 0 {
		t.Fatalf("intent handle Data = %q, want empty", got.Handle.Data)
	}
	wantSameRequest(t, intent, got)
}

func testRequestTimesInOtherZones(t *testing.T, h *harness) {
	zone := time.FixedZone("IST", 5*3600+30*60)
	r := fullRequest("req-zone", t0.In(zone))
	r.NextAt = tp(t0.Add(time.Minute).In(time.FixedZone("west", -7*3600)))
	h.create(t, r)
	got := h.get(t, "req-zone")
	wantSameRequest(t, r, got)

	// The stored instant, not the wall clock in the original zone, decides what is due.
	h.update(t, func(tx ajar.Tx) error {
		due, err := tx.ClaimDue(t.Context(), t0.Add(time.Minute-1), t0.Add(time.Hour), 10)
		if err != nil {
			return err
		}
		if len(due) != 0 {
			t.Errorf("ClaimDue one nanosecond early claimed %d requests", len(due))
		}
		due, err = tx.ClaimDue(t.Context(), t0.Add(time.Minute).In(zone), t0.Add(time.Hour), 10)
		if err != nil {
			return err
		}
		if len(due) != 1 {
			t.Errorf("ClaimDue at NextAt claimed %d requests, want 1", len(due))
		}
		return nil
	})
}

func testRequestNotFound(t *testing.T, h *harness) {
	err := h.s.View(t.Context(), func(tx ajar.ReadTx) error {
		_, err := tx.GetRequest(t.Context(), "missing")
		return err
	})
	wantCode(t, err, ajar.ENOTFOUND)

	h.update(t, func(tx ajar.Tx) error {
		_, err := tx.GetRequest(t.Context(), "missing")
		wantCode(t, err, ajar.ENOTFOUND)
		r := simpleRequest("missing", "a", "b", ajar.StatePending, t0)
		r.Version = 1
		err = tx.UpdateRequest(t.Context(), r)
		wantCode(t, err, ajar.ENOTFOUND)
		if r.Version != 1 {
			t.Errorf("failed UpdateRequest changed Version to %d", r.Version)
		}
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		_, err := tx.GetRequest(t.Context(), "missing")
		wantCode(t, err, ajar.ENOTFOUND)
		return nil
	})
}

func testCreateRequestDuplicate(t *testing.T, h *harness) {
	h.create(t, simpleRequest("dup", "alice", "web", ajar.StatePending, t0))
	other := simpleRequest("dup", "mallory", "db", ajar.StateApproved, t0.Add(time.Hour))
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.CreateRequest(t.Context(), other) })
	wantCode(t, err, ajar.ECONFLICT)
	got := h.get(t, "dup")
	if got.Requester != "alice" || got.State != ajar.StatePending || got.Version != 1 {
		t.Fatalf("duplicate create changed the stored request: %+v", got)
	}
}

func testUpdateRequestCAS(t *testing.T, h *harness) {
	h.create(t, simpleRequest("cas", "alice", "web", ajar.StatePending, t0))
	a := h.get(t, "cas")
	b := h.get(t, "cas")

	a.State = ajar.StateApproved
	h.update(t, func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), a) })
	if a.Version != 2 {
		t.Fatalf("Version after update = %d, want 2", a.Version)
	}

	// b was read before a's update: its write must fail and change nothing.
	b.State = ajar.StateDenied
	b.Reason = "stale writer"
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), b) })
	wantCode(t, err, ajar.ECONFLICT)
	if b.Version != 1 {
		t.Fatalf("failed update changed the caller's Version to %d", b.Version)
	}
	got := h.get(t, "cas")
	if got.State != ajar.StateApproved || got.Reason != "because" || got.Version != 2 {
		t.Fatalf("stale update changed the request: state %s reason %q version %d", got.State, got.Reason, got.Version)
	}

	// A version from the future fails too.
	c := h.get(t, "cas")
	c.Version = 99
	err = h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), c) })
	wantCode(t, err, ajar.ECONFLICT)

	// Two updates of the same copy in one transaction: the second uses the bumped
	// Version and succeeds.
	d := h.get(t, "cas")
	h.update(t, func(tx ajar.Tx) error {
		d.Attempts = 1
		if err := tx.UpdateRequest(t.Context(), d); err != nil {
			return err
		}
		d.Attempts = 2
		return tx.UpdateRequest(t.Context(), d)
	})
	got = h.get(t, "cas")
	if got.Attempts != 2 || got.Version != 4 || d.Version != 4 {
		t.Fatalf("after two updates: attempts %d, stored version %d, caller version %d; want 2, 4, 4", got.Attempts, got.Version, d.Version)
	}
}

// testTxUsableAfterConflict checks that a Tx method failing with ECONFLICT or
// ENOTFOUND leaves the transaction usable: fn may handle the error and go on.
func testTxUsableAfterConflict(t *testing.T, h *harness) {
	h.create(t, simpleRequest("exists", "alice", "web", ajar.StatePending, t0))
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.PutKey(t.Context(), "k", []byte("v")); err != nil {
			return err
		}
		return tx.CreateSession(t.Context(), testSession("ses_h", []byte("h"), "u"))
	})
	h.update(t, func(tx ajar.Tx) error {
		ctx := t.Context()
		wantCode(t, tx.CreateRequest(ctx, simpleRequest("exists", "x", "y", ajar.StatePending, t0)), ajar.ECONFLICT)
		stale := simpleRequest("exists", "x", "y", ajar.StatePending, t0)
		stale.Version = 7
		wantCode(t, tx.UpdateRequest(ctx, stale), ajar.ECONFLICT)
		missing := simpleRequest("missing", "x", "y", ajar.StatePending, t0)
		missing.Version = 1
		wantCode(t, tx.UpdateRequest(ctx, missing), ajar.ENOTFOUND)
		wantCode(t, tx.PutKey(ctx, "k", []byte("other")), ajar.ECONFLICT)
		wantCode(t, tx.CreateSession(ctx, testSession("ses_other", []byte("h"), "u2")), ajar.ECONFLICT)
		_, err := tx.GetKey(ctx, "nope")
		wantCode(t, err, ajar.ENOTFOUND)
		if err := tx.CreateRequest(ctx, simpleRequest("after", "alice", "web", ajar.StatePending, t0)); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, ajar.AuditEvent{Time: t0, Actor: "a", Action: "x", Subject: "after"})
		return err
	})
	if got := h.get(t, "after"); got.Version != 1 {
		t.Fatalf("write after handled conflicts: version %d", got.Version)
	}
	if got := h.get(t, "exists"); got.Requester != "alice" {
		t.Fatalf("conflicting create changed the request: %+v", got)
	}
	checkChain(t, h.auditAll(t))
}

// writeEverything writes one of each kind of record, tagged with id.
func writeEverything(t testing.TB, tx ajar.Tx, id string, serial uint64) error {
	ctx := t.Context()
	if err := tx.CreateRequest(ctx, fullRequest(id, t0)); err != nil {
		return err
	}
	if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: t0, Actor: "alice", Action: "request.created", Subject: id}); err != nil {
		return err
	}
	if err := tx.CreateSession(ctx, testSession("tok_"+id, []byte("tok-"+id), "alice")); err != nil {
		return err
	}
	if err := tx.PutKey(ctx, "key-"+id, []byte("sealed")); err != nil {
		return err
	}
	return tx.InsertSSHCert(ctx, ajar.SSHCert{Serial: serial, RequestID: id, KeyID: id, ValidAfter: t0, ValidBefore: t0, IssuedAt: t0})
}

// wantNothing fails if anything tagged with id was stored.
func wantNothing(t testing.TB, h *harness, id string) {
	t.Helper()
	h.view(t, func(tx ajar.ReadTx) error {
		ctx := t.Context()
		if _, err := tx.GetRequest(ctx, id); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Errorf("request %s: err %v, want not found", id, err)
		}
		if evs, err := tx.ListAudit(ctx, ajar.AuditFilter{Subject: id}); err != nil || len(evs) != 0 {
			t.Errorf("audit events for %s: %d, %v; want none", id, len(evs), err)
		}
		if _, err := tx.GetSession(ctx, []byte("tok-"+id)); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Errorf("token for %s: err %v, want not found", id, err)
		}
		if _, err := tx.GetKey(ctx, "key-"+id); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Errorf("key for %s: err %v, want not found", id, err)
		}
		if certs, err := tx.ListSSHCerts(ctx, id); err != nil || len(certs) != 0 {
			t.Errorf("certs for %s: %d, %v; want none", id, len(certs), err)
		}
		return nil
	})
}

var errBoom = errors.New("boom")

func testUpdateRollsBackOnError(t *testing.T, h *harness) {
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
		if err := writeEverything(t, tx, "rolled-back", 1); err != nil {
			t.Fatalf("write: %v", err)
		}
		return errBoom
	})
	if err != errBoom { // not errors.Is: the contract is "returns it unchanged"
		t.Fatalf("Update returned %v, want fn's error unchanged", err)
	}
	wantNothing(t, h, "rolled-back")
	h.view(t, func(tx ajar.ReadTx) error {
		seq, hash, err := tx.AuditHead(t.Context())
		if seq != 0 || hash != nil || err != nil {
			t.Errorf("AuditHead after rollback = %d, %x, %v; want 0, nil, nil", seq, hash, err)
		}
		return nil
	})

	// The rolled-back event left no gap and the serial is free again.
	h.update(t, func(tx ajar.Tx) error { return writeEverything(t, tx, "kept", 1) })
	evs := h.auditAll(t)
	checkChain(t, evs)
	if len(evs) != 1 || evs[0].Subject != "kept" {
		t.Fatalf("audit log after rollback and commit: %+v", evs)
	}
}

func testUpdateRollsBackOnPanic(t *testing.T, h *harness) {
	func() {
		defer func() {
			if p := recover(); p != errBoom { // the panic value itself, unwrapped
				t.Fatalf("recovered %v, want the panic value of fn", p)
			}
		}()
		_ = h.s.Update(t.Context(), func(tx ajar.Tx) error {
			if err := writeEverything(t, tx, "panicked", 1); err != nil {
				t.Fatalf("write: %v", err)
			}
			panic(errBoom)
		})
		t.Fatal("Update returned after fn panicked")
	}()
	wantNothing(t, h, "panicked")
	// The store is still usable: the writer was released.
	done := make(chan error, 1)
	go func() {
		done <- h.s.Update(t.Context(), func(tx ajar.Tx) error { return writeEverything(t, tx, "after-panic", 1) })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Update after a panic: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Update after a panic did not return: the writer is still held")
	}
	checkChain(t, h.auditAll(t))
}

func testUpdateCancelledContext(t *testing.T, h *harness) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := h.s.Update(ctx, func(tx ajar.Tx) error { return writeEverything(t, tx, "cancelled", 1) })
	if err == nil {
		t.Fatal("Update with a cancelled context returned nil")
	}
	wantNothing(t, h, "cancelled")
}

func testListRequests(t *testing.T, h *harness) {
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	rs := []*ajar.Request{
		simpleRequest("r1", "alice", "web", ajar.StatePending, at(1)),
		simpleRequest("r2", "bob", "web", ajar.StateActive, at(2)),
		simpleRequest("r3", "alice", "db", ajar.StateActive, at(3)),
		simpleRequest("r4", "alice", "web", ajar.StateExpired, at(4)),
		simpleRequest("r5", "carol", "db", ajar.StateRevokeFailed, at(5)),
		// Same creation time: ties break by id, descending.
		simpleRequest("r6a", "bob", "web", ajar.StatePending, at(6)),
		simpleRequest("r6b", "bob", "web", ajar.StatePending, at(6)),
		// Created earlier than all, inserted last: order is by time, not insertion.
		simpleRequest("r0", "alice", "web", ajar.StateDenied, at(0)),
	}
	h.create(t, rs...)

	ids := func(rs []*ajar.Request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	cases := []struct {
		f    ajar.RequestFilter
		want []string
	}{
		{ajar.RequestFilter{}, []string{"r6b", "r6a", "r5", "r4", "r3", "r2", "r1", "r0"}},
		{ajar.RequestFilter{Requester: "alice"}, []string{"r4", "r3", "r1", "r0"}},
		{ajar.RequestFilter{Target: "db"}, []string{"r5", "r3"}},
		{ajar.RequestFilter{States: []ajar.State{ajar.StateActive}}, []string{"r3", "r2"}},
		{ajar.RequestFilter{States: []ajar.State{ajar.StatePending, ajar.StateRevokeFailed}}, []string{"r6b", "r6a", "r5", "r1"}},
		{ajar.RequestFilter{Requester: "alice", Target: "web"}, []string{"r4", "r1", "r0"}},
		{ajar.RequestFilter{Requester: "alice", States: []ajar.State{ajar.StateActive, ajar.StateExpired}}, []string{"r4", "r3"}},
		{ajar.RequestFilter{Requester: "alice", Target: "db", States: []ajar.State{ajar.StateActive}}, []string{"r3"}},
		{ajar.RequestFilter{Limit: 3}, []string{"r6b", "r6a", "r5"}},
		{ajar.RequestFilter{Requester: "bob", Limit: 1}, []string{"r6b"}},
		{ajar.RequestFilter{Requester: "nobody"}, nil},
		{ajar.RequestFilter{States: []ajar.State{ajar.StateCancelled}}, nil},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			got, err := tx.ListRequests(t.Context(), c.f)
			if err != nil {
				return fmt.Errorf("ListRequests(%+v): %w", c.f, err)
			}
			if !slices.Equal(ids(got), c.want) {
				t.Errorf("ListRequests(%+v) = %v, want %v", c.f, ids(got), c.want)
			}
		}
		// Listed requests are complete, not summaries.
		got, err := tx.ListRequests(t.Context(), ajar.RequestFilter{Requester: "carol"})
		if err != nil {
			return err
		}
		rs[4].Version = 1
		wantSameRequest(t, rs[4], got[0])
		return nil
	})
}

// SameParams matches parameters exactly (no params and {} alike), with the
// other filters, whatever the order the keys were given in.
func testListRequestsSameParams(t *testing.T, h *harness) {
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	with := func(r *ajar.Request, p map[string]string) *ajar.Request { r.Params = p; return r }
	long := strings.Repeat("x", 4000) // longer than a btree entry may be
	h.create(t,
		with(simpleRequest("p1", "alice", "web", ajar.StateActive, at(1)), map[string]string{"source_ip": "10.0.0.1", "host": "a"}),
		with(simpleRequest("p2", "alice", "web", ajar.StateActive, at(2)), map[string]string{"source_ip": "10.0.0.2"}),
		with(simpleRequest("p3", "alice", "web", ajar.StatePending, at(3)), nil),
		with(simpleRequest("p4", "alice", "web", ajar.StateActive, at(4)), map[string]string{}),
		with(simpleRequest("p5", "alice", "web", ajar.StateExpired, at(5)), map[string]string{"source_ip": "10.0.0.2"}),
		with(simpleRequest("p6", "bob", "web", ajar.StateActive, at(6)), map[string]string{"source_ip": "10.0.0.2"}),
		with(simpleRequest("p7", "alice", "web", ajar.StateActive, at(7)), map[string]string{"note": long}),
	)
	live := []ajar.State{ajar.StateActive, ajar.StatePending, ajar.StateApproved}
	cases := []struct {
		params map[string]string
		want   []string
	}{
		{map[string]string{"host": "a", "source_ip": "10.0.0.1"}, []string{"p1"}},
		{map[string]string{"source_ip": "10.0.0.2"}, []string{"p2"}},
		{nil, []string{"p4", "p3"}},
		{map[string]string{}, []string{"p4", "p3"}},
		{map[string]string{"source_ip": "10.0.0.3"}, nil},
		{map[string]string{"source_ip": "10.0.0.1"}, nil},
		{map[string]string{"note": long}, []string{"p7"}},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			f := ajar.RequestFilter{Requester: "alice", Target: "web", States: live, SameParams: true, Params: c.params}
			got, err := tx.ListRequests(t.Context(), f)
			if err != nil {
				return err
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Errorf("SameParams %v = %v, want %v", c.params, ids, c.want)
			}
		}
		return nil
	})
}

func testListRequestsDefaultLimit(t *testing.T, h *harness) {
	const n = 1005
	h.update(t, func(tx ajar.Tx) error {
		for i := range n {
			r := simpleRequest(fmt.Sprintf("r%04d", i), "alice", "web", ajar.StatePending, t0.Add(time.Duration(i)*time.Second))
			if err := tx.CreateRequest(t.Context(), r); err != nil {
				return err
			}
		}
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.ListRequests(t.Context(), ajar.RequestFilter{})
		if err != nil {
			return err
		}
		if len(got) != 1000 {
			t.Errorf("default limit returned %d requests, want 1000", len(got))
		}
		if len(got) > 0 && got[0].ID != fmt.Sprintf("r%04d", n-1) {
			t.Errorf("first listed is %s, want the newest", got[0].ID)
		}
		got, err = tx.ListRequests(t.Context(), ajar.RequestFilter{Limit: 2000})
		if err != nil {
			return err
		}
		if len(got) != n {
			t.Errorf("Limit 2000 returned %d requests, want %d", len(got), n)
		}
		return nil
	})
}

// testListRequestsPaging walks the list a page at a time with RequestFilter.After
// and finds every request exactly once, in list order, with filters and with ties
// in creation time that straddle a page boundary.
func testListRequestsPaging(t *testing.T, h *harness) {
	var all []*ajar.Request
	for i := range 23 {
		// Groups of three share a creation time; every third is bob's.
		user, st := "alice", ajar.StatePending
		if i%3 == 0 {
			user, st = "bob", ajar.StateActive
		}
		all = append(all, simpleRequest(fmt.Sprintf("p%02d", i), user, "web", st, t0.Add(time.Duration(i/3)*time.Second)))
	}
	h.create(t, all...)
	want := func(keep func(*ajar.Request) bool) []string {
		var out []string
		for _, r := range all {
			if keep(r) {
				out = append(out, r.ID)
			}
		}
		slices.Reverse(out) // newest first; within a time, greatest id first
		return out
	}
	cases := []struct {
		f    ajar.RequestFilter
		want []string
	}{
		{ajar.RequestFilter{}, want(func(*ajar.Request) bool { return true })},
		{ajar.RequestFilter{Requester: "alice"}, want(func(r *ajar.Request) bool { return r.Requester == "alice" })},
		{ajar.RequestFilter{States: []ajar.State{ajar.StateActive}}, want(func(r *ajar.Request) bool { return r.State == ajar.StateActive })},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			for _, size := range []int{1, 2, 4, 7, 100} {
				f := c.f
				f.Limit = size
				var got []string
				for pages := 0; ; pages++ {
					if pages > len(all) {
						t.Fatalf("%+v: paging does not end", f)
					}
					page, err := tx.ListRequests(t.Context(), f)
					if err != nil {
						return fmt.Errorf("ListRequests(%+v): %w", f, err)
					}
					for _, r := range page {
						got = append(got, r.ID)
					}
					if len(page) < size {
						break
					}
					k := page[len(page)-1].Key()
					f.After = &k
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("paging %+v by %d: got %v, want %v", c.f, size, got, c.want)
				}
			}
		}
		// A key that is no request's still splits the list where it would sit.
		got, err := tx.ListRequests(t.Context(), ajar.RequestFilter{After: &ajar.RequestKey{CreatedAt: t0.Add(2 * time.Second), ID: "p07"}, Limit: 3})
		if err != nil {
			return err
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if w := []string{"p06", "p05", "p04"}; !slices.Equal(ids, w) {
			t.Errorf("after (t0+2s, p07): %v, want %v", ids, w)
		}
		return nil
	})
}

// testCountRequests: CountRequests agrees with ListRequests for every filter,
// CreatedSince included, and stops at a positive Limit.
func testCountRequests(t *testing.T, h *harness) {
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	h.create(t,
		simpleRequest("c1", "alice", "web", ajar.StatePending, at(1)),
		simpleRequest("c2", "alice", "db", ajar.StateActive, at(2)),
		simpleRequest("c3", "alice", "web", ajar.StateExpired, at(3)),
		simpleRequest("c4", "bob", "web", ajar.StatePending, at(3)),
		simpleRequest("c5", "alice", "web", ajar.StateApproved, at(5)),
	)
	cases := []struct {
		f    ajar.RequestFilter
		want int
	}{
		{ajar.RequestFilter{}, 5},
		{ajar.RequestFilter{Requester: "alice"}, 4},
		{ajar.RequestFilter{Requester: "alice", States: []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateActive}}, 3},
		{ajar.RequestFilter{Requester: "alice", CreatedSince: at(3)}, 2},
		{ajar.RequestFilter{CreatedSince: at(3)}, 3},
		{ajar.RequestFilter{CreatedSince: at(6)}, 0},
		{ajar.RequestFilter{Target: "web", States: []ajar.State{ajar.StatePending}}, 2},
		{ajar.RequestFilter{Requester: "alice", Limit: 2}, 2},
		{ajar.RequestFilter{Requester: "alice", Limit: 10}, 4},
		{ajar.RequestFilter{After: &ajar.RequestKey{CreatedAt: at(3), ID: "c4"}}, 3},
		{ajar.RequestFilter{Requester: "nobody"}, 0},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			n, err := tx.CountRequests(t.Context(), c.f)
			if err != nil {
				return fmt.Errorf("CountRequests(%+v): %w", c.f, err)
			}
			if n != c.want {
				t.Errorf("CountRequests(%+v) = %d, want %d", c.f, n, c.want)
			}
			if c.f.Limit == 0 {
				listed, err := tx.ListRequests(t.Context(), c.f)
				if err != nil {
					return err
				}
				if len(listed) != n {
					t.Errorf("ListRequests(%+v) lists %d, CountRequests counts %d", c.f, len(listed), n)
				}
			}
		}
		// All of them in one statement, and in another order.
		var fs []ajar.RequestFilter
		var want []int
		for i := range cases {
			c := cases[(i*7)%len(cases)]
			fs, want = append(fs, c.f), append(want, c.want)
		}
		counts, err := tx.CountRequestsEach(t.Context(), fs...)
		if err != nil {
			return fmt.Errorf("CountRequestsEach: %w", err)
		}
		if !slices.Equal(counts, want) {
			t.Errorf("CountRequestsEach = %v, want %v", counts, want)
		}
		if counts, err := tx.CountRequestsEach(t.Context()); err != nil || len(counts) != 0 {
			t.Errorf("CountRequestsEach() = %v, %v; want none", counts, err)
		}
		return nil
	})
}

// testCountAfterWriteSerialized: in Update, a count run after the
// transaction's first write sees every write committed before it, so
// concurrent writers that each insert a request and then count see 1, 2, ...
// n, never the same number twice. The broker's per-user limits rely on it
// (see ReadTx.CountRequests).
func testCountAfterWriteSerialized(t *testing.T, h *harness) {
	concurrentCounts(t, h, func(tx ajar.Tx, w int) (int, error) {
		r := simpleRequest(fmt.Sprintf("cw%02d", w), "alice", "web", ajar.StatePending, t0)
		if err := tx.CreateRequest(t.Context(), r); err != nil {
			return 0, err
		}
		return tx.CountRequests(t.Context(), ajar.RequestFilter{Requester: "alice", States: []ajar.State{ajar.StatePending}})
	})
}

// concurrentCounts runs 12 writers at once, each an Update with createCount,
// which writes and then counts its writer's writes and the others'; the
// counts must be 1, 2, ... 12, never the same number twice.
func concurrentCounts(t *testing.T, h *harness, createCount func(tx ajar.Tx, w int) (int, error)) {
	const writers = 12
	var wg sync.WaitGroup
	counts := make(chan int, writers)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
				n, err := createCount(tx, w)
				if err == nil {
					counts <- n
				}
				return err
			})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(counts)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got []int
	for n := range counts {
		got = append(got, n)
	}
	slices.Sort(got)
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("counts after each write: %v, want 1..%d: concurrent writers counted without seeing each other", got, writers)
		}
	}
}

func testCountByState(t *testing.T, h *harness) {
	h.view(t, func(tx ajar.ReadTx) error {
		m, err := tx.CountByState(t.Context())
		if err != nil {
			return err
		}
		if len(m) != 0 {
			t.Errorf("CountByState on an empty store = %v", m)
		}
		return nil
	})
	h.create(t,
		simpleRequest("a", "u", "t", ajar.StatePending, t0),
		simpleRequest("b", "u", "t", ajar.StatePending, t0),
		simpleRequest("c", "u", "t", ajar.StateActive, t0),
		simpleRequest("d", "u", "t", ajar.StateRevokeFailed, t0),
		simpleRequest("e", "u", "t", ajar.StatePending, t0),
	)
	// A state change moves the count.
	h.update(t, func(tx ajar.Tx) error {
		r, err := tx.GetRequest(t.Context(), "e")
		if err != nil {
			return err
		}
		r.State = ajar.StateActive
		return tx.UpdateRequest(t.Context(), r)
	})
	h.view(t, func(tx ajar.ReadTx) error {
		m, err := tx.CountByState(t.Context())
		if err != nil {
			return err
		}
		want := map[ajar.State]int{ajar.StatePending: 2, ajar.StateActive: 2, ajar.StateRevokeFailed: 1}
		if !mapsEqual(m, want) {
			t.Errorf("CountByState = %v, want %v", m, want)
		}
		return nil
	})
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testNextDue(t *testing.T, h *harness) {
	nextDue := func() (time.Time, bool) {
		var at time.Time
		var ok bool
		h.view(t, func(tx ajar.ReadTx) error {
			var err error
			at, ok, err = tx.NextDue(t.Context())
			return err
		})
		return at, ok
	}
	if _, ok := nextDue(); ok {
		t.Fatal("NextDue on an empty store: ok")
	}
	h.create(t, simpleRequest("terminal", "u", "t", ajar.StateExpired, t0))
	if _, ok := nextDue(); ok {
		t.Fatal("NextDue with only nil NextAt: ok")
	}
	late := simpleRequest("late", "u", "t", ajar.StateActive, t0)
	late.NextAt = tp(t0.Add(time.Hour))
	early := simpleRequest("early", "u", "t", ajar.StatePending, t0)
	early.NextAt = tp(t0.Add(-time.Hour + 1))
	h.create(t, late, early)
	if at, ok := nextDue(); !ok || !at.Equal(*early.NextAt) {
		t.Fatalf("NextDue = %v, %v; want %v", at, ok, *early.NextAt)
	}
	// Clearing the earliest moves NextDue to the next one.
	early.NextAt = nil
	h.update(t, func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), early) })
	if at, ok := nextDue(); !ok || !at.Equal(*late.NextAt) {
		t.Fatalf("NextDue = %v, %v; want %v", at, ok, *late.NextAt)
	}
}

func testClaimDue(t *testing.T, h *harness) {
	mk := func(id string, next *time.Time, state ajar.State) *ajar.Request {
		r := simpleRequest(id, "u", "t", state, t0)
		r.NextAt = next
		return r
	}
	now := t0.Add(time.Hour)
	lease := now.Add(time.Minute)
	h.create(t,
		mk("aa-second", tp(now.Add(-2*time.Second)), ajar.StateActive),
		mk("future", tp(now.Add(1)), ajar.StateActive),
		mk("mm-third", tp(now.Add(-time.Second)), ajar.StateRevoking),
		mk("zz-first", tp(now.Add(-time.Hour)), ajar.StatePending),
		mk("terminal", nil, ajar.StateExpired),
		mk("bb-fourth", tp(now), ajar.StateApproved), // due exactly now
		mk("ancient", nil, ajar.StateRevoked),
	)
	before := h.get(t, "zz-first")

	claim := func(now, lease time.Time, limit int) []*ajar.Request {
		t.Helper()
		var due []*ajar.Request
		h.update(t, func(tx ajar.Tx) error {
			var err error
			due, err = tx.ClaimDue(t.Context(), now, lease, limit)
			return err
		})
		return due
	}
	ids := func(rs []*ajar.Request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}

	due := claim(now, lease, 2)
	if got := ids(due); !slices.Equal(got, []string{"zz-first", "aa-second"}) {
		t.Fatalf("ClaimDue limit 2 = %v, want [zz-first aa-second] (earliest first, not id order)", got)
	}
	for _, r := range due {
		if r.NextAt == nil || !r.NextAt.Equal(lease) {
			t.Errorf("claimed %s NextAt = %v, want the lease %v", r.ID, r.NextAt, lease)
		}
		if r.Version != 2 {
			t.Errorf("claimed %s Version = %d, want 2", r.ID, r.Version)
		}
		wantSameRequest(t, r, h.get(t, r.ID)) // what ClaimDue returns is what is stored
	}
	// Only NextAt and Version changed.
	after := h.get(t, "zz-first")
	before.NextAt, before.Version = tp(lease), 2
	wantSameRequest(t, before, after)

	due = claim(now, lease, 10)
	if got := ids(due); !slices.Equal(got, []string{"mm-third", "bb-fourth"}) {
		t.Fatalf("second ClaimDue = %v, want [mm-third bb-fourth]: claimed rows must not be claimed again before the lease", got)
	}
	if due = claim(now, lease, 10); len(due) != 0 {
		t.Fatalf("third ClaimDue = %v, want nothing", ids(due))
	}

	// The fencing token: a worker holding the pre-claim version cannot write.
	stale := h.get(t, "zz-first")
	stale.Version = 1
	stale.State = ajar.StateDenied
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), stale) })
	wantCode(t, err, ajar.ECONFLICT)

	// Terminal requests are never claimed, however late it is.
	due = claim(t0.Add(1000*time.Hour), t0.Add(1001*time.Hour), 100)
	// future is due earliest (now+1ns), then the four leased to the same instant,
	// in an order the contract leaves open.
	got := ids(due)
	if len(got) != 5 || got[0] != "future" {
		t.Fatalf("late ClaimDue = %v, want future first, then the four leased requests, and no terminal ones", got)
	}
	rest := slices.Sorted(slices.Values(got[1:]))
	if !slices.Equal(rest, []string{"aa-second", "bb-fourth", "mm-third", "zz-first"}) {
		t.Fatalf("late ClaimDue = %v, want future, then the four leased requests", got)
	}
	for _, r := range due {
		if r.ID == "terminal" || r.ID == "ancient" {
			t.Fatalf("ClaimDue claimed terminal request %s", r.ID)
		}
	}

	// A non-positive limit is a caller bug, not "claim nothing".
	err = h.s.Update(t.Context(), func(tx ajar.Tx) error {
		_, err := tx.ClaimDue(t.Context(), now, lease, 0)
		return err
	})
	wantCode(t, err, ajar.EINVALID)
}

func testClaimDueLease(t *testing.T, h *harness) {
	now := t0
	r := simpleRequest("leased", "u", "t", ajar.StateActive, t0)
	r.NextAt = tp(now.Add(-time.Second))
	h.create(t, r)
	var first []*ajar.Request
	h.update(t, func(tx ajar.Tx) error {
		var err error
		first, err = tx.ClaimDue(t.Context(), now, now.Add(time.Minute), 10)
		return err
	})
	if len(first) != 1 {
		t.Fatalf("first claim got %d", len(first))
	}
	// The worker dies. Just before the lease ends nothing is due; at its end the
	// request is due again, with a new fencing token.
	h.update(t, func(tx ajar.Tx) error {
		due, err := tx.ClaimDue(t.Context(), now.Add(time.Minute-1), now.Add(2*time.Minute), 10)
		if err != nil {
			return err
		}
		if len(due) != 0 {
			t.Errorf("claimed before the lease ended")
		}
		due, err = tx.ClaimDue(t.Context(), now.Add(time.Minute), now.Add(2*time.Minute), 10)
		if err != nil {
			return err
		}
		if len(due) != 1 || due[0].Version != first[0].Version+1 {
			t.Errorf("re-claim after lease: %d requests, version %v; want 1, %d", len(due), due, first[0].Version+1)
		}
		return nil
	})
	// The first worker wakes up: its write must fail.
	first[0].State = ajar.StateExpired
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), first[0]) })
	wantCode(t, err, ajar.ECONFLICT)
}

// testCreateRequestCounting: CreateRequestCounting stores r and returns the
// counts of CountRequestsEach run after it (r included); an id that exists
// is ECONFLICT with no counts and leaves the Tx usable; with no filters it
// only creates. Concurrent writers each count the others' committed writes
// and their own, never the same number twice (as testCountAfterWriteSerialized).
func testCreateRequestCounting(t *testing.T, h *harness) {
	ctx := t.Context()
	h.create(t,
		simpleRequest("cc1", "alice", "web", ajar.StatePending, t0),
		simpleRequest("cc2", "alice", "db", ajar.StateExpired, t0),
		simpleRequest("cc3", "bob", "web", ajar.StateActive, t0))
	open := []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateActive}
	fs := []ajar.RequestFilter{
		{Requester: "alice", States: open}, {Requester: "alice"}, {Requester: "bob"}, {Requester: "alice", Limit: 1},
	}
	h.update(t, func(tx ajar.Tx) error {
		r := simpleRequest("cc4", "alice", "web", ajar.StatePending, t0)
		counts, err := tx.CreateRequestCounting(ctx, r, fs...)
		if err != nil {
			return err
		}
		if want := []int{2, 3, 1, 1}; !slices.Equal(counts, want) {
			t.Errorf("counts = %v, want %v (the new request counted)", counts, want)
		}
		if r.Version != 1 {
			t.Errorf("Version = %d, want 1", r.Version)
		}
		counts, err = tx.CreateRequestCounting(ctx, simpleRequest("cc1", "alice", "web", ajar.StatePending, t0), fs...)
		wantCode(t, err, ajar.ECONFLICT)
		if counts != nil {
			t.Errorf("counts with ECONFLICT = %v, want none", counts)
		}
		// The Tx goes on.
		if counts, err = tx.CreateRequestCounting(ctx, simpleRequest("cc5", "bob", "db", ajar.StatePending, t0), fs...); err != nil {
			return err
		}
		if want := []int{2, 3, 2, 1}; !slices.Equal(counts, want) {
			t.Errorf("counts after the conflict = %v, want %v", counts, want)
		}
		if counts, err = tx.CreateRequestCounting(ctx, simpleRequest("cc6", "carol", "db", ajar.StatePending, t0)); err != nil || len(counts) != 0 {
			t.Errorf("no filters: counts %v, err %v; want none, nil", counts, err)
		}
		_, err = tx.AppendAudit(ctx, ajar.AuditEvent{Time: t0, Actor: "alice", Action: "x", Subject: "cc4"})
		return err
	})
	for _, id := range []string{"cc4", "cc5", "cc6"} {
		if got := h.get(t, id); got.Version != 1 {
			t.Errorf("%s: version %d, want 1", id, got.Version)
		}
	}
	if got := h.get(t, "cc1"); got.Requester != "alice" || got.Target != "web" {
		t.Errorf("cc1 changed by the refused create: %+v", got)
	}

	concurrentCounts(t, h, func(tx ajar.Tx, w int) (int, error) {
		counts, err := tx.CreateRequestCounting(ctx, simpleRequest(fmt.Sprintf("ccw%02d", w), "dave", "web", ajar.StatePending, t0),
			ajar.RequestFilter{Requester: "dave"})
		if err != nil {
			return 0, err
		}
		return counts[0], nil
	})
}
