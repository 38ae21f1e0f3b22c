package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// testAuditSearch checks every AuditFilter field: user (actor or requester of
// the request an event is about, as it was when the event was appended),
// target, action and its prefix form, the time range (times with and without
// a fraction, which do not sort as text), newest first, BeforeSeq, and their
// combinations, with paging by AfterSeq and Limit.
func testAuditSearch(t *testing.T, h *harness) {
	base := t0.Truncate(time.Second)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	h.create(t,
		simpleRequest("r1", "alice", "web", ajar.StateActive, base),
		simpleRequest("r2", "bob", "db", ajar.StatePending, base),
		simpleRequest("r3", "alice", "db", ajar.StateDenied, base))
	type ev struct {
		at                     time.Duration
		actor, action, subject string
	}
	appendAll := func(evs ...ev) {
		h.update(t, func(tx ajar.Tx) error {
			for _, e := range evs {
				if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: at(e.at), Actor: e.actor, Action: e.action, Subject: e.subject}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	appendAll(
		ev{0, "alice", "request.created", "r1"},                               // 1
		ev{500 * time.Millisecond, "ajar", "request.approved", "r1"},          // 2
		ev{time.Second, "bob", "request.created", "r2"},                       // 3
		ev{time.Second + time.Nanosecond, "alice", "approval.recorded", "r2"}, // 4
		ev{2 * time.Second, "carol", "token.created", "tok_1"},                // 5
		ev{2100 * time.Millisecond, "bob", "request.denied", "r3"},            // 6
		ev{3 * time.Second, "ajar", "request.expired", "r1"},                  // 7
		ev{4 * time.Second, "dave", "request.created", "r9"},                  // 8: r9 does not exist yet
	)
	// A request created after an event about it: its later events have its
	// requester and target, the earlier one keeps none.
	h.create(t, simpleRequest("r9", "erin", "web", ajar.StatePending, base))
	appendAll(ev{5 * time.Second, "ajar", "request.approved", "r9"}) // 9

	seqs := func(evs []ajar.AuditEvent) []int64 {
		var out []int64
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}
	cases := []struct {
		f    ajar.AuditFilter
		want []int64
	}{
		{ajar.AuditFilter{Subject: "r1"}, []int64{1, 2, 7}},
		{ajar.AuditFilter{User: "alice"}, []int64{1, 2, 4, 6, 7}},
		{ajar.AuditFilter{User: "bob"}, []int64{3, 4, 6}},
		{ajar.AuditFilter{User: "carol"}, []int64{5}},
		{ajar.AuditFilter{User: "dave"}, []int64{8}},
		{ajar.AuditFilter{User: "erin"}, []int64{9}},
		{ajar.AuditFilter{User: "nobody"}, nil},
		{ajar.AuditFilter{Target: "db"}, []int64{3, 4, 6}},
		{ajar.AuditFilter{Target: "web"}, []int64{1, 2, 7, 9}},
		{ajar.AuditFilter{Target: "r1"}, nil},
		{ajar.AuditFilter{Action: "request."}, []int64{1, 2, 3, 6, 7, 8, 9}},
		{ajar.AuditFilter{Action: "request.created"}, []int64{1, 3, 8}},
		{ajar.AuditFilter{Action: "request"}, nil},
		{ajar.AuditFilter{Action: "approval."}, []int64{4}},
		{ajar.AuditFilter{From: at(500 * time.Millisecond)}, []int64{2, 3, 4, 5, 6, 7, 8, 9}},
		{ajar.AuditFilter{To: at(time.Second)}, []int64{1, 2}},
		{ajar.AuditFilter{From: at(time.Second), To: at(2100 * time.Millisecond)}, []int64{3, 4, 5}},
		{ajar.AuditFilter{From: at(time.Second + time.Nanosecond), To: at(2 * time.Second)}, []int64{4}},
		// A time in another zone is the same instant.
		{ajar.AuditFilter{From: at(3 * time.Second).In(time.FixedZone("x", 3600))}, []int64{7, 8, 9}},
		{ajar.AuditFilter{User: "alice", Target: "db"}, []int64{4, 6}},
		{ajar.AuditFilter{User: "alice", Action: "request.", From: at(500 * time.Millisecond)}, []int64{2, 6, 7}},
		{ajar.AuditFilter{User: "alice", Subject: "r2"}, []int64{4}},
		{ajar.AuditFilter{Target: "web", To: at(3 * time.Second)}, []int64{1, 2}},
		{ajar.AuditFilter{User: "alice", AfterSeq: 2}, []int64{4, 6, 7}},
		{ajar.AuditFilter{User: "alice", Limit: 2}, []int64{1, 2}},
		{ajar.AuditFilter{User: "alice", Newest: true, Limit: 2}, []int64{7, 6}},
		{ajar.AuditFilter{User: "alice", Newest: true, BeforeSeq: 6, Limit: 2}, []int64{4, 2}},
		{ajar.AuditFilter{User: "alice", Newest: true, BeforeSeq: 6, AfterSeq: 1}, []int64{4, 2}},
		{ajar.AuditFilter{Target: "web", Newest: true, Limit: 3}, []int64{9, 7, 2}},
		{ajar.AuditFilter{Newest: true, Limit: 3}, []int64{9, 8, 7}},
		{ajar.AuditFilter{Newest: true, BeforeSeq: 3}, []int64{2, 1}},
		{ajar.AuditFilter{BeforeSeq: 4, AfterSeq: 1}, []int64{2, 3}},
		{ajar.AuditFilter{Newest: true, From: at(time.Second), To: at(3 * time.Second), Limit: 2}, []int64{6, 5}},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			got, err := tx.ListAudit(t.Context(), c.f)
			if err != nil {
				return fmt.Errorf("ListAudit(%+v): %w", c.f, err)
			}
			if fmt.Sprint(seqs(got)) != fmt.Sprint(c.want) {
				t.Errorf("ListAudit(%+v) = %v, want %v", c.f, seqs(got), c.want)
			}
			for _, e := range got {
				if len(e.Hash) == 0 || e.Time.IsZero() || e.Action == "" {
					t.Errorf("ListAudit(%+v): event %d incomplete: %+v", c.f, e.Seq, e)
				}
			}
		}
		return nil
	})
	// The search columns are not hashed: the chain is what it always was.
	checkChain(t, h.auditAll(t))
}

// SeedAuditSearch writes two requests and four audit events about them for a
// migration test: it seeds a store, undoes the migration that added the search
// columns (0008), reopens the store to run it again, and calls
// CheckAuditSearch, which fails unless the migration filled the columns of the
// events already there.
func SeedAuditSearch(t testing.TB, s ajar.Store) {
	t.Helper()
	h := &harness{s: s}
	h.create(t, simpleRequest("m1", "alice", "web", ajar.StateActive, t0), simpleRequest("m2", "bob", "db", ajar.StateActive, t0))
	h.update(t, func(tx ajar.Tx) error {
		for i, e := range []struct{ actor, subject string }{{"alice", "m1"}, {"bob", "m2"}, {"carol", "m1"}, {"carol", "tok_1"}} {
			if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: t0.Add(time.Duration(i) * time.Second), Actor: e.actor, Action: "x", Subject: e.subject}); err != nil {
				return err
			}
		}
		return nil
	})
}

// CheckAuditSearch checks the searches of the events SeedAuditSearch wrote.
func CheckAuditSearch(t testing.TB, s ajar.Store) {
	t.Helper()
	h := &harness{s: s}
	for _, c := range []struct {
		f    ajar.AuditFilter
		want string
	}{
		{ajar.AuditFilter{User: "alice"}, "[1 3]"},
		{ajar.AuditFilter{User: "bob"}, "[2]"},
		{ajar.AuditFilter{User: "carol"}, "[3 4]"},
		{ajar.AuditFilter{Target: "web"}, "[1 3]"},
		{ajar.AuditFilter{Target: "db"}, "[2]"},
		{ajar.AuditFilter{From: t0.Add(time.Second), To: t0.Add(3 * time.Second)}, "[2 3]"},
	} {
		h.view(t, func(tx ajar.ReadTx) error {
			evs, err := tx.ListAudit(t.Context(), c.f)
			if err != nil {
				return err
			}
			var got []int64
			for _, e := range evs {
				got = append(got, e.Seq)
			}
			if fmt.Sprint(got) != c.want {
				t.Errorf("after migration: ListAudit(%+v) = %v, want %s", c.f, got, c.want)
			}
			return nil
		})
	}
	checkChain(t, h.auditAll(t))
}
