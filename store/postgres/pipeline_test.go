package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// TestNotificationIDsAfterLostHeadLock checks that notification ids stay in
// commit order when a batch loses the head lock: the fn that took it reserved
// ids, then failed, so its savepoint's rollback released the lock; another
// replica then enqueued and committed; the next fn of the batch must not use
// the ids reserved before (lower than the other replica's), but reserve new
// ones under the lock it takes again.
func TestNotificationIDsAfterLostHeadLock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s1, s2 := open(t, dsn), open(t, dsn)
	postgres.SetBatchWait(s1, time.Hour)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	enqueue := func(ctx context.Context, tx ajar.Tx) (int64, error) {
		n := &ajar.Notification{Sink: "log", Event: []byte(`{}`), CreatedAt: tx.Now()}
		_, err := tx.EnqueueNotification(ctx, n)
		return n.ID, err
	}
	other := make(chan int64, 1)
	lead := func(tx ajar.Tx) error {
		if _, err := enqueue(t.Context(), tx); err != nil {
			return err
		}
		go func() {
			var id int64
			err := s2.Update(t.Context(), func(tx ajar.Tx) error {
				var err error
				id, err = enqueue(t.Context(), tx)
				return err
			})
			if err != nil {
				t.Errorf("the other replica's Update: %v", err)
			}
			other <- id
		}()
		// Fail once the other replica waits for the head lock.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			var waiting int
			if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
				return err
			}
			if waiting > 0 {
				return errBoom
			}
			if time.Now().After(deadline) {
				return errors.New("the other replica never waited for the head lock")
			}
		}
	}
	var next int64
	errs := gated(t, s1, lead, []func(context.Context, ajar.Tx) error{func(ctx context.Context, tx ajar.Tx) error {
		<-other // committed once the lead's savepoint is rolled back
		var err error
		next, err = enqueue(ctx, tx)
		return err
	}}, nil)
	if !errors.Is(errs[0], errBoom) || errs[1] != nil {
		t.Fatalf("Update = %v, %v; want %v, nil", errs[0], errs[1], errBoom)
	}
	var ids []int64
	err = s1.View(t.Context(), func(tx ajar.ReadTx) error {
		ns, err := tx.ListNotifications(t.Context(), ajar.NotificationFilter{})
		for _, n := range ns {
			ids = append(ids, n.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[1] != next || ids[0] >= next {
		t.Errorf("notification ids in id order %v, the batch's is %d: it must come after the other replica's, committed first", ids, next)
	}
}
