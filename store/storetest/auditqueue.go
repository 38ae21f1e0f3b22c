package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// testAuditManyInOneUpdate appends more events in one Update than a store
// may insert in one statement, about a request written in that Update, one
// written before, and no request: inside the Update the log and its head
// already show every one of them; after the commit they form one chain and
// each has the requester and target of the request it is about. A store that
// queues appends must flush before a read and at the end of the Update, and
// a failed Update must leave none of its queued events.
func testAuditManyInOneUpdate(t *testing.T, h *harness) {
	ctx := t.Context()
	base := t0.Truncate(time.Second)
	h.create(t, simpleRequest("old", "bob", "db", ajar.StateActive, base))
	subjects := []string{"new", "old", "tok_1"}
	var appended []ajar.AuditEvent
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.CreateRequest(ctx, simpleRequest("new", "alice", "web", ajar.StatePending, base)); err != nil {
			return err
		}
		for i := range 40 {
			e, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: base.Add(time.Duration(i) * time.Millisecond),
				Actor: "carol", Action: fmt.Sprintf("test.%d", i), Subject: subjects[i%len(subjects)]})
			if err != nil {
				return err
			}
			appended = append(appended, e)
		}
		evs, err := tx.ListAudit(ctx, ajar.AuditFilter{Limit: 100})
		if err != nil {
			return err
		}
		if len(evs) != len(appended) {
			t.Errorf("ListAudit inside the Update: %d events, want %d", len(evs), len(appended))
		}
		seq, hash, err := tx.AuditHead(ctx)
		if err != nil {
			return err
		}
		if last := appended[len(appended)-1]; seq != last.Seq || !bytes.Equal(hash, last.Hash) {
			t.Errorf("AuditHead inside the Update = %d, want %d and the last event's hash", seq, last.Seq)
		}
		// One more after the reads: queued again, seen by the head, flushed at the end.
		e, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: base.Add(time.Second), Actor: "carol", Action: "test.last", Subject: "new"})
		if err != nil {
			return err
		}
		appended = append(appended, e)
		if seq, _, err := tx.AuditHead(ctx); err != nil || seq != e.Seq {
			t.Errorf("AuditHead after one more = %d, %v; want %d", seq, err, e.Seq)
		}
		return nil
	})
	all := h.auditAll(t)
	checkChain(t, all)
	if len(all) != len(appended) {
		t.Fatalf("%d events stored, want %d", len(all), len(appended))
	}
	for i, e := range all {
		if e.Seq != appended[i].Seq || !bytes.Equal(e.Hash, appended[i].Hash) || e.Action != appended[i].Action {
			t.Fatalf("event %d stored as seq %d %s, appended as seq %d %s", i, e.Seq, e.Action, appended[i].Seq, appended[i].Action)
		}
	}
	count := func(f ajar.AuditFilter) int {
		n := 0
		h.view(t, func(tx ajar.ReadTx) error {
			f.Limit = 100
			evs, err := tx.ListAudit(ctx, f)
			for _, e := range evs {
				if want := map[string]string{"new": "alice", "old": "bob"}[e.Subject]; want == "" || (f.User != "" && f.User != want) {
					t.Errorf("search %+v found event %d about %s", f, e.Seq, e.Subject)
				}
			}
			n = len(evs)
			return err
		})
		return n
	}
	if n := count(ajar.AuditFilter{User: "alice"}); n != 15 {
		t.Errorf("events about alice's request: %d, want 15", n)
	}
	if n := count(ajar.AuditFilter{Target: "db"}); n != 13 {
		t.Errorf("events about the db request: %d, want 13", n)
	}

	// A failed Update leaves none of its queued events; the next one chains on.
	boom := errors.New("boom")
	err := h.s.Update(ctx, func(tx ajar.Tx) error {
		for range 3 {
			if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: base, Actor: "carol", Action: "test.lost", Subject: "new"}); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	h.update(t, func(tx ajar.Tx) error {
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: base, Actor: "carol", Action: "test.after", Subject: "old"})
		return err
	})
	all = h.auditAll(t)
	checkChain(t, all)
	if len(all) != len(appended)+1 || all[len(all)-1].Action != "test.after" {
		t.Errorf("after a failed Update: %d events, last %s; want %d, last test.after", len(all), all[len(all)-1].Action, len(appended)+1)
	}
}

// testAuditAfterRequestRewritten: an event appended after an Update rewrote
// its request's requester carries the requester as written, not as it was
// first written in the same Update.
func testAuditAfterRequestRewritten(t *testing.T, h *harness) {
	ctx := t.Context()
	base := t0.Truncate(time.Second)
	h.update(t, func(tx ajar.Tx) error {
		r := simpleRequest("moved", "alice", "web", ajar.StatePending, base)
		if err := tx.CreateRequest(ctx, r); err != nil {
			return err
		}
		r.Requester = "bob"
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: base, Actor: "carol", Action: "test.after", Subject: "moved"})
		return err
	})
	h.view(t, func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(ctx, ajar.AuditFilter{User: "bob", Limit: 10})
		if err == nil && len(evs) != 1 {
			t.Errorf("events about bob's request: %d, want 1", len(evs))
		}
		return err
	})
}
