package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// acquire runs AcquireLease in its own Update and fails the test on error.
func (h *harness) acquire(t testing.TB, name, owner string, until time.Time) bool {
	t.Helper()
	var got bool
	h.update(t, func(tx ajar.Tx) error {
		var err error
		got, err = tx.AcquireLease(t.Context(), name, owner, until)
		return err
	})
	return got
}

// release runs ReleaseLease in its own Update and fails the test on error.
func (h *harness) release(t testing.TB, name, owner string) bool {
	t.Helper()
	var got bool
	h.update(t, func(tx ajar.Tx) error {
		var err error
		got, err = tx.ReleaseLease(t.Context(), name, owner)
		return err
	})
	return got
}

// testLeases: acquire, contend, renew, expire (by the store's clock), release,
// and the arguments refused.
func testLeases(t *testing.T, h *harness) {
	const key = "aws-security-group|sg-1|tcp|22-22|203.0.113.7/32"
	h.clock.Set(t0)
	if !h.acquire(t, key, "a", t0.Add(time.Minute)) {
		t.Fatal("a free lease was not acquired")
	}
	if h.acquire(t, key, "b", t0.Add(time.Hour)) {
		t.Fatal("b acquired a lease a holds")
	}
	if !h.acquire(t, "other", "b", t0.Add(time.Minute)) {
		t.Fatal("a lease of another name was not acquired")
	}
	// The holder renews: its end moves, so b cannot take it at the old end.
	if !h.acquire(t, key, "a", t0.Add(2*time.Minute)) {
		t.Fatal("the holder could not renew its lease")
	}
	h.clock.Set(t0.Add(time.Minute))
	if h.acquire(t, key, "b", t0.Add(time.Hour)) {
		t.Fatal("b acquired a renewed lease at its old end")
	}
	// Only the holder releases.
	if h.release(t, key, "b") {
		t.Fatal("b released a's lease")
	}
	if h.acquire(t, key, "b", t0.Add(time.Hour)) {
		t.Fatal("b acquired the lease after its own release of a's lease")
	}
	// At its end (by the store's clock) the lease is free; a, too late, can
	// neither release nor renew what b took.
	h.clock.Set(t0.Add(2 * time.Minute))
	if !h.acquire(t, key, "b", t0.Add(3*time.Minute)) {
		t.Fatal("b did not acquire an expired lease")
	}
	if h.release(t, key, "a") {
		t.Fatal("a released the lease b took after a's expired")
	}
	if h.acquire(t, key, "a", t0.Add(3*time.Minute)) {
		t.Fatal("a renewed the lease b holds")
	}
	if !h.release(t, key, "b") {
		t.Fatal("b could not release its lease")
	}
	if h.release(t, key, "b") {
		t.Fatal("a released lease was released twice")
	}
	if !h.acquire(t, key, "a", t0.Add(3*time.Minute)) {
		t.Fatal("a released lease was not free")
	}

	// Bad arguments are EINVALID and leave the transaction usable.
	h.update(t, func(tx ajar.Tx) error {
		now := tx.Now()
		for _, c := range []struct {
			name, owner string
			until       time.Time
		}{
			{"", "a", now.Add(time.Minute)},
			{"x", "", now.Add(time.Minute)},
			{"x", "a", now},
			{"x", "a", now.Add(-time.Second)},
		} {
			if _, err := tx.AcquireLease(t.Context(), c.name, c.owner, c.until); ajar.ErrorCode(err) != ajar.EINVALID {
				t.Errorf("AcquireLease(%q, %q, now%+v) = %v, want EINVALID", c.name, c.owner, c.until.Sub(now), err)
			}
		}
		ok, err := tx.AcquireLease(t.Context(), "after-invalid", "a", now.Add(time.Minute))
		if err != nil || !ok {
			return fmt.Errorf("AcquireLease after EINVALID: %v, %v", ok, err)
		}
		return nil
	})

	// Contention: many owners at once, exactly one wins a free lease.
	h.clock.Set(t0.Add(time.Hour))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range 16 {
		wg.Go(func() {
			owner := fmt.Sprintf("owner-%d", i)
			var got bool
			err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
				var err error
				got, err = tx.AcquireLease(t.Context(), "contended", owner, t0.Add(2*time.Hour))
				return err
			})
			if err != nil {
				t.Errorf("AcquireLease by %s: %v", owner, err)
			}
			if got {
				mu.Lock()
				winners = append(winners, owner)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d owners acquired one free lease at once: %v", len(winners), winners)
	}

	// A lease acquired in a transaction that rolls back is not held.
	errRollback := fmt.Errorf("roll back")
	if err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
		if ok, err := tx.AcquireLease(t.Context(), "rolled-back", "a", t0.Add(2*time.Hour)); err != nil || !ok {
			t.Errorf("AcquireLease: %v, %v", ok, err)
		}
		return errRollback
	}); err != errRollback {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	if !h.acquire(t, "rolled-back", "b", t0.Add(2*time.Hour)) {
		t.Fatal("a lease acquired in a rolled-back transaction is held")
	}
}
