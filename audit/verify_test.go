package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

var t0 = time.Date(2025, 3, 1, 9, 30, 0, 123456789, time.UTC)

// makeChain returns a correct log of n events, as a store's AppendAudit would.
func makeChain(n int) []ajar.AuditEvent {
	evs := make([]ajar.AuditEvent, n)
	actions := []string{"request.created", "request.approved", "request.active", "request.expired"}
	var prev []byte
	for i := range evs {
		e := &evs[i]
		*e = ajar.AuditEvent{
			Seq:      int64(i + 1),
			Time:     t0.Add(time.Duration(i) * 1001 * time.Microsecond),
			Actor:    []string{"alice@example.com", "bob@example.com", ajar.ActorSystem}[i%3],
			Action:   actions[i%len(actions)],
			Subject:  fmt.Sprintf("req-%d", i/4),
			Details:  json.RawMessage(fmt.Sprintf(`{"target":"prod-web","n":%d}`, i)),
			PrevHash: prev,
		}
		e.Hash = e.ComputeHash()
		prev = e.Hash
	}
	return evs
}

// rehash recomputes the chain from index i on, as an attacker with write access
// to the database (but no signing key) can.
func rehash(evs []ajar.AuditEvent, i int) {
	for ; i < len(evs); i++ {
		if i == 0 {
			evs[i].PrevHash = nil
		} else {
			evs[i].PrevHash = evs[i-1].Hash
		}
		evs[i].Hash = evs[i].ComputeHash()
	}
}

// pages serves evs as Verify's next function, size events at a time, checking
// that Verify never asks again after the end.
func pages(tb testing.TB, evs []ajar.AuditEvent, size int) func(context.Context) ([]ajar.AuditEvent, error) {
	done := false
	return func(context.Context) ([]ajar.AuditEvent, error) {
		if done {
			tb.Error("next called after it returned an empty page")
		}
		n := min(size, len(evs))
		page := evs[:n]
		evs = evs[n:]
		done = n == 0
		return page, nil
	}
}

