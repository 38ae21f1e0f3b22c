package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// withTakenSerial writes request id and its audit event, then records a
// certificate whose serial (1) exists: the insert is queued, and fails when it
// is sent (pipeline.go).
func withTakenSerial(ctx context.Context, tx ajar.Tx, id string) error {
	if err := createWithAudit(ctx, tx, id); err != nil {
		return err
	}
	return tx.InsertSSHCert(ctx, ajar.SSHCert{Serial: 1, RequestID: id, ValidAfter: tx.Now(), ValidBefore: tx.Now().Add(time.Hour), IssuedAt: tx.Now()})
}

// TestPipelinedFailureInBatch checks a queued write that fails where the
// batch sends it: at the end of a fn that others follow, and together with the
// batch's COMMIT when the failing fn is the last of its batch (the server then
// skips the COMMIT; the fn's savepoint is rolled back and the batch commits
// the others). Either way the failing fn's Update returns ECONFLICT and leaves
// nothing, and the others in its batch commit, in one commit.
func TestPipelinedFailureInBatch(t *testing.T) {
	for _, lastFails := range []bool{false, true} {
		s := open(t, pgtest.NewDatabase(t))
		postgres.SetBatchWait(s, time.Hour)
		update(t, s, func(tx ajar.Tx) error {
			return tx.InsertSSHCert(t.Context(), ajar.SSHCert{Serial: 1, RequestID: "seed", ValidAfter: tx.Now(), ValidBefore: tx.Now(), IssuedAt: tx.Now()})
		})
		lead := func(tx ajar.Tx) error { return createWithAudit(t.Context(), tx, "good") }
		other := func(ctx context.Context, tx ajar.Tx) error { return withTakenSerial(ctx, tx, "bad") }
		if !lastFails {
			lead = func(tx ajar.Tx) error { return withTakenSerial(t.Context(), tx, "bad") }
			other = func(ctx context.Context, tx ajar.Tx) error { return createWithAudit(ctx, tx, "good") }
		}
		commits := postgres.Commits(s)
		errs := gated(t, s, lead, []func(context.Context, ajar.Tx) error{other}, nil)
		good, bad := errs[0], errs[1]
		if !lastFails {
			good, bad = bad, good
		}
		if good != nil || ajar.ErrorCode(bad) != ajar.ECONFLICT {
			t.Errorf("last fails %v: Update = %v for the good fn and %v for the bad one, want nil and %s", lastFails, good, bad, ajar.ECONFLICT)
		}
		if got := present(t, s, []string{"good", "bad"}); len(got) != 1 || got[0] != "good" {
			t.Errorf("last fails %v: stored %v, want good only", lastFails, got)
		}
		if n := postgres.Commits(s) - commits; n != 1 {
			t.Errorf("last fails %v: %d commits, want 1 (one batch)", lastFails, n)
		}
		checkChain(t, s, 1)
		update(t, s, func(tx ajar.Tx) error { return createWithAudit(t.Context(), tx, "after") })
		checkChain(t, s, 2)
	}
}
