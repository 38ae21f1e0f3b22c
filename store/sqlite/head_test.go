package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// The batch keeps the audit chain head in memory: an Update that fails inside
// a batch must leave it where the events that stayed put it, so that the next
// Update in the same batch chains to those, not to the rolled-back ones.
func TestBatchHeadAfterARolledBackUpdate(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	appendOne := func(tx ajar.Tx, action string) error {
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: at, Actor: "test", Action: action, Subject: "s"})
		return err
	}
	// waitPending waits until n Updates wait for the writer, so that the
	// batch stays open for them.
	waitPending := func(n int64) {
		for deadline := time.Now().Add(time.Minute); s.pending.Load() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("no Update came to wait for the writer")
				return
			}
		}
	}
	boom := errors.New("boom")
	inA, inB := make(chan struct{}), make(chan struct{})
	errs := make(chan error, 3)
	go func() {
		errs <- s.Update(ctx, func(tx ajar.Tx) error {
			close(inA)
			defer waitPending(1) // B waits: the batch stays open
			return appendOne(tx, "a")
		})
	}()
	<-inA
	go func() {
		errs <- s.Update(ctx, func(tx ajar.Tx) error {
			close(inB)
			defer waitPending(1) // C waits: same batch
			if err := appendOne(tx, "b"); err != nil {
				return err
			}
			return boom // rolled back
		})
	}()
	<-inB
	go func() { errs <- s.Update(context.Background(), func(tx ajar.Tx) error { return appendOne(tx, "c") }) }()
	var failed int
	for range 3 {
		if err := <-errs; errors.Is(err, boom) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d Updates failed, want 1", failed)
	}
	var evs []ajar.AuditEvent
	s.View(ctx, func(tx ajar.ReadTx) error { evs, err = tx.ListAudit(ctx, ajar.AuditFilter{}); return err })
	if len(evs) != 2 || evs[0].Action != "a" || evs[1].Action != "c" {
		t.Fatalf("events %+v, want a then c", evs)
	}
	if evs[1].Seq != evs[0].Seq+1 || string(evs[1].PrevHash) != string(evs[0].Hash) || string(evs[1].Hash) != string(evs[1].ComputeHash()) {
		t.Errorf("c (seq %d) does not chain to a (seq %d): the chain is broken", evs[1].Seq, evs[0].Seq)
	}
}
