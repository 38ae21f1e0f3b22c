package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
	"github.com/ajar-dev/ajar/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t testing.TB, dsn string, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) ajar.Store {
		s, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), postgres.WithNow(now))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestConformanceNoBatching runs the suite with group commit off: every Update
// its own transaction.
func TestConformanceNoBatching(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) ajar.Store {
		s, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), postgres.WithNow(now), postgres.WithMaxBatch(1))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func request(id string, now time.Time, next *time.Time) *ajar.Request {
	exp := now.Add(time.Hour)
	return &ajar.Request{
		ID: id, Target: "web", Requester: "alice", Reason: "r", Duration: time.Hour,
		Policy: "p", State: ajar.StateActive, CreatedAt: now, UpdatedAt: now,
		ApprovalDeadline: now, ExpiresAt: &exp, NextAt: next,
	}
}

func update(t testing.TB, s ajar.Store, fn func(ajar.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// TestDatabaseClock checks that without WithNow, Now is the database's clock: the
// same all through a transaction, the server's now(), and moving forward.
func TestDatabaseClock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())

	var first, second time.Time
	update(t, s, func(tx ajar.Tx) error {
		first = tx.Now()
		time.Sleep(20 * time.Millisecond)
		if n := tx.Now(); !n.Equal(first) {
			t.Errorf("Now changed within a transaction: %v then %v", first, n)
		}
		return nil
	})
	// The next batch begins within a second: it goes on from the same
	// reading of the database's clock (BEGIN is sent with its first
	// statement), so its clock is later, and still before the server's now().
	var next time.Time
	update(t, s, func(tx ajar.Tx) error {
		next = tx.Now()
		_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: next, Actor: "a", Action: "x", Subject: "s"})
		return err
	})
	if !next.After(first) {
		t.Errorf("the next batch's clock %v is not after the first's %v", next, first)
	}
	var server time.Time
	if err := conn.QueryRow(t.Context(), "SELECT now()").Scan(&server); err != nil {
		t.Fatal(err)
	}
	// Views of a Store whose batches have not read the clock in the last
	// second read now() (TestViewClockWithoutRoundTrip for the others).
	s2 := open(t, dsn)
	if err := s2.View(t.Context(), func(tx ajar.ReadTx) error { second = tx.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	// A View's BEGIN and clock go with its first statement: Now read after
	// it is the same clock, and the same within the View.
	var third time.Time
	if err := s2.View(t.Context(), func(tx ajar.ReadTx) error {
		if _, err := tx.GetRequest(t.Context(), "missing"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			return fmt.Errorf("GetRequest: %v, want ENOTFOUND", err)
		}
		third = tx.Now()
		if n := tx.Now(); !n.Equal(third) {
			t.Errorf("Now changed within a View: %v then %v", third, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !second.Before(third) || third.Location() != time.UTC {
		t.Errorf("the clock of a View that read first: %v, want after %v, in UTC", third, second)
	}
	if first.Location() != time.UTC || second.Location() != time.UTC {
		t.Errorf("Now not in UTC: %v, %v", first.Location(), second.Location())
	}
	if !first.Before(server) || !next.Before(server) || !server.Before(second) {
		t.Errorf("Now out of order with the server's now(): update %v, server %v, view %v", first, server, second)
	}
	if d := time.Since(first); d < 0 || d > time.Minute {
		t.Errorf("database clock %v is %v from this machine's, same machine", first, d)
	}
}

// TestConcurrentOpen starts several replicas on one new database at once: the
// migrations run once and every Open succeeds.
func TestConcurrentOpen(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var applied int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied < 1 {
		t.Fatalf("%d migrations recorded", applied)
	}
}

// TestClaimSkipsLocked has one replica hold a claim open while another claims:
// the second gets the other due requests at once, never the held ones, and never
// waits for the first.
func TestClaimSkipsLocked(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	now := time.Now().UTC()
	update(t, a, func(tx ajar.Tx) error {
		for i := range 10 {
			next := now.Add(-time.Duration(10-i) * time.Second)
			if err := tx.CreateRequest(t.Context(), request(fmt.Sprintf("r%d", i), now, &next)); err != nil {
				return err
			}
		}
		return nil
	})
	claimedA := make(chan []string)
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Update(t.Context(), func(tx ajar.Tx) error {
			rs, err := tx.ClaimDue(t.Context(), tx.Now(), tx.Now().Add(time.Minute), 4)
			if err != nil {
				return err
			}
			claimedA <- ids(rs)
			<-release // hold the row locks, uncommitted
			return nil
		})
	}()
	gotA := <-claimedA
	if !slices.Equal(gotA, []string{"r0", "r1", "r2", "r3"}) {
		t.Fatalf("first claim = %v, want the four earliest", gotA)
	}
	start := time.Now()
	var gotB []string
	update(t, b, func(tx ajar.Tx) error {
		rs, err := tx.ClaimDue(t.Context(), tx.Now(), tx.Now().Add(time.Minute), 100)
		gotB = ids(rs)
		return err
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second claim took %v: it waited for the first", d)
	}
	if !slices.Equal(gotB, []string{"r4", "r5", "r6", "r7", "r8", "r9"}) {
		t.Fatalf("second claim = %v, want the six the first does not hold", gotB)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Both committed: nothing is due until the leases end.
	update(t, b, func(tx ajar.Tx) error {
		rs, err := tx.ClaimDue(t.Context(), tx.Now(), tx.Now().Add(time.Minute), 100)
		if len(rs) != 0 {
			t.Errorf("claimed again before the leases ended: %v", ids(rs))
		}
		return err
	})
}

func ids(rs []*ajar.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestReplicasShareWork runs claimers on three stores (replicas) over one
// database, each finishing what it claims with a compare-and-swap, while writers
// append to the audit log from all three. Every request is finished exactly once
// and the chain stays linear.
func TestReplicasShareWork(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	stores := []*postgres.Store{open(t, dsn), open(t, dsn), open(t, dsn)}
	const n = 300
	now := time.Now().UTC()
	update(t, stores[0], func(tx ajar.Tx) error {
		for i := range n {
			next := now.Add(-time.Duration(i) * time.Millisecond)
			if err := tx.CreateRequest(t.Context(), request(fmt.Sprintf("r%03d", i), now, &next)); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	finished := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, s := range stores {
		for w := range 4 {
			wg.Go(func() {
				for {
					var claimed []*ajar.Request
					err := s.Update(t.Context(), func(tx ajar.Tx) error {
						var err error
						claimed, err = tx.ClaimDue(t.Context(), tx.Now(), tx.Now().Add(time.Minute), 5)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
					if len(claimed) == 0 {
						return
					}
					for _, r := range claimed {
						err := s.Update(t.Context(), func(tx ajar.Tx) error {
							r.State, r.NextAt = ajar.StateExpired, nil
							if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: tx.Now(), Actor: fmt.Sprintf("replica%d/%d", i, w), Action: "request.expired", Subject: r.ID}); err != nil {
								return err
							}
							return tx.UpdateRequest(t.Context(), r)
						})
						if err != nil {
							errs <- fmt.Errorf("finish %s: %w", r.ID, err)
							return
						}
						mu.Lock()
						finished[r.ID]++
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(finished) != n {
		t.Fatalf("%d requests finished, want %d", len(finished), n)
	}
	for id, c := range finished {
		if c != 1 {
			t.Errorf("%s finished %d times", id, c)
		}
	}
	checkChain(t, stores[1], n)
}

// checkChain reads the whole audit log and checks that it is one linear chain of
// want events.
func checkChain(t testing.TB, s ajar.Store, want int) []ajar.AuditEvent {
	t.Helper()
	var all []ajar.AuditEvent
	err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		all, err = tx.ListAudit(t.Context(), ajar.AuditFilter{Limit: 100000})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != want {
		t.Fatalf("%d audit events, want %d", len(all), want)
	}
	var prev []byte
	for i, e := range all {
		if e.Seq != int64(i+1) || string(e.PrevHash) != string(prev) || string(e.Hash) != string(e.ComputeHash()) {
			t.Fatalf("audit chain broken at event %d (seq %d)", i+1, e.Seq)
		}
		prev = e.Hash
	}
	return all
}

// TestWritersDoNotDeadlock runs transactions that touch the same request and the
// audit log in opposite orders, from two replicas. Writers take the chain-head
// lock at their first write, so they queue instead of deadlocking.
func TestWritersDoNotDeadlock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	now := time.Now().UTC()
	update(t, a, func(tx ajar.Tx) error { return tx.CreateRequest(t.Context(), request("x", now, nil)) })
	const rounds = 50
	var wg sync.WaitGroup
	errs := make(chan error, 4*rounds)
	bump := func(s ajar.Store, auditFirst bool) error {
		for {
			err := s.Update(t.Context(), func(tx ajar.Tx) error {
				r, err := tx.GetRequest(t.Context(), "x")
				if err != nil {
					return err
				}
				r.Attempts++
				ev := ajar.AuditEvent{Time: tx.Now(), Actor: "a", Action: "bump", Subject: "x"}
				if auditFirst {
					if _, err := tx.AppendAudit(t.Context(), ev); err != nil {
						return err
					}
					time.Sleep(time.Millisecond)
					return tx.UpdateRequest(t.Context(), r)
				}
				if err := tx.UpdateRequest(t.Context(), r); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
				_, err = tx.AppendAudit(t.Context(), ev)
				return err
			})
			if ajar.ErrorCode(err) == ajar.ECONFLICT {
				continue
			}
			return err
		}
	}
	for i, s := range []ajar.Store{a, b, a, b} {
		wg.Go(func() {
			for range rounds {
				if err := bump(s, i%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var r *ajar.Request
	a.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		r, err = tx.GetRequest(t.Context(), "x")
		return err
	})
	if r.Attempts != 4*rounds {
		t.Fatalf("attempts = %d, want %d: an update was lost", r.Attempts, 4*rounds)
	}
	checkChain(t, a, 4*rounds)
}

// TestFrozenReplicaReleasesLocks has one replica stop in the middle of a
// transaction that holds the chain-head lock (as a SIGSTOPped process would). The
// server ends that session after idle_in_transaction_session_timeout, the other
// replica's writes go through, and the frozen one's transaction is not
// committed.
func TestFrozenReplicaReleasesLocks(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	short := dsn + "&idle_in_transaction_session_timeout=300"
	frozen, other := open(t, short), open(t, dsn)
	now := time.Now().UTC()
	holding := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- frozen.Update(t.Context(), func(tx ajar.Tx) error {
			if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: now, Actor: "frozen", Action: "x", Subject: "s"}); err != nil {
				return err
			}
			close(holding)
			time.Sleep(3 * time.Second) // frozen
			return nil
		})
	}()
	<-holding
	start := time.Now()
	update(t, other, func(tx ajar.Tx) error {
		_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: now, Actor: "other", Action: "x", Subject: "s"})
		return err
	})
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("the other replica waited %v for the frozen one's lock", d)
	}
	if err := <-done; err == nil {
		t.Fatal("the frozen replica's Update reported a commit after the server ended its session")
	}
	evs := checkChain(t, other, 1)
	if evs[0].Actor != "other" {
		t.Fatalf("the chain holds %q's event", evs[0].Actor)
	}
}

// TestAuditAppendOnly checks that the database itself refuses to change, remove
// or skip audit events, whoever connects.
func TestAuditAppendOnly(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	now := time.Now().UTC()
	update(t, s, func(tx ajar.Tx) error {
		for range 3 {
			if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: now, Actor: "a", Action: "x", Subject: "s"}); err != nil {
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
	for _, q := range []string{
		`UPDATE audit_events SET actor = 'mallory' WHERE seq = 2`,
		`DELETE FROM audit_events WHERE seq = 3`,
		`TRUNCATE audit_events`,
		`INSERT INTO audit_events (seq, time, actor, action, subject, hash) VALUES (9, 't', 'a', 'x', 's', '\x00')`,
		`INSERT INTO audit_events (seq, time, actor, action, subject, hash) VALUES (4, 't', 'a', 'x', 's', '\x00')`, // wrong prev_hash
		`UPDATE audit_head SET seq = 0, hash = NULL`,
		`DELETE FROM audit_head`,
		`TRUNCATE audit_head`,
	} {
		if _, err := conn.Exec(t.Context(), q); err == nil {
			t.Errorf("%s: succeeded", q)
		}
	}
	checkChain(t, s, 3)
}

// TestInvalidText checks that text PostgreSQL cannot store is the caller's error
// (EINVALID), not an internal one, and that the failed transaction commits
// nothing even if fn ignores the error.
func TestInvalidText(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	now := time.Now().UTC()
	r := request("nul", now, nil)
	r.Reason = "a\x00b"
	err := s.Update(t.Context(), func(tx ajar.Tx) error { return tx.CreateRequest(t.Context(), r) })
	if ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("NUL in reason: %v, want %s", err, ajar.EINVALID)
	}
	err = s.Update(t.Context(), func(tx ajar.Tx) error {
		_ = tx.CreateRequest(t.Context(), request("ok", now, nil))
		_ = tx.CreateRequest(t.Context(), r) // fails; ignored on purpose
		return nil
	})
	if err == nil {
		t.Fatal("Update committed after a failed statement")
	}
	err = s.View(t.Context(), func(tx ajar.ReadTx) error {
		_, err := tx.GetRequest(t.Context(), "ok")
		return err
	})
	if ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Fatalf("request written before the failed statement: %v, want not found", err)
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://ajar:s3cret@127.0.0.1:1/ajar?connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the password: %v", err)
	}
	if _, err := postgres.Open(t.Context(), "postgres://%zz"); err == nil {
		t.Fatal("Open of a malformed DSN succeeded")
	}
	s := open(t, pgtest.NewDatabase(t))
	s.Close()
	if err := s.Update(t.Context(), func(ajar.Tx) error { return nil }); err == nil {
		t.Fatal("Update after Close succeeded")
	}
	if err := s.View(context.Background(), func(ajar.ReadTx) error { return nil }); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("View after Close: %v", err)
	}
}

// TestViewClockWithoutRoundTrip checks that a View begun less than a second
// after a batch read the database's clock takes its clock from that reading:
// Now sends nothing (BEGIN stays queued for fn's first statement), and the
// clock is the database's: after the batch's, before the server's now() read
// after the View. (A machine so loaded that a second passes between the two
// gets a few more tries.)
func TestViewClockWithoutRoundTrip(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	for try := 1; ; try++ {
		var batch, view time.Time
		queued := -1
		update(t, s, func(tx ajar.Tx) error {
			batch = tx.Now()
			_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: batch, Actor: "a", Action: "x", Subject: "s"})
			return err
		})
		err = s.View(t.Context(), func(tx ajar.ReadTx) error {
			view = tx.Now()
			queued = postgres.QueuedInView(tx)
			if _, err := tx.GetRequest(t.Context(), "missing"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
				return fmt.Errorf("GetRequest: %v, want ENOTFOUND", err)
			}
			if n := tx.Now(); !n.Equal(view) {
				t.Errorf("Now changed within a View: %v then %v", view, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var server time.Time
		if err := conn.QueryRow(t.Context(), "SELECT now()").Scan(&server); err != nil {
			t.Fatal(err)
		}
		if queued != 1 {
			if try == 10 {
				t.Fatalf("%d statements queued after Now, want 1 (BEGIN): Now sent a round trip of its own (10 tries)", queued)
			}
			continue
		}
		if !batch.Before(view) || !view.Before(server) || view.Location() != time.UTC {
			t.Errorf("clocks out of order: batch %v, view %v, server %v (want increasing, UTC)", batch, view, server)
		}
		return
	}
}
