package sqlite

import (
	"bytes"
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