func TestVerifyCorrectChain(t *testing.T) {
	evs := makeChain(100)
	for _, size := range []int{1, 7, 100, 1000} {
		got, err := Verify(t.Context(), pages(t, evs, size))
		if err != nil {
			t.Fatalf("page size %d: %v", size, err)
		}
		if got.Events != 100 || !bytes.Equal(got.Head, evs[99].Hash) {
			t.Fatalf("page size %d: got %d events, head %x; want 100, %x", size, got.Events, got.Head, evs[99].Hash)
		}
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	got, err := Verify(t.Context(), pages(t, nil, 10))
	if err != nil || got.Events != 0 || got.Head != nil {
		t.Fatalf("empty log: %+v, %v", got, err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	// Each case changes a correct 100-event chain the way someone with write
	// access to the database could.
	tests := []struct {
		name    string
		tamper  func([]ajar.AuditEvent) []ajar.AuditEvent
		seq     int64
		contain string
	}{
		{"edit actor", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[16].Actor = "mallory@example.com"; return e }, 17, "hash mismatch (edited?)"},
		{"edit action", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[16].Action = "request.denied"; return e }, 17, "hash mismatch (edited?)"},
		{"edit subject", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[16].Subject = "req-999"; return e }, 17, "hash mismatch (edited?)"},
		{"edit details", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			e[16].Details = json.RawMessage(`{"target":"prod-db","n":16}`)
			return e
		}, 17, "hash mismatch (edited?)"},
		{"edit time by 1ns", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[16].Time = e[16].Time.Add(time.Nanosecond); return e }, 17, "hash mismatch (edited?)"},
		{"edit first event", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[0].Actor = "x"; return e }, 1, "hash mismatch (edited?)"},
		{"edit last event", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[99].Actor = "x"; return e }, 100, "hash mismatch (edited?)"},
		{"edit stored hash", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			e[16].Hash = bytes.Clone(e[16].Hash)
			e[16].Hash[0] ^= 1
			return e
		}, 17, "hash mismatch (edited?)"},
		{"edit and rehash one event", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			e[16].Actor = "mallory@example.com"
			e[16].Hash = e[16].ComputeHash()
			return e
		}, 18, "prev_hash does not match event 17"},
		{"delete", func(e []ajar.AuditEvent) []ajar.AuditEvent { return slices.Delete(e, 17, 18) }, 18, "missing (deleted?) — found 19"},
		{"delete three", func(e []ajar.AuditEvent) []ajar.AuditEvent { return slices.Delete(e, 17, 20) }, 18, "missing (deleted?) — found 21"},
		{"delete first", func(e []ajar.AuditEvent) []ajar.AuditEvent { return e[1:] }, 1, "missing (deleted?) — found 2"},
		{"delete first and rehash", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			e = e[1:]
			for i := range e {
				e[i].Seq--
			}
			e[0].Hash = e[0].ComputeHash() // keeps its dangling prev_hash
			rehash(e, 1)
			return e
		}, 1, "prev_hash although it is the first event"},
		{"delete and renumber", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			e = slices.Delete(e, 17, 18)
			for i := 17; i < len(e); i++ {
				e[i].Seq--
			}
			return e
		}, 18, "reordered or replaced"},
		{"swap rows by their seq", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			// UPDATE audit SET seq = CASE seq WHEN 40 THEN 41 ELSE 40 END WHERE seq IN (40, 41):
			// each row keeps its contents and hashes, and the log reads in the new seq order.
			e[39].Seq, e[40].Seq = 41, 40
			e[39], e[40] = e[40], e[39]
			return e
		}, 40, "reordered or replaced"},
		{"swap contents keeping seqs", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			e[39], e[40] = e[40], e[39]
			e[39].Seq, e[40].Seq = 40, 41
			return e
		}, 40, "reordered or replaced"},
		{"swap contents keeping seqs and hash chain columns", func(e []ajar.AuditEvent) []ajar.AuditEvent {
			// Only the described fields move; seq, prev_hash and hash stay in place.
			a, b := &e[39], &e[40]
			a.Time, b.Time = b.Time, a.Time
			a.Actor, b.Actor = b.Actor, a.Actor
			a.Action, b.Action = b.Action, a.Action
			a.Subject, b.Subject = b.Subject, a.Subject
			a.Details, b.Details = b.Details, a.Details
			return e
		}, 40, "hash mismatch (edited?)"},
		{"repeat an event", func(e []ajar.AuditEvent) []ajar.AuditEvent { return slices.Insert(e, 30, e[29]) }, 30, "out of order or repeated"},
		{"out of order", func(e []ajar.AuditEvent) []ajar.AuditEvent { e[40], e[41] = e[41], e[40]; return e }, 41, "missing (deleted?) — found 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 10, 1000} {
				evs := tt.tamper(makeChain(100))
				_, err := Verify(t.Context(), pages(t, evs, size))
				var bad *BadEventError
				if !errors.As(err, &bad) {
					t.Fatalf("page size %d: err = %v, want *BadEventError", size, err)
				}
				if bad.Seq != tt.seq || !strings.Contains(err.Error(), tt.contain) {
					t.Fatalf("page size %d: %q; want event %d, %q", size, err, tt.seq, tt.contain)
				}
				if want := fmt.Sprintf("event %d: ", tt.seq); !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("message %q does not start with %q", err, want)
				}
			}
		})
	}
}

