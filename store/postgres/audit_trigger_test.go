package postgres_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
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

// TestAuditRequestColumns checks who fills in an audit event's requester and
// target (audit search, migrations 0008 and 0010): the store's INSERT for the
// requests its fn wrote (created or updated), without calling the per-row
// trigger, and the trigger for the other events: about a request the fn did
// not write, about no request, or inserted by hand without the columns.
func TestAuditRequestColumns(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	// One connection, every Update its own transaction, and the server
	// counting PL/pgSQL calls: the trigger's calls of the Updates below add
	// up in one backend, which reports them together.
	s := open(t, dsn+"&options=-c%20track_functions%3Dpl", postgres.WithMaxConns(1), postgres.WithMaxBatch(1))
	now := time.Now().UTC()
	ctx := t.Context()
	var last ajar.AuditEvent
	appendAudit := func(tx ajar.Tx, subject string) error {
		var err error
		last, err = tx.AppendAudit(ctx, ajar.AuditEvent{Time: now, Actor: "a", Action: "x", Subject: subject})
		return err
	}
	// Written by the fn: named by the store. 1 and 2: created, 3: updated.
	update(t, s, func(tx ajar.Tx) error {
		for _, id := range []string{"r1", "r2", "r3"} {
			r := request(id, now, nil)
			r.Requester, r.Target = "alice-"+id, "web-"+id
			if err := tx.CreateRequest(ctx, r); err != nil {
				return err
			}
		}
		return errors.Join(appendAudit(tx, "r1"), appendAudit(tx, "r2"), appendAudit(tx, "r1"))
	})
	update(t, s, func(tx ajar.Tx) error {
		r, err := tx.GetRequest(ctx, "r3")
		if err != nil {
			return err
		}
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return err
		}
		return appendAudit(tx, "r3")
	})
	// Not written by the fn: filled in by the trigger, 3 calls.
	update(t, s, func(tx ajar.Tx) error {
		if _, err := tx.GetRequest(ctx, "r2"); err != nil {
			return err
		}
		return errors.Join(appendAudit(tx, "r2"), appendAudit(tx, "nobody"))
	})
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The store's backend reports its trigger calls when it exits (Close):
	// once it did, they must be the 2 of the third Update's events alone.
	s.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		var calls int64
		if err := conn.QueryRow(ctx, `SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
			WHERE funcname = 'audit_events_request'`).Scan(&calls); err != nil {
			t.Fatal(err)
		}
		if calls > 2 {
			t.Fatalf("the per-row trigger ran %d times for the store's events, want 2 (the events about requests the fn did not write)", calls)
		}
		if calls == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server reported %d calls of the per-row trigger in a minute, want 2", calls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// By hand, without the columns (as before migration 0010): filled in.
	e := ajar.AuditEvent{Seq: last.Seq + 1, Time: now, Actor: "b", Action: "y", Subject: "r1", PrevHash: last.Hash}
	e.Hash = e.ComputeHash()
	if _, err := conn.Exec(ctx, `INSERT INTO audit_events (seq, time, actor, action, subject, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.Seq, e.Time.Format(time.RFC3339Nano), e.Actor, e.Action, e.Subject, e.PrevHash, e.Hash); err != nil {
		t.Fatalf("an insert by hand without requester and target: %v", err)
	}

	got := requestColumns(t, dsn)
	want := []cols{
		{"r1", "alice-r1", "web-r1"}, {"r2", "alice-r2", "web-r2"}, {"r1", "alice-r1", "web-r1"},
		{"r3", "alice-r3", "web-r3"},
		{"r2", "alice-r2", "web-r2"}, {"nobody", "", ""},
		{"r1", "alice-r1", "web-r1"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit events' subject, requester, target:\n got %v\nwant %v", got, want)
	}
}
