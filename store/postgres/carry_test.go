package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// Carried writes (batch.go): the writes a fn leaves queued go with the next
// fn's first statement, and each fn's outcome stays its own.

// roundTrips is a proxy between the stores of a test and its database that
// counts the round trips that run statements: each simple Query message, and
// each Sync that ends messages with an Execute among them (not the ones pgx
// sends to prepare a statement it has not seen yet on a connection).
type roundTrips struct {
	dsn string // the database's DSN through the proxy
	n   atomic.Int64
}

func newRoundTrips(t *testing.T, dsn string) *roundTrips {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	server := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u.Host = ln.Addr().String()
	p := &roundTrips{dsn: u.String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c, server)
		}
	}()
	return p
}

// serve forwards one connection, counting what the client sends before it
// passes it on: a round trip is counted before its reply can come back.
func (p *roundTrips) serve(client net.Conn, addr string) {
	defer client.Close()
	server, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		io.Copy(client, server)
		client.Close()
	}()
	r := bufio.NewReader(client)
	read := func(typed bool) ([]byte, error) {
		n := 4
		if typed {
			n = 5
		}
		head := make([]byte, n)
		if _, err := io.ReadFull(r, head); err != nil {
			return nil, err
		}
		size := int(binary.BigEndian.Uint32(head[n-4:]))
		msg := make([]byte, n-4+size)
		copy(msg, head)
		_, err := io.ReadFull(r, msg[n:])
		return msg, err
	}
	// The startup message, after any request for encryption (refused), has
	// no type byte; every message after it has one.
	for {
		msg, err := read(false)
		if err != nil || len(msg) < 8 {
			return
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
		if code := binary.BigEndian.Uint32(msg[4:8]); code != 80877103 && code != 80877104 { // SSL, GSS
			break
		}
	}
	executes := false
	for {
		msg, err := read(true)
		if err != nil {
			return
		}
		switch msg[0] {
		case 'E':
			executes = true
		case 'S':
			if executes {
				p.n.Add(1)
			}
			executes = false
		case 'Q':
			p.n.Add(1)
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

// benchFn is an Update fn shaped like POST /v1/requests with an SSH key:
// create the request, count the requester's requests, record the
// certificate, append the audit event.
func benchFn(ctx context.Context, tx ajar.Tx, id string, serial uint64) error {
	return benchShape(ctx, tx, id, serial, false)
}

// benchShape is benchFn; with counting, the request is created and counted
// in one call (CreateRequestCounting), as the broker does.
func benchShape(ctx context.Context, tx ajar.Tx, id string, serial uint64, counting bool) error {
	r := request(id, tx.Now(), nil)
	fs := []ajar.RequestFilter{{Requester: "alice", States: []ajar.State{ajar.StateActive}}, {Target: "web", Limit: 10}}
	if counting {
		if _, err := tx.CreateRequestCounting(ctx, r, fs...); err != nil {
			return err
		}
	} else {
		if err := tx.CreateRequest(ctx, r); err != nil {
			return err
		}
		if _, err := tx.CountRequestsEach(ctx, fs...); err != nil {
			return err
		}
	}
	if err := tx.InsertSSHCert(ctx, sshCert(serial, id, tx.Now())); err != nil {
		return err
	}
	_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "request.created", Subject: id})
	return err
}

func sshCert(serial uint64, req string, now time.Time) ajar.SSHCert {
	return ajar.SSHCert{Serial: serial, RequestID: req, KeyID: req, Principals: []string{"ubuntu"},
		ValidAfter: now, ValidBefore: now.Add(time.Hour), IssuedAt: now}
}

// TestCarriedWritesRoundTrips counts the round trips of a batch of fns shaped
// like the benchmark's: two for each fn in the middle of the batch (its
// CreateRequest, with the certificate record of the fn before, and its
// count), where sending each fn's certificate record at its end took three;
// one when the fn creates and counts in one call (CreateRequestCounting), as
// the broker does. Each fn marks the count when it starts; the fns between
// the second's start and the last's run whole in between.
func TestCarriedWritesRoundTrips(t *testing.T) {
	for _, c := range []struct {
		name     string
		counting bool
		perFn    int64
	}{{"create-then-count", false, 2}, {"create-counting", true, 1}} {
		t.Run(c.name, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			rt := newRoundTrips(t, dsn)
			s := open(t, rt.dsn)
			postgres.SetBatchWait(s, time.Hour)
			ctx := t.Context()
			const n = 6
			var ids []string
			marks := make([]int64, n)
			var fns []func(ajar.Tx) error
			for i := range n {
				id := fmt.Sprintf("r%d", i)
				ids = append(ids, id)
				fns = append(fns, func(tx ajar.Tx) error {
					marks[i] = rt.n.Load()
					return benchShape(ctx, tx, id, uint64(100+i), c.counting)
				})
			}
			before := postgres.Commits(s)
			for i, err := range inOneBatch(t, s, fns...) {
				if err != nil {
					t.Fatalf("Update %d: %v", i, err)
				}
			}
			if got := postgres.Commits(s) - before; got != 1 {
				t.Fatalf("%d commits, want 1 batch", got)
			}
			if got, want := marks[n-1]-marks[1], c.perFn*(n-2); got != want {
				t.Errorf("%d round trips for %d fns in the middle of a batch, want %d (%d each)", got, n-2, want, c.perFn)
			}
			if got := present(t, s, ids); !slices.Equal(got, ids) {
				t.Errorf("stored %v, want %v", got, ids)
			}
			checkChain(t, s, n)
			if got := certSerials(t, s); len(got) != n {
				t.Errorf("certificates %v, want %d", got, n)
			}
		})
	}
}

