package readmodel

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
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

// TestExportAuditRecords: the records of every page, from a store that hands
// its rows over (store/sqlite) and from one that only lists events, make the
// stream of the events ExportAudit gives, which verifies; the same refusals
// and errors as ExportAudit.
func TestExportAuditRecords(t *testing.T) {
	defer func(n int64) { auditStreamPage = n }(auditStreamPage)
	auditStreamPage = 3
	e := newEnv(t)
	for range 8 {
		e.create(t, "alice", "web", "30m")
	}
	admin := e.users["root"]
	if _, ok := any(e.store).(AuditRowReader); !ok {
		t.Fatal("store/sqlite has no ReadAuditRows")
	}
	listOnly := New(Config{Core: e.rm.core, Store: struct{ ajar.Store }{e.store}, Policy: e.pol, Providers: e.rm.providers})
	for name, rm := range map[string]*Reader{"rows": e.rm, "events": listOnly} {
		for _, after := range []int64{0, 1, 5} {
			var evs []ajar.AuditEvent
			if err := rm.ExportAudit(t.Context(), admin, after, func(page []ajar.AuditEvent) error {
				evs = append(evs, page...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			w := audit.NewStreamWriter(&want)
			for i := range evs {
				w.Event(&evs[i])
			}
			w.End()
			var got bytes.Buffer
			w = audit.NewStreamWriter(&got)
			pages := 0
			err := rm.ExportAuditRecords(t.Context(), admin, after, func(r *audit.Records) error {
				pages++
				if r.N > int(auditStreamPage) || r.N == 0 {
					t.Errorf("%s: a page of %d events", name, r.N)
				}
				if pages == 1 { // appended meanwhile: not in this export
					e.create(t, "alice", "web", "30m")
				}
				return w.Records(r)
			})
			if err != nil {
				t.Fatal(err)
			}
			w.End()
			if !bytes.Equal(got.Bytes(), want.Bytes()) || len(evs) <= int(auditStreamPage) || pages < 2 {
				t.Fatalf("%s, after %d: %d pages, a stream of %d bytes unlike the %d events' (%d bytes)", name, after, pages, got.Len(), len(evs), want.Len())
			}
			if after == 0 {
				if res, err := audit.VerifyStream(t.Context(), &got); err != nil || res.Events != int64(len(evs)) {
					t.Fatalf("%s: VerifyStream = %+v, %v", name, res, err)
				}
			}
		}
		called := false
		err := rm.ExportAuditRecords(t.Context(), e.users["alice"], 0, func(*audit.Records) error { called = true; return nil })
		if ajar.ErrorCode(err) != ajar.EFORBIDDEN || called {
			t.Errorf("%s: alice: %v (fn called: %v)", name, err, called)
		}
		stop := errors.New("stop")
		n := 0
		err = rm.ExportAuditRecords(t.Context(), admin, 0, func(*audit.Records) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("%s: fn's error: %v after %d pages", name, err, n)
		}
	}
}
