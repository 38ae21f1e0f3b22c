package readmodel

import (
	"errors"
	"testing"

	"github.com/ajar-dev/ajar"
)

// TestExportAudit: an admin gets every event after after, in order, in pages
// read ahead in parallel, up to the head when it began; anyone else is
// refused before any event; fn's error stops it.
func TestExportAudit(t *testing.T) {
	defer func(n int64) { auditStreamPage = n }(auditStreamPage)
	auditStreamPage = 3
	e := newEnv(t)
	for range 8 {
		e.create(t, "alice", "web", "30m")
	}
	var head int64
	if err := e.store.View(t.Context(), func(tx ajar.ReadTx) (err error) {
		head, _, err = tx.AuditHead(t.Context())
		return err
	}); err != nil || head < 8 {
		t.Fatalf("head %d, %v", head, err)
	}
	admin := e.users["root"]
	for _, after := range []int64{0, 1, 5, head - 1, head} {
		var seqs []int64
		pages := 0
		err := e.rm.ExportAudit(t.Context(), admin, after, func(page []ajar.AuditEvent) error {
			pages++
			if len(page) > int(auditStreamPage) {
				t.Errorf("a page of %d events", len(page))
			}
			for _, ev := range page {
				seqs = append(seqs, ev.Seq)
			}
			// Appended meanwhile: not in this export.
			e.create(t, "alice", "web", "30m")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(seqs)) != head-after {
			t.Fatalf("after %d: %d events, want %d: %v", after, len(seqs), head-after, seqs)
		}
		for i, s := range seqs {
			if s != after+int64(i)+1 {
				t.Fatalf("after %d: events %v out of order", after, seqs)
			}
		}
		if head-after > auditStreamPage && pages < 2 {
			t.Errorf("after %d: %d pages", after, pages)
		}
		if err := e.store.View(t.Context(), func(tx ajar.ReadTx) (err error) {
			head, _, err = tx.AuditHead(t.Context())
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	called := false
	err := e.rm.ExportAudit(t.Context(), e.users["alice"], 0, func([]ajar.AuditEvent) error { called = true; return nil })
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN || called {
		t.Errorf("alice: %v (fn called: %v)", err, called)
	}
	stop := errors.New("stop")
	n := 0
	err = e.rm.ExportAudit(t.Context(), admin, 0, func([]ajar.AuditEvent) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: %v after %d pages", err, n)
	}
}