// certSerials returns the serials of the stored certificate records.
func certSerials(t *testing.T, s ajar.Store) []uint64 {
	t.Helper()
	var out []uint64
	err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		certs, err := tx.ListSSHCerts(t.Context(), "")
		for _, c := range certs {
			out = append(out, c.Serial)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestCarriedWriteFails runs batches in which a fn's carried write fails (a
// certificate serial that exists, sent after the fn ended) in each way the
// fns after it can meet it. The failing fn's Update returns ECONFLICT, runs no
// AfterCommit function and leaves nothing (request, certificate, events); the
// others go on as if it had not run: they commit, in the number of commits
// given, and the audit log is one chain of their events, after an event
// stored before. A fn whose carried write succeeds is not undone by the fn
// after it failing or panicking.
func TestCarriedWriteFails(t *testing.T) {
	// A step of a fn; what it stores if the fn commits.
	type step struct {
		run                      func(ctx context.Context, tx ajar.Tx, id string, serial uint64) error
		creates, records, events bool
	}
	var (
		create = step{run: func(ctx context.Context, tx ajar.Tx, id string, _ uint64) error {
			return tx.CreateRequest(ctx, request(id, tx.Now(), nil))
		}, creates: true}
		count = step{run: func(ctx context.Context, tx ajar.Tx, _ string, _ uint64) error {
			_, err := tx.CountRequestsEach(ctx, ajar.RequestFilter{Requester: "alice"})
			return err
		}}
		cert = step{run: func(ctx context.Context, tx ajar.Tx, id string, serial uint64) error {
			return tx.InsertSSHCert(ctx, sshCert(serial, id, tx.Now()))
		}, records: true}
		appendEv = step{run: func(ctx context.Context, tx ajar.Tx, id string, _ uint64) error {
			_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "a", Subject: id})
			return err
		}, events: true}
		// headThenAppend reads the chain head, then appends: the event
		// must extend that head.
		headThenAppend = step{run: func(ctx context.Context, tx ajar.Tx, id string, _ uint64) error {
			seq, hash, err := tx.AuditHead(ctx)
			if err != nil {
				return err
			}
			e, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "a", Subject: id})
			if err == nil && (e.Seq != seq+1 || !bytes.Equal(e.PrevHash, hash)) {
				err = fmt.Errorf("AuditHead said %d, then AppendAudit appended %d", seq, e.Seq)
			}
			return err
		}, events: true}
		claim = step{run: func(ctx context.Context, tx ajar.Tx, _ string, _ uint64) error {
			_, err := tx.ClaimDue(ctx, tx.Now(), tx.Now().Add(time.Minute), 10)
			return err
		}}
		// createCounting creates and counts in one round trip (its INSERT
		// queued): after a failed carry, it goes again.
		createCounting = step{run: func(ctx context.Context, tx ajar.Tx, id string, _ uint64) error {
			r := request(id, tx.Now(), nil)
			r.Target = "t-" + id
			counts, err := tx.CreateRequestCounting(ctx, r, ajar.RequestFilter{Target: r.Target})
			if err == nil && counts[0] != 1 {
				err = fmt.Errorf("CreateRequestCounting counted %d of its own request, want 1", counts[0])
			}
			return err
		}, creates: true}
		fail = step{run: func(context.Context, ajar.Tx, string, uint64) error { return errBoom }}
		die  = step{run: func(context.Context, ajar.Tx, string, uint64) error { panic("boom") }}
	)
	type fnSpec struct {
		steps []step
		taken bool   // its certificate's serial exists
		want  string // ok, conflict (its carried write fails) or failed (its own error or panic)
	}
	const ok, conflict, failed = "ok", "conflict", "failed"
	full := []step{create, count, cert, appendEv}
	for _, tc := range []struct {
		name    string
		fns     []fnSpec
		commits int64
		// The fns check that the head lock is held after their first step.
		checkLock bool
	}{
		{name: "middle", fns: []fnSpec{{full, false, ok}, {full, true, conflict}, {full, false, ok}, {full, false, ok}},
			commits: 1, checkLock: true},
		// The failing fn took the head lock: it goes with the fn's savepoint,
		// and the next fn must take it again before its first write.
		{name: "first", fns: []fnSpec{{full, true, conflict}, {full, false, ok}, {full, false, ok}},
			commits: 1, checkLock: true},
		{name: "next-creates-counting", fns: []fnSpec{{full, false, ok}, {full, true, conflict},
			{[]step{createCounting, cert, appendEv}, false, ok}, {[]step{createCounting, cert, appendEv}, true, conflict},
			{full, false, ok}}, commits: 1, checkLock: true},
		{name: "next-appends-first", fns: []fnSpec{{full, true, conflict}, {[]step{appendEv, create, cert}, false, ok},
			{full, false, ok}}, commits: 1},
		{name: "next-reads-head-first", fns: []fnSpec{{full, false, ok}, {full, true, conflict},
			{[]step{headThenAppend, create}, false, ok}, {full, false, ok}}, commits: 1},
		{name: "next-reads-head-first-lock-lost", fns: []fnSpec{{full, true, conflict},
			{[]step{headThenAppend, create}, false, ok}, {full, false, ok}}, commits: 1},
		// Claimed while the batch no longer holds the head lock: the batch
		// ends after that fn (TestClaimEndsBatch).
		{name: "next-claims-first", fns: []fnSpec{{full, true, conflict}, {[]step{claim}, false, ok}, {full, false, ok}},
			commits: 2},
		// Carried from a fn that sent no statement of its own (its
		// savepoint opens with them), its event appended under the lock
		// the batch holds.
		{name: "no-statement", fns: []fnSpec{{[]step{create, appendEv}, false, ok}, {[]step{appendEv, cert}, true, conflict},
			{full, false, ok}}, commits: 1},
		// A fn that took the head lock through its queue only: its writes
		// are sent at its end, and the next fn starts from the head that
		// lock read.
		{name: "queued-lock", fns: []fnSpec{{[]step{cert}, false, ok}, {[]step{appendEv, create}, false, ok},
			{full, false, ok}}, commits: 1},
		// The next fn fails, or panics, after its first statement, which
		// carried the writes, or before.
		{name: "next-fails-after", fns: []fnSpec{{full, false, ok}, {[]step{create, fail}, false, failed},
			{full, false, ok}}, commits: 1},
		{name: "next-panics-after", fns: []fnSpec{{full, false, ok}, {[]step{create, die}, false, failed},
			{full, false, ok}}, commits: 1},
		{name: "next-panics-before", fns: []fnSpec{{full, false, ok}, {[]step{die}, false, failed},
			{full, false, ok}}, commits: 1},
		{name: "next-panics-before-then-fails", fns: []fnSpec{{full, true, conflict}, {[]step{die}, false, failed},
			{full, false, ok}}, commits: 1, checkLock: true},
		// The batch ends with the writes still carried: they go with its
		// COMMIT, alone or after the writes the last fn queued.
		{name: "commit", fns: []fnSpec{{full, false, ok}, {full, true, conflict}, {[]step{fail}, false, failed}},
			commits: 1},
		{name: "commit-good", fns: []fnSpec{{full, false, ok}, {full, false, ok}, {[]step{die}, false, failed}},
			commits: 1},
		{name: "commit-none-left", fns: []fnSpec{{full, true, conflict}, {[]step{fail}, false, failed}}, commits: 0},
		{name: "commit-with-last", fns: []fnSpec{{full, true, conflict}, {[]step{cert}, false, ok}}, commits: 1},
		{name: "commit-with-last-failing", fns: []fnSpec{{full, false, ok}, {full, true, conflict},
			{[]step{cert}, true, conflict}}, commits: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			s := open(t, dsn)
			postgres.SetBatchWait(s, time.Hour)
			ctx := t.Context()
			// A certificate whose serial the failing fns take again, and
			// an event the chain goes on from.
			update(t, s, func(tx ajar.Tx) error {
				if err := tx.InsertSSHCert(ctx, sshCert(1, "seed", tx.Now())); err != nil {
					return err
				}
				_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "seed", Subject: "seed"})
				return err
			})
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var mu sync.Mutex
			var ran []string // AfterCommit
			var fns []func(ajar.Tx) error
			var ids, wantIDs, wantRan []string
			wantSerials := []uint64{1}
			wantEvents := []string{"seed"}
			for i, f := range tc.fns {
				id := fmt.Sprintf("f%d", i)
				serial := uint64(100 + i)
				if f.taken {
					serial = 1
				}
				ids = append(ids, id)
				if f.want == ok {
					wantRan = append(wantRan, id)
					for _, st := range f.steps {
						if st.creates {
							wantIDs = append(wantIDs, id)
						}
						if st.records {
							wantSerials = append(wantSerials, serial)
						}
						if st.events {
							wantEvents = append(wantEvents, id)
						}
					}
				}
				fns = append(fns, func(tx ajar.Tx) error {
					tx.AfterCommit(func() { mu.Lock(); ran = append(ran, id); mu.Unlock() })
					for k, st := range f.steps {
						if err := st.run(ctx, tx, id, serial); err != nil {
							return err
						}
						if k == 0 && tc.checkLock {
							if locked, err := headLockedElsewhere(ctx, conn); err != nil || !locked {
								return fmt.Errorf("the head lock is not held after the first statement (%v)", err)
							}
						}
					}
					return nil
				})
			}
			before := postgres.Commits(s)
			errs := inOneBatch(t, s, fns...)
			for i, f := range tc.fns {
				switch err := errs[i]; f.want {
				case ok:
					if err != nil {
						t.Errorf("fn %d: %v", i, err)
					}
				case conflict:
					if ajar.ErrorCode(err) != ajar.ECONFLICT {
						t.Errorf("fn %d: Update = %v, want %s", i, err, ajar.ECONFLICT)
					}
				case failed:
					if err == nil || ajar.ErrorCode(err) == ajar.ECONFLICT {
						t.Errorf("fn %d: Update = %v, want its own failure", i, err)
					}
				}
			}
			if got := postgres.Commits(s) - before; got != tc.commits {
				t.Errorf("%d commits, want %d", got, tc.commits)
			}
			slices.Sort(ran)
			if !slices.Equal(ran, wantRan) {
				t.Errorf("AfterCommit ran for %v, want %v", ran, wantRan)
			}
			if got := present(t, s, ids); !slices.Equal(got, wantIDs) {
				t.Errorf("stored requests %v, want %v", got, wantIDs)
			}
			if got := certSerials(t, s); !slices.Equal(got, wantSerials) {
				t.Errorf("certificates %v, want %v", got, wantSerials)
			}
			var subjects []string
			for _, e := range checkChain(t, s, len(wantEvents)) {
				subjects = append(subjects, e.Subject)
			}
			if !slices.Equal(subjects, wantEvents) {
				t.Errorf("audit events of %v, want %v", subjects, wantEvents)
			}
			update(t, s, func(tx ajar.Tx) error { return createWithAudit(ctx, tx, "after") })
			checkChain(t, s, len(wantEvents)+1)
		})
	}
}

