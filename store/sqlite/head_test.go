package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// inOneBatch runs a, b and c as three Updates of one batch, in that order:
// each holds the writer until the next waits for it, so the batch stays open.
// It returns their errors, a's first.
func inOneBatch(t *testing.T, s *Store, a, b, c func(ajar.Tx) error) [3]error {
	t.Helper()
	waitPending := func() {
		for deadline := time.Now().Add(time.Minute); s.pending.Load() < 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("no Update came to wait for the writer")
				return
			}
		}
	}
	var errs [3]error
	var wg sync.WaitGroup
	for i, fn := range []func(ajar.Tx) error{a, b, c} {
		in := make(chan struct{})
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(tx ajar.Tx) error {
				close(in)
				if i < 2 {
					defer waitPending()
				}
				return fn(tx)
			})
		})
		<-in
	}
	wg.Wait()
	return errs
}

// appendEvent appends an event of action in tx.
func appendEvent(tx ajar.Tx, action string) error {
	_, err := tx.AppendAudit(context.Background(), ajar.AuditEvent{
		Time: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Actor: "test", Action: action, Subject: "s"})
	return err
}

// checkAC checks that s's log is a then c, chained.
func checkAC(t *testing.T, s *Store) {
	t.Helper()
	var evs []ajar.AuditEvent
	err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(t.Context(), ajar.AuditFilter{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Action != "a" || evs[1].Action != "c" {
		t.Fatalf("events %+v, want a then c", evs)
	}
	if evs[0].Seq != 1 || evs[1].Seq != 2 || string(evs[1].PrevHash) != string(evs[0].Hash) || string(evs[1].Hash) != string(evs[1].ComputeHash()) {
		t.Errorf("c (seq %d) does not chain to a (seq %d): the chain is broken", evs[1].Seq, evs[0].Seq)
	}
}

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The batch keeps the audit chain head in memory: an Update that fails inside
// a batch must leave it where the events that stayed put it, so that the next
// Update in the same batch chains to those, not to the rolled-back ones.
func TestBatchHeadAfterARolledBackUpdate(t *testing.T) {
	s := openTemp(t)
	boom := errors.New("boom")
	errs := inOneBatch(t, s,
		func(tx ajar.Tx) error { return appendEvent(tx, "a") },
		func(tx ajar.Tx) error {
			if err := appendEvent(tx, "b"); err != nil {
				return err
			}
			return boom // rolled back
		},
		func(tx ajar.Tx) error { return appendEvent(tx, "c") })
	if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
		t.Fatalf("errors %v, want only b's", errs)
	}
	checkAC(t, s)
}

// An Update that reads the log inserts the events its batch queued before it
// (the batch's events are inserted together, before the commit); if it then
// fails, its savepoint's rollback takes those rows out again, and they must
// go in with the batch all the same: an earlier Update's change without its
// audit events would be a change nobody recorded.
func TestBatchEventsInsertedInARolledBackUpdate(t *testing.T) {
	for _, read := range []string{"ListAudit", "AuditHead"} {
		t.Run(read, func(t *testing.T) {
			s := openTemp(t)
			ctx := t.Context()
			boom := errors.New("boom")
			errs := inOneBatch(t, s,
				func(tx ajar.Tx) error { return appendEvent(tx, "a") },
				func(tx ajar.Tx) error {
					// The read sees a, queued by the Update before.
					switch read {
					case "ListAudit":
						evs, err := tx.ListAudit(ctx, ajar.AuditFilter{})
						if err != nil {
							return err
						}
						if len(evs) != 1 || evs[0].Action != "a" {
							t.Errorf("B read %+v, want a", evs)
						}
					case "AuditHead":
						seq, _, err := tx.AuditHead(ctx)
						if err != nil {
							return err
						}
						if seq != 1 {
							t.Errorf("B read the head at %d, want 1 (a)", seq)
						}
					}
					if err := appendEvent(tx, "b"); err != nil {
						return err
					}
					return boom
				},
				func(tx ajar.Tx) error { return appendEvent(tx, "c") })
			if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
				t.Fatalf("errors %v, want only b's", errs)
			}
			checkAC(t, s)
		})
	}
}

// The batch's events are inserted just before its commit: if they cannot be
// (here a row put in their way behind the store's back), nothing of the batch
// commits, and its callers learn it.
func TestBatchNotCommittedWithoutItsEvents(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	ran := false
	err := s.Update(ctx, func(tx ajar.Tx) error {
		if err := tx.PutKey(ctx, "k", []byte("v")); err != nil {
			return err
		}
		tx.AfterCommit(func() { ran = true })
		ev, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: at, Actor: "test", Action: "key.put", Subject: "k"})
		if err != nil {
			return err
		}
		// The event's seq taken by another row: the batch's insert must fail.
		_, err = s.wconn.ExecContext(ctx, `INSERT INTO audit_events (seq, time, actor, action, subject, hash) VALUES (?, 't', 'm', 'x', 's', x'00')`, ev.Seq)
		return err
	})
	if err == nil {
		t.Fatal("the Update committed although its audit event could not be inserted")
	}
	if ran {
		t.Error("AfterCommit's function ran although nothing committed")
	}
	err = s.View(ctx, func(tx ajar.ReadTx) error {
		if _, err := tx.GetKey(ctx, "k"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Errorf("the change without its event is stored: GetKey = %v", err)
		}
		evs, err := tx.ListAudit(ctx, ajar.AuditFilter{})
		if err == nil && len(evs) != 0 {
			t.Errorf("events stored: %+v", evs)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The store goes on.
	err = s.Update(ctx, func(tx ajar.Tx) error {
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: at, Actor: "test", Action: "after", Subject: "s"})
		return err
	})
	if err != nil {
		t.Fatalf("the next Update: %v", err)
	}
}
