package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// TestAuditInsertExtendsHead checks the database's own guard on the chain
// (migration 0009) against inserts made by hand, several rows at a time: an
// INSERT is stored only if its rows extend the head one after the other, and
// the head then moves once, to the last of them; the head row cannot be
// written directly.
func TestAuditInsertExtendsHead(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	now := time.Now().UTC()
	var head ajar.AuditEvent
	update(t, s, func(tx ajar.Tx) error {
		for range 3 {
			var err error
			if head, err = tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: now, Actor: "a", Action: "x", Subject: "s"}); err != nil {
				return err
			}
		}
		return nil
	})
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())

	// next returns the n events that extend prev.
	next := func(prev ajar.AuditEvent, n int) []ajar.AuditEvent {
		var out []ajar.AuditEvent
		for range n {
			e := ajar.AuditEvent{Seq: prev.Seq + 1, Time: now, Actor: "b", Action: "y", Subject: "s", PrevHash: prev.Hash}
			e.Hash = e.ComputeHash()
			out = append(out, e)
			prev = e
		}
		return out
	}
	insert := func(tx pgx.Tx, es []ajar.AuditEvent) error {
		var seqs []int64
		var times, actors, actions, subjects []string
		var prevs, hashes [][]byte
		for _, e := range es {
			seqs = append(seqs, e.Seq)
			times = append(times, e.Time.Format(time.RFC3339Nano))
			actors, actions, subjects = append(actors, e.Actor), append(actions, e.Action), append(subjects, e.Subject)
			prevs, hashes = append(prevs, e.PrevHash), append(hashes, e.Hash)
		}
		_, err := tx.Exec(t.Context(), `INSERT INTO audit_events (seq, time, actor, action, subject, prev_hash, hash)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[])`,
			seqs, times, actors, actions, subjects, prevs, hashes)
		return err
	}
	// refused runs fn in a transaction that must fail, and rolls it back.
	refused := func(what string, fn func(tx pgx.Tx) error) {
		t.Helper()
		tx, err := conn.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(t.Context())
		if err := fn(tx); err == nil {
			t.Errorf("%s: succeeded", what)
		}
	}

	good := next(head, 3)
	gap := append([]ajar.AuditEvent{good[0]}, good[2])
	refused("an insert with a gap", func(tx pgx.Tx) error { return insert(tx, gap) })
	refused("an insert after a gap", func(tx pgx.Tx) error { return insert(tx, good[1:]) })
	wrongFirst := next(ajar.AuditEvent{Seq: head.Seq, Hash: []byte("forged")}, 2)
	refused("an insert whose first prev_hash is not the head's hash", func(tx pgx.Tx) error { return insert(tx, wrongFirst) })
	broken := append([]ajar.AuditEvent{good[0]}, next(ajar.AuditEvent{Seq: good[0].Seq, Hash: []byte("forged")}, 2)...)
	refused("an insert whose rows do not link to each other", func(tx pgx.Tx) error { return insert(tx, broken) })
	refused("a second row with the same seq", func(tx pgx.Tx) error {
		dup := good[0]
		dup.PrevHash = good[0].Hash
		return insert(tx, []ajar.AuditEvent{good[0], dup})
	})
	refused("a direct UPDATE of the head to a stored event", func(tx pgx.Tx) error {
		_, err := tx.Exec(t.Context(), `UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_events WHERE seq = 2)`)
		return err
	})
	refused("a direct UPDATE of the head forward", func(tx pgx.Tx) error {
		if err := insert(tx, good[:1]); err != nil {
			return nil // must not fail here: the UPDATE below is what is tested
		}
		_, err := tx.Exec(t.Context(), `UPDATE audit_head SET seq = $1, hash = $2`, good[2].Seq, good[2].Hash)
		return err
	})
	checkChain(t, s, 3)

	// A valid insert of three events moves the head once, to the last one.
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	// The head row's updates counted in this transaction.
	headUpdates := func() int64 {
		var n int64
		if err := tx.QueryRow(t.Context(), `SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'audit_head'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := headUpdates()
	if err := insert(tx, good); err != nil {
		t.Fatalf("a valid insert of three events: %v", err)
	}
	updates := headUpdates() - before
	var seq int64
	var hash []byte
	if err := tx.QueryRow(t.Context(), `SELECT seq, hash FROM audit_head`).Scan(&seq, &hash); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if updates != 1 {
		t.Errorf("the head row was updated %d times by one INSERT of 3 events, want once", updates)
	}
	if seq != good[2].Seq || string(hash) != string(good[2].Hash) {
		t.Errorf("head = %d, want %d", seq, good[2].Seq)
	}
	checkChain(t, s, 6)
}
