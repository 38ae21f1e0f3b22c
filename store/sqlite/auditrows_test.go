package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
)

// ReadAuditRows gives each event of its range as ListAudit reads it, with
// the time as the text that was hashed, in Seq order; fn's error stops it.
func TestReadAuditRows(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	if err := s.Update(ctx, func(tx ajar.Tx) error {
		for i, d := range []string{"", `{"a":1}`, "", `{"b":"x"}`, "", "", `{}`} {
			e := ajar.AuditEvent{Time: at.Add(time.Duration(i) * 1500 * time.Millisecond), Actor: "test", Action: "a.b", Subject: "s"}
			if d != "" {
				e.Details = []byte(d)
			}
			if _, err := tx.AppendAudit(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var all []ajar.AuditEvent
	if err := s.View(ctx, func(tx ajar.ReadTx) (err error) {
		all, err = tx.ListAudit(ctx, ajar.AuditFilter{Limit: 100})
		return err
	}); err != nil || len(all) != 7 {
		t.Fatalf("ListAudit: %d events, %v", len(all), err)
	}
	read := func(after, upTo int64) []audit.RawEvent {
		t.Helper()
		var got []audit.RawEvent
		err := s.ReadAuditRows(ctx, after, upTo, func(e *audit.RawEvent) error {
			// Valid during the call only: a copy.
			got = append(got, audit.RawEvent{Seq: e.Seq, Time: bytes.Clone(e.Time), Actor: bytes.Clone(e.Actor), Action: bytes.Clone(e.Action),
				Subject: bytes.Clone(e.Subject), Details: bytes.Clone(e.Details), PrevHash: bytes.Clone(e.PrevHash), Hash: bytes.Clone(e.Hash)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, r := range [][2]int64{{0, 7}, {0, 100}, {2, 5}, {6, 7}, {7, 9}, {3, 3}} {
		got := read(r[0], r[1])
		want := all[min(r[0], 7):min(r[1], 7)]
		if len(got) != len(want) {
			t.Fatalf("(%d, %d]: %d events, want %d", r[0], r[1], len(got), len(want))
		}
		for i, g := range got {
			w := want[i]
			if g.Seq != w.Seq || string(g.Time) != w.Time.Format(time.RFC3339Nano) || string(g.Actor) != w.Actor || string(g.Action) != w.Action ||
				string(g.Subject) != w.Subject || !bytes.Equal(g.Details, w.Details) || !bytes.Equal(g.PrevHash, w.PrevHash) ||
				!bytes.Equal(g.Hash, w.Hash) || (g.PrevHash == nil) != (w.Seq == 1) {
				t.Errorf("(%d, %d]: got %+v, want %+v", r[0], r[1], g, w)
			}
		}
	}
	// The rows make the stream Verify accepts.
	var recs audit.Records
	if err := s.ReadAuditRows(ctx, 0, 7, func(e *audit.RawEvent) error { recs.Add(e); return nil }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := audit.NewStreamWriter(&buf)
	w.Records(&recs)
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	if res, err := audit.VerifyStream(ctx, &buf); err != nil || res.Events != 7 {
		t.Fatalf("VerifyStream = %+v, %v", res, err)
	}

	stop := errors.New("stop")
	n := 0
	err = s.ReadAuditRows(ctx, 0, 7, func(*audit.RawEvent) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("fn's error: %v after %d calls, want stop after 1", err, n)
	}
}

// An event edited in the file (its trigger dropped, as someone with the file
// can) goes out as it now is, and the stream fails to verify; a cancelled
// context fails the read.
func TestReadAuditRowsTampered(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ajar.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx ajar.Tx) error {
		for i := range 5 {
			e := ajar.AuditEvent{Time: time.Date(2026, 3, 1, 9, 0, i, 0, time.UTC), Actor: "test", Action: "a.b", Subject: "s"}
			if _, err := tx.AppendAudit(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	verify := func() error {
		var recs audit.Records
		if err := s.ReadAuditRows(ctx, 0, 5, func(e *audit.RawEvent) error { recs.Add(e); return nil }); err != nil {
			return err
		}
		var buf bytes.Buffer
		w := audit.NewStreamWriter(&buf)
		w.Records(&recs)
		w.End()
		_, err := audit.VerifyStream(ctx, &buf)
		return err
	}
	if err := verify(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path) // another writer on the file
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	edit := func(set string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, `DROP TRIGGER IF EXISTS audit_events_no_update; UPDATE audit_events SET `+set+` WHERE seq = 3`); err != nil {
			t.Fatal(err)
		}
	}
	edit(`actor = 'mallory'`)
	var bad *audit.BadEventError
	if err := verify(); !errors.As(err, &bad) || bad.Seq != 3 {
		t.Errorf("edited actor: %v, want a bad event 3", err)
	}
	// Cancelled during the read: it stops within about a thousand rows.
	if err := s.Update(ctx, func(tx ajar.Tx) error {
		for range 3000 {
			if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: time.Now(), Actor: "test", Action: "a.b", Subject: "s"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	n := 0
	err = s.ReadAuditRows(cctx, 0, 3005, func(*audit.RawEvent) error { n++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || n > 1100 {
		t.Errorf("cancelled: %v after %d rows", err, n)
	}
}
