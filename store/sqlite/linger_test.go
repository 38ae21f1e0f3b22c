package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// A batch that waits for the callers of a larger batch before it (see
// endUpdate) still commits when none comes, and one that is joined commits
// them all: nobody's Update is left waiting, and every write is stored.
func TestLingeringBatchCommits(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	write := func(action string) chan error {
		done := make(chan error, 1)
		go func() {
			done <- s.Update(ctx, func(tx ajar.Tx) error {
				_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: time.Now(), Actor: "test", Action: action, Subject: "s"})
				return err
			})
		}()
		return done
	}
	wait := func(what string, done chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: Update did not return", what)
		}
	}
	s.wmu.Lock()
	s.last = 8 // as if the last batch had eight callers
	s.wmu.Unlock()
	wait("alone", write("a.alone"))

	s.wmu.Lock()
	s.last = 8
	s.wmu.Unlock()
	first, second := write("a.first"), write("a.second")
	wait("first", first)
	wait("second", second)

	var n int
	err = s.View(ctx, func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(ctx, ajar.AuditFilter{})
		n = len(evs)
		return err
	})
	if err != nil || n != 3 {
		t.Fatalf("%d events stored (%v), want 3", n, err)
	}
}
