package readmodel

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/ajar-dev/ajar"
)

// countingStore counts the ListExtensions calls of its Views.
type countingStore struct {
	ajar.Store
	calls *atomic.Int64
}

type countingTx struct {
	ajar.ReadTx
	calls *atomic.Int64
}

func (s countingStore) View(ctx context.Context, fn func(ajar.ReadTx) error) error {
	return s.Store.View(ctx, func(tx ajar.ReadTx) error { return fn(countingTx{tx, s.calls}) })
}

func (tx countingTx) ListExtensions(ctx context.Context, id string) ([]ajar.Extension, error) {
	tx.calls.Add(1)
	return tx.ReadTx.ListExtensions(ctx, id)
}

// TestInboxReadsPendingExtensionsOnce: the inbox and the Awaiting badge find
// the pending extensions in one store read, not one lookup per active
// request (issue 14).
func TestInboxReadsPendingExtensionsOnce(t *testing.T) {
	e, r := extendEnv(t)
	// More active requests with no extension: none is looked up.
	for range 3 {
		o := e.create(t, "alice", "db", "30m")
		for _, a := range []string{"bob", "dave"} {
			if _, err := e.svc.Approve(t.Context(), e.users[a], o.ID, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	var calls atomic.Int64
	rm := New(Config{Core: e.svc, Store: countingStore{e.store, &calls}, Policy: e.pol, Providers: e.provs, Now: e.clock.Now, Signer: e.signer})
	items, err := rm.Inbox(t.Context(), e.users["bob"])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, it := range items {
		found = found || (it.Request.ID == r.ID && it.Extension != nil && it.Extension.Seq == 1)
	}
	if !found {
		t.Fatalf("bob's inbox lacks the pending extension: %+v", items)
	}
	n, err := rm.Awaiting(t.Context(), e.users["bob"])
	if err != nil || n != 1 {
		t.Fatalf("Awaiting = %d, %v, want 1", n, err)
	}
	if c := calls.Load(); c != 0 {
		t.Errorf("%d ListExtensions calls, want none (one ListPendingExtensions read)", c)
	}
}