func TestVerifyCheckpoints(t *testing.T) {
	s := testSigner(t, "ajar.example.com/audit")
	evs := makeChain(100)
	cp := func(size int64, head []byte) *Checkpoint {
		t.Helper()
		signed, err := s.Sign(size, head)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseCheckpoint(signed, s.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	at50, at100 := cp(50, evs[49].Hash), cp(100, evs[99].Hash)

	got, err := Verify(t.Context(), pages(t, evs, 7), at100, at50, at50)
	if err != nil || got.Events != 100 {
		t.Fatalf("intact log with checkpoints: %+v, %v", got, err)
	}

	// Truncated: the last 10 events removed. The chain alone cannot tell.
	if _, err := Verify(t.Context(), pages(t, evs[:90], 7)); err != nil {
		t.Fatalf("truncated log without a checkpoint: %v", err)
	}
	_, err = Verify(t.Context(), pages(t, evs[:90], 7), at50, at100)
	var trunc *TruncatedError
	if !errors.As(err, &trunc) || trunc.Checkpoint != 100 || trunc.Events != 90 ||
		err.Error() != "log truncated: checkpoint covers 100 events, log has 90" {
		t.Fatalf("truncated log: err = %v", err)
	}
	_, err = Verify(t.Context(), pages(t, nil, 7), at50)
	if !errors.As(err, &trunc) || trunc.Events != 0 {
		t.Fatalf("emptied log: err = %v", err)
	}

	// Rewritten: event 20 edited and everything after it rehashed. Only a
	// checkpoint past event 20 can tell.
	rewritten := makeChain(100)
	rewritten[19].Details = json.RawMessage(`{"target":"prod-web","n":19,"approved_by":"nobody"}`)
	rehash(rewritten, 19)
	if _, err := Verify(t.Context(), pages(t, rewritten, 7)); err != nil {
		t.Fatalf("consistently rehashed log: %v", err)
	}
	if _, err := Verify(t.Context(), pages(t, rewritten, 7), cp(10, evs[9].Hash)); err != nil {
		t.Fatalf("rewrite after the checkpoint: %v", err)
	}
	_, err = Verify(t.Context(), pages(t, rewritten, 7), at100, at50)
	var rw *RewrittenError
	if !errors.As(err, &rw) || rw.Seq != 50 || err.Error() != "checkpoint mismatch at event 50: history rewritten" {
		t.Fatalf("rewritten log: err = %v", err)
	}

	// Truncated and then extended with new events: the rewrite shows at the checkpoint.
	regrown := append(slices.Clone(evs[:90]), makeChain(100)[90:]...)
	regrown[90].Actor = "mallory@example.com"
	rehash(regrown, 90)
	_, err = Verify(t.Context(), pages(t, regrown, 7), at100)
	if !errors.As(err, &rw) || rw.Seq != 100 {
		t.Fatalf("truncated and regrown log: err = %v", err)
	}

	// A break in the chain before a checkpoint is reported as such.
	edited := makeChain(100)
	edited[9].Actor = "x"
	_, err = Verify(t.Context(), pages(t, edited, 7), at50)
	var bad *BadEventError
	if !errors.As(err, &bad) || bad.Seq != 10 {
		t.Fatalf("edited log with checkpoint: err = %v", err)
	}
}

func TestVerifyPageErrorAndCancel(t *testing.T) {
	boom := errors.New("database is locked")
	evs := makeChain(10)
	calls := 0
	_, err := Verify(t.Context(), func(context.Context) ([]ajar.AuditEvent, error) {
		calls++
		if calls == 2 {
			return nil, boom
		}
		return evs[:5], nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "after 5") {
		t.Fatalf("err = %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Verify(ctx, pages(t, evs, 5)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
}

// fakeStore serves ListAudit from a slice, with the store contract's paging; the
// embedded nil ajar.Tx panics on any other method.
type fakeStore struct {
	mu  sync.Mutex
	evs []ajar.AuditEvent
}

type fakeTx struct {
	ajar.Tx
	s *fakeStore
}

func (s *fakeStore) View(_ context.Context, fn func(ajar.ReadTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(fakeTx{s: s})
}

func (s *fakeStore) Update(_ context.Context, fn func(ajar.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(fakeTx{s: s})
}

func (s *fakeStore) Close() error { return nil }

func (tx fakeTx) ListAudit(_ context.Context, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	limit := orDefault(f.Limit, 1000)
	var out []ajar.AuditEvent
	for _, e := range tx.s.evs {
		if e.Seq > f.AfterSeq && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func TestStorePages(t *testing.T) {
	evs := makeChain(2500)
	st := &fakeStore{evs: evs}
	for _, size := range []int{0, 1, 999} {
		got, err := Verify(t.Context(), StorePages(st, size))
		if err != nil || got.Events != 2500 || !bytes.Equal(got.Head, evs[2499].Hash) {
			t.Fatalf("page size %d: %+v, %v", size, got, err)
		}
	}
	st.evs = slices.Delete(slices.Clone(evs), 1000, 1001) // the first event of the second default page
	_, err := Verify(t.Context(), StorePages(st, 0))
	var bad *BadEventError
	if !errors.As(err, &bad) || bad.Seq != 1001 {
		t.Fatalf("deleted event at a page boundary: err = %v", err)
	}
}

var benchChain = sync.OnceValue(func() []ajar.AuditEvent { return makeChain(1_000_000) })

// BenchmarkVerify verifies a correct 1,000,000-event log held in memory, in
// pages of 1000 as StorePages reads them, and reports the cost per event.
// The target is under 3 s for the whole log, reading from the store included.
func BenchmarkVerify(b *testing.B) {
	evs := benchChain()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := Verify(b.Context(), pages(b, evs, 1000))
		if err != nil || got.Events != int64(len(evs)) {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*int64(len(evs))), "ns/event")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/log")
}
