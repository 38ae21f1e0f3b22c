package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// TestNotificationClaimsAreHOT checks that the outbox's claims (a new next_at
// and version, no indexed column) are HOT updates, written on the row's own
// page without new index entries, for a batch claimed together as the outbox
// does (migration 0011: the inserts leave room on each page).
func TestNotificationClaimsAreHOT(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	ctx := t.Context()
	const n = 60
	event := []byte(`{"text":"` + strings.Repeat("x", 600) + `"}`) // about the size of a request's event
	update(t, s, func(tx ajar.Tx) error {
		for range n {
			if _, err := tx.EnqueueNotification(ctx, &ajar.Notification{Sink: "s", Event: event, CreatedAt: tx.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(tx ajar.Tx) error {
		pending, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Sink: "s", State: ajar.NotificationPending, Limit: n})
		if err != nil {
			return err
		}
		claims := make([]*ajar.Notification, len(pending))
		for i := range pending {
			pending[i].NextAt = tx.Now().Add(time.Minute)
			claims[i] = &pending[i]
		}
		written, err := tx.UpdateNotifications(ctx, claims)
		if err != nil {
			return err
		}
		for i, w := range written {
			if !w {
				t.Errorf("claim %d not written", claims[i].ID)
			}
		}
		if len(claims) != n {
			t.Errorf("%d pending notifications, want %d", len(claims), n)
		}
		return nil
	})
	// The store's backends report their row counts when they exit (Close).
	s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var upd, hot int64
		if err := conn.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'notifications'`).Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		if upd >= n {
			if hot < n*3/4 {
				t.Errorf("%d of %d claims were HOT updates, want at least %d", hot, upd, n*3/4)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server reported %d updates of notifications in a minute, want %d", upd, n)
		}
	}
}

// TestNotificationsOneInsert checks that the notifications without a key that
// an fn enqueues, between its other statements, are inserted by one statement
// (pipeline.go), with the ids and columns each would have had on its own.
func TestNotificationsOneInsert(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Count the INSERT statements on notifications (a statement trigger of
	// this test's own).
	for _, q := range []string{
		`CREATE TABLE inserts (n bigint NOT NULL)`,
		`INSERT INTO inserts VALUES (0)`,
		`CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN UPDATE inserts SET n = n + 1; RETURN NULL; END; $$`,
		`CREATE TRIGGER count_insert AFTER INSERT ON notifications FOR EACH STATEMENT EXECUTE FUNCTION count_insert()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	now := time.Now().UTC()
	var ns []*ajar.Notification
	update(t, s, func(tx ajar.Tx) error {
		for i, sink := range []string{"a", "b", "a"} {
			n := &ajar.Notification{Sink: sink, Event: []byte(`{"i":` + string(rune('0'+i)) + `}`), CreatedAt: now}
			if _, err := tx.EnqueueNotification(ctx, n); err != nil {
				return err
			}
			ns = append(ns, n)
			if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: now, Actor: "a", Action: "x", Subject: "s"}); err != nil {
				return err
			}
		}
		return nil
	})
	var inserts int64
	if err := conn.QueryRow(ctx, `SELECT n FROM inserts`).Scan(&inserts); err != nil {
		t.Fatal(err)
	}
	if inserts != 1 {
		t.Errorf("%d INSERT statements for the 3 notifications of one fn, want 1", inserts)
	}
	err = s.View(ctx, func(tx ajar.ReadTx) error {
		got, err := tx.ListNotifications(ctx, ajar.NotificationFilter{})
		if err != nil {
			return err
		}
		if len(got) != len(ns) {
			t.Fatalf("%d notifications stored, want %d", len(got), len(ns))
		}
		for i, g := range got {
			w := ns[i]
			if g.ID != w.ID || g.Sink != w.Sink || string(g.Event) != string(w.Event) || !g.CreatedAt.Equal(now) ||
				!g.NextAt.Equal(now) || g.State != ajar.NotificationPending || g.Key != "" || g.Version != 1 {
				t.Errorf("notification %d stored as %+v, enqueued as %+v", i, g, *w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
