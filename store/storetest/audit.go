package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

func testAuditChain(t *testing.T, h *harness) {
	h.view(t, func(tx ajar.ReadTx) error {
		seq, hash, err := tx.AuditHead(t.Context())
		if seq != 0 || hash != nil || err != nil {
			t.Errorf("AuditHead on an empty log = %d, %x, %v; want 0, nil, nil", seq, hash, err)
		}
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{})
		if err != nil || len(evs) != 0 {
			t.Errorf("ListAudit on an empty log = %v, %v", evs, err)
		}
		return nil
	})

	var appended []ajar.AuditEvent
	appendOne := func(tx ajar.Tx, i int) error {
		e := ajar.AuditEvent{
			Time:    t0.Add(time.Duration(i) * time.Second),
			Actor:   "alice@example.com",
			Action:  "request.created",
			Subject: fmt.Sprintf("req-%d", i%3),
			Details: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
			// Whatever the caller puts here is replaced.
			Seq: 99, PrevHash: []byte("forged"), Hash: []byte("forged"),
		}
		got, err := tx.AppendAudit(t.Context(), e)
		if err != nil {
			return err
		}
		if got.Seq != int64(len(appended)+1) {
			t.Errorf("AppendAudit set Seq %d, want %d", got.Seq, len(appended)+1)
		}
		if !bytes.Equal(got.Hash, got.ComputeHash()) {
			t.Errorf("AppendAudit returned Hash %x, ComputeHash gives %x", got.Hash, got.ComputeHash())
		}
		appended = append(appended, got)
		return nil
	}
	// One event per transaction, then several in one transaction.
	for i := range 4 {
		h.update(t, func(tx ajar.Tx) error { return appendOne(tx, i) })
	}
	h.update(t, func(tx ajar.Tx) error {
		for i := 4; i < 9; i++ {
			if err := appendOne(tx, i); err != nil {
				return err
			}
			// The head moves inside the transaction.
			seq, hash, err := tx.AuditHead(t.Context())
			if err != nil {
				return err
			}
			last := appended[len(appended)-1]
			if seq != last.Seq || !bytes.Equal(hash, last.Hash) {
				t.Errorf("AuditHead inside Update = %d, %x; want %d, %x", seq, hash, last.Seq, last.Hash)
			}
		}
		return nil
	})
	if len(appended[0].PrevHash) != 0 {
		t.Fatalf("first event PrevHash = %x, want empty", appended[0].PrevHash)
	}

	stored := h.auditAll(t)
	checkChain(t, stored)
	if len(stored) != len(appended) {
		t.Fatalf("stored %d events, appended %d", len(stored), len(appended))
	}
	for i := range stored {
		if !bytes.Equal(stored[i].Hash, appended[i].Hash) {
			t.Fatalf("event %d: stored hash differs from the one AppendAudit returned", i+1)
		}
	}
	h.view(t, func(tx ajar.ReadTx) error {
		seq, hash, err := tx.AuditHead(t.Context())
		last := stored[len(stored)-1]
		if err != nil || seq != last.Seq || !bytes.Equal(hash, last.Hash) {
			t.Errorf("AuditHead = %d, %x, %v; want %d, %x", seq, hash, err, last.Seq, last.Hash)
		}
		return nil
	})
}

// testAuditExact checks that what is read back hashes exactly as what was appended,
// whatever zone the time was in and however the details JSON was spaced.
func testAuditExact(t *testing.T, h *harness) {
	in := []ajar.AuditEvent{
		{Time: t0.In(time.FixedZone("IST", 5*3600+30*60)), Actor: "a", Action: "x", Subject: "s",
			Details: json.RawMessage("{\"b\": 1,\n  \"a\" : [1, 2.50, \"<&>\"], \"u\": \"\\u00e9 é\"}")},
		{Time: t0.Truncate(time.Second), Actor: "ajar", Action: "request.expired", Subject: "s"}, // no fraction, no details
		{Time: t0.Truncate(time.Millisecond).Add(100 * time.Microsecond), Actor: "ünï", Action: "y", Subject: "s",
			Details: json.RawMessage(`"just a string"`)},
		{Time: t0.Add(time.Nanosecond), Actor: "", Action: "", Subject: "", Details: json.RawMessage(`[]`)},
		{Time: time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -12*3600)), Actor: "a", Action: "b", Subject: "s"},
	}
	var out []ajar.AuditEvent
	h.update(t, func(tx ajar.Tx) error {
		for _, e := range in {
			got, err := tx.AppendAudit(t.Context(), e)
			if err != nil {
				return err
			}
			out = append(out, got)
		}
		return nil
	})
	stored := h.auditAll(t)
	checkChain(t, stored)
	for i, e := range stored {
		if !e.Time.Equal(in[i].Time) {
			t.Errorf("event %d time %v, want %v", e.Seq, e.Time, in[i].Time)
		}
		if e.Time.Location() != time.UTC {
			t.Errorf("event %d time in %v, want UTC", e.Seq, e.Time.Location())
		}
		if !bytes.Equal(e.Details, in[i].Details) {
			t.Errorf("event %d details %q, want exactly %q", e.Seq, e.Details, in[i].Details)
		}
		if e.Actor != in[i].Actor || e.Action != in[i].Action || e.Subject != in[i].Subject {
			t.Errorf("event %d = %+v, want %+v", e.Seq, e, in[i])
		}
		if !bytes.Equal(e.Hash, out[i].Hash) {
			t.Errorf("event %d: hash read back %x, appended %x", e.Seq, e.Hash, out[i].Hash)
		}
		// Hashing the caller's original event (in its own zone) gives the same hash.
		orig := in[i]
		orig.Seq, orig.PrevHash = e.Seq, e.PrevHash
		if !bytes.Equal(orig.ComputeHash(), e.Hash) {
			t.Errorf("event %d: stored hash differs from the hash of the event as given", e.Seq)
		}
	}
}