// TestCarriedWriteFailsNotificationIDs: a fn takes the head lock, reserves
// notification ids and enqueues one, and its carried write fails, which
// releases that lock. The next fn's first call enqueues a notification: it
// must not take an id the failed fn reserved, but one reserved under the lock
// it takes again (EnqueueNotification: ids reserved before the head lock was
// lost are never used, or another replica could commit greater ids first).
func TestCarriedWriteFailsNotificationIDs(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	postgres.SetBatchWait(s, time.Hour)
	ctx := t.Context()
	update(t, s, func(tx ajar.Tx) error { return tx.InsertSSHCert(ctx, sshCert(1, "seed", tx.Now())) })
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	enqueue := func(tx ajar.Tx) (int64, error) {
		n := &ajar.Notification{Sink: "log", Event: []byte(`{}`), CreatedAt: tx.Now()}
		_, err := tx.EnqueueNotification(ctx, n)
		return n.ID, err
	}
	var first, reserved, next int64
	errs := inOneBatch(t, s,
		func(tx ajar.Tx) error {
			var err error
			if first, err = enqueue(tx); err != nil {
				return err
			}
			// The greatest id reserved so far: the failing fn's.
			if err := conn.QueryRow(ctx, `SELECT pg_sequence_last_value(pg_get_serial_sequence('notifications', 'id')::regclass)`).Scan(&reserved); err != nil {
				return err
			}
			return tx.InsertSSHCert(ctx, sshCert(1, "taken", tx.Now())) // carried; fails
		},
		func(tx ajar.Tx) error {
			var err error
			next, err = enqueue(tx)
			return err
		})
	if ajar.ErrorCode(errs[0]) != ajar.ECONFLICT || errs[1] != nil {
		t.Fatalf("Update = %v, %v; want %s, nil", errs[0], errs[1], ajar.ECONFLICT)
	}
	if reserved <= first {
		t.Fatalf("the failing fn enqueued %d and reserved up to %d: no id left for the next fn to misuse", first, reserved)
	}
	if next <= reserved {
		t.Errorf("the next fn's notification has id %d, reserved by the failed fn (up to %d) under the head lock it lost", next, reserved)
	}
	var ids []int64
	err = s.View(ctx, func(tx ajar.ReadTx) error {
		ns, err := tx.ListNotifications(ctx, ajar.NotificationFilter{})
		for _, n := range ns {
			ids = append(ids, n.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != next {
		t.Errorf("notifications %v, want the next fn's %d only", ids, next)
	}
}

// TestCarriedWritesConnectionLost: the batch's connection is lost while a
// fn's writes are carried, before the next fn's first statement. Nothing of
// the batch is stored, every Update in it returns an error, none runs its
// AfterCommit functions, and the store goes on working.
func TestCarriedWritesConnectionLost(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	postgres.SetBatchWait(s, time.Hour)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ran atomic.Int64
	withAfter := func(fn func(tx ajar.Tx) error) func(ajar.Tx) error {
		return func(tx ajar.Tx) error {
			tx.AfterCommit(func() { ran.Add(1) })
			return fn(tx)
		}
	}
	errs := inOneBatch(t, s,
		withAfter(func(tx ajar.Tx) error { return benchFn(ctx, tx, "a", 100) }),
		withAfter(func(tx ajar.Tx) error { return benchFn(ctx, tx, "b", 101) }),
		withAfter(func(tx ajar.Tx) error {
			// The batch's connection, idle in its transaction: end it.
			var pid int
			if err := conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&pid); err != nil {
				return err
			}
			if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				return err
			}
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
				var n int
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n); err != nil {
					return err
				}
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					return errors.New("the batch's connection is still there after a minute")
				}
			}
			return benchFn(ctx, tx, "c", 102)
		}))
	for i, err := range errs {
		if err == nil {
			t.Errorf("Update %d returned nil, but its batch lost its connection", i)
		}
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("%d AfterCommit functions ran", n)
	}
	if got := present(t, s, []string{"a", "b", "c"}); len(got) != 0 {
		t.Errorf("stored %v", got)
	}
	if got := certSerials(t, s); len(got) != 0 {
		t.Errorf("certificates %v", got)
	}
	checkChain(t, s, 0)
	update(t, s, func(tx ajar.Tx) error { return benchFn(ctx, tx, "after", 103) })
	checkChain(t, s, 1)
}
