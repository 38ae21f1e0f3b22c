package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// UpdateRequests against another transaction (another replica) that changes
// one of its requests and commits while UpdateRequests runs: it waits for that
// row, then fails with ECONFLICT and writes none of them, not the others
// alone.
func TestUpdateRequestsRacingAnotherWriter(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	now := time.Now().UTC()
	update(t, s, func(tx ajar.Tx) error {
		for _, id := range []string{"ra", "rb"} {
			if err := tx.CreateRequest(t.Context(), request(id, now, nil)); err != nil {
				return err
			}
		}
		return nil
	})
	other, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(t.Context())
	watch, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(t.Context())
	otx, err := other.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer otx.Rollback(t.Context())
	if _, err := otx.Exec(t.Context(), `UPDATE requests SET reason = 'other', version = version + 1 WHERE id = 'rb'`); err != nil {
		t.Fatal(err)
	}

	var a, b *ajar.Request
	if err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		if a, err = tx.GetRequest(t.Context(), "ra"); err != nil {
			return err
		}
		b, err = tx.GetRequest(t.Context(), "rb")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	a.Reason, b.Reason = "mine", "mine"
	res := make(chan error, 1)
	go func() {
		res <- s.Update(t.Context(), func(tx ajar.Tx) error { return tx.UpdateRequests(t.Context(), []*ajar.Request{a, b}) })
	}()
	// Wait until the Update waits for the other transaction's row lock.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		if err := watch.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-res:
			t.Fatalf("UpdateRequests returned %v before the other writer committed", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("UpdateRequests never waited for the other writer's row lock")
		}
	}
	if err := otx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-res; ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("UpdateRequests with one request changed by another writer: %v, want %s", err, ajar.ECONFLICT)
	}
	for id, want := range map[string]struct {
		reason  string
		version int64
	}{"ra": {"r", 1}, "rb": {"other", 2}} {
		var got *ajar.Request
		if err := s.View(t.Context(), func(tx ajar.ReadTx) error {
			var err error
			got, err = tx.GetRequest(t.Context(), id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got.Reason != want.reason || got.Version != want.version {
			t.Errorf("%s: reason %q version %d, want %q %d", id, got.Reason, got.Version, want.reason, want.version)
		}
	}
}
