package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// testPendingExtensions checks ListPendingExtensions: every pending extension
// of every request, by request then Seq, with all its fields, and none that
// was decided (even one that was pending when written and decided later).
func testPendingExtensions(t *testing.T, h *harness) {
	ctx := t.Context()
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.ListPendingExtensions(ctx)
		if err != nil || len(got) != 0 {
			t.Errorf("empty store: %v, %v", got, err)
		}
		return nil
	})
	approvals := []ajar.Approval{{Approver: "bob@example.com", Step: 0, Decision: ajar.DecisionApprove, Comment: "ok", At: t0.Add(7)}}
	exts := []*ajar.Extension{
		{RequestID: "req-b", By: time.Hour, Reason: "more", RequestedBy: "alice@example.com", RequestedAt: t0, State: ajar.ExtensionPending, Approvals: approvals},
		{RequestID: "req-a", By: time.Minute, RequestedBy: "carol@example.com", RequestedAt: t0.Add(time.Second), State: ajar.ExtensionApplied, DecidedAt: tp(t0)},
		{RequestID: "req-a", By: 2 * time.Minute, RequestedBy: "carol@example.com", RequestedAt: t0.Add(2 * time.Second), State: ajar.ExtensionPending},
		{RequestID: "req-b", By: time.Hour, RequestedBy: "alice@example.com", RequestedAt: t0.Add(3 * time.Second), State: ajar.ExtensionPending},
		{RequestID: "req-c", By: time.Hour, RequestedBy: "dave@example.com", RequestedAt: t0, State: ajar.ExtensionPending},
	}
	h.update(t, func(tx ajar.Tx) error {
		for _, e := range exts {
			if err := tx.CreateExtension(ctx, e); err != nil {
				return err
			}
		}
		// Decided after it was written: no longer pending.
		e := *exts[4]
		e.State, e.DecidedAt = ajar.ExtensionDenied, tp(t0.Add(time.Minute))
		return tx.UpdateExtension(ctx, &e)
	})
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.ListPendingExtensions(ctx)
		if err != nil {
			return err
		}
		want := []*ajar.Extension{exts[2], exts[0], exts[3]} // req-a/2, req-b/1, req-b/2
		if len(got) != len(want) {
			t.Fatalf("ListPendingExtensions = %d extensions, want %d: %+v", len(got), len(want), got)
		}
		for i, w := range want {
			g := got[i]
			if g.RequestID != w.RequestID || g.Seq != w.Seq || g.By != w.By || g.Reason != w.Reason || g.RequestedBy != w.RequestedBy ||
				!g.RequestedAt.Equal(w.RequestedAt) || g.State != ajar.ExtensionPending || g.Version != 1 ||
				fmt.Sprint(g.Approvals) != fmt.Sprint(w.Approvals) || g.DecidedAt != nil {
				t.Errorf("pending extension %d = %+v, want %+v", i, g, *w)
			}
		}
		return nil
	})
}
