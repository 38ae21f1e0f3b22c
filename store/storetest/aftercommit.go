package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ajar-dev/ajar"
)

// AfterCommit's functions run after fn's writes committed (a View in them sees
// the writes), before Update returns, in order, once; never when fn fails or
// panics. Many writers at once, some failing, are what shares a commit in a
// store that groups them.
func testAfterCommit(t *testing.T, h *harness) {
	ctx := t.Context()
	var order []string
	err := h.s.Update(ctx, func(tx ajar.Tx) error {
		if err := tx.CreateRequest(ctx, simpleRequest("r1", "alice", "web", ajar.StatePending, t0)); err != nil {
			return err
		}
		tx.AfterCommit(func() {
			err := h.s.View(ctx, func(tx ajar.ReadTx) error {
				_, err := tx.GetRequest(ctx, "r1")
				return err
			})
			order = append(order, fmt.Sprintf("first (read: %v)", err))
		})
		tx.AfterCommit(func() { order = append(order, "second") })
		if len(order) != 0 {
			return errors.New("AfterCommit ran its function inside fn")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"first (read: <nil>)", "second"}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("after Update: %q, want %q", order, want)
	}

	ran := false
	err = h.s.Update(ctx, func(tx ajar.Tx) error {
		tx.AfterCommit(func() { ran = true })
		return errBoom
	})
	if !errors.Is(err, errBoom) || ran {
		t.Errorf("fn failed: Update %v, function ran %v; want %v and not run", err, ran, errBoom)
	}
	func() {
		defer func() { recover() }()
		h.s.Update(ctx, func(tx ajar.Tx) error {
			tx.AfterCommit(func() { ran = true })
			panic(errBoom)
		})
	}()
	if ran {
		t.Error("fn panicked: its function ran")
	}

	const writers, each = 16, 8
	var wg sync.WaitGroup
	var runs atomic.Int64
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("c%02d-%d", w, i)
				fail := (w+i)%3 == 0
				calls := 0
				err := h.s.Update(context.Background(), func(tx ajar.Tx) error {
					if err := tx.CreateRequest(ctx, simpleRequest(id, "alice", "web", ajar.StatePending, t0)); err != nil {
						return err
					}
					tx.AfterCommit(func() { calls++; runs.Add(1) })
					if fail {
						return errBoom
					}
					return nil
				})
				switch {
				case fail && (!errors.Is(err, errBoom) || calls != 0):
					errs <- fmt.Errorf("%s failed: Update %v, function ran %d times; want %v, none", id, err, calls, errBoom)
				case !fail && (err != nil || calls != 1):
					errs <- fmt.Errorf("%s: Update %v, function ran %d times before it returned; want nil, once", id, err, calls)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := int64(0)
	for w := range writers {
		for i := range each {
			if (w+i)%3 != 0 {
				want++
			}
		}
	}
	if got := runs.Load(); got != want {
		t.Errorf("%d functions ran, want %d (one per committed Update)", got, want)
	}
}
