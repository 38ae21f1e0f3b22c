package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

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