func testAuditFilter(t *testing.T, h *harness) {
	h.update(t, func(tx ajar.Tx) error {
		for i := range 20 {
			subj := "even"
			if i%2 == 1 {
				subj = "odd"
			}
			if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: t0, Actor: "a", Action: "x", Subject: subj}); err != nil {
				return err
			}
		}
		return nil
	})
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
		{ajar.AuditFilter{Subject: "odd"}, []int64{2, 4, 6, 8, 10, 12, 14, 16, 18, 20}},
		{ajar.AuditFilter{Subject: "odd", AfterSeq: 10}, []int64{12, 14, 16, 18, 20}},
		{ajar.AuditFilter{Subject: "odd", AfterSeq: 11, Limit: 2}, []int64{12, 14}},
		{ajar.AuditFilter{Subject: "even", Limit: 3}, []int64{1, 3, 5}},
		{ajar.AuditFilter{AfterSeq: 17}, []int64{18, 19, 20}},
		{ajar.AuditFilter{AfterSeq: 5, Limit: 4}, []int64{6, 7, 8, 9}},
		{ajar.AuditFilter{AfterSeq: 20}, nil},
		{ajar.AuditFilter{Subject: "none"}, nil},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			got, err := tx.ListAudit(t.Context(), c.f)
			if err != nil {
				return err
			}
			if fmt.Sprint(seqs(got)) != fmt.Sprint(c.want) {
				t.Errorf("ListAudit(%+v) = %v, want %v", c.f, seqs(got), c.want)
			}
		}
		return nil
	})
	// Paging by AfterSeq visits every event once, in order.
	all := h.auditAll(t)
	if len(all) != 20 {
		t.Fatalf("paged %d events, want 20", len(all))
	}
	checkChain(t, all)
}

func testAuditDefaultLimit(t *testing.T, h *harness) {
	const n = 1005
	h.update(t, func(tx ajar.Tx) error {
		for range n {
			if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: t0, Actor: "a", Action: "x", Subject: "s"}); err != nil {
				return err
			}
		}
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{})
		if err != nil {
			return err
		}
		if len(evs) != 1000 {
			t.Errorf("default limit returned %d events, want 1000", len(evs))
		}
		// Verifiers page with large limits.
		evs, err = tx.ListAudit(t.Context(), ajar.AuditFilter{Limit: 100000})
		if err != nil {
			return err
		}
		if len(evs) != n {
			t.Errorf("Limit 100000 returned %d events, want %d", len(evs), n)
		}
		checkChain(t, evs)
		return nil
	})
}

func testAuditRejectsBadEvents(t *testing.T, h *harness) {
	bad := []struct {
		name string
		e    ajar.AuditEvent
	}{
		{"zero time", ajar.AuditEvent{Actor: "a", Action: "x"}},
		{"details not JSON", ajar.AuditEvent{Time: t0, Actor: "a", Action: "x", Details: json.RawMessage(`{"a":`)}},
	}
	for _, b := range bad {
		err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
			_, err := tx.AppendAudit(t.Context(), b.e)
			return err
		})
		if ajar.ErrorCode(err) != ajar.EINVALID {
			t.Errorf("%s: AppendAudit error %v, want code %s", b.name, err, ajar.EINVALID)
		}
	}
	if evs := h.auditAll(t); len(evs) != 0 {
		t.Fatalf("rejected events were stored: %+v", evs)
	}
}
