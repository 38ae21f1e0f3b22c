// Package postgres is ajar's store for running several replicas: one PostgreSQL
// database (through pgx) that every "ajar serve" process shares. It passes the same
// conformance suite as the embedded SQLite store; what differs is how it stays
// correct with many writers on many machines:
//
//   - One clock. ReadTx.Now is the database's clock: for Update, the
//     database's clock_timestamp() read when a batch's transaction begins (a
//     batch's fns share one, see below; batches that begin within a second of
//     that reading reuse it) plus the time since then on this process's
//     monotonic clock, read when fn starts; for View, the same when a batch
//     read the clock less than a second before (no round trip of its own),
//     else now(), read once when the transaction begins. Either way it is
//     fixed for the whole fn, and replicas whose clocks disagree still agree
//     on what is due and what has expired.
//   - Claims. ClaimDue locks due rows with FOR UPDATE SKIP LOCKED, so replicas
//     claiming at the same time take disjoint sets without waiting for each
//     other, and moves each row's next_at to the lease end and bumps its version
//     (the fencing token) in the same statement. A replica that dies leaves its
//     rows due again at the lease end; one that stalls past it finds its version
//     stale and cannot write (UpdateRequest is a compare-and-swap on version).
//   - A linear audit chain. The chain head is one row (audit_head). The first
//     write of every write transaction locks it (SELECT ... FOR UPDATE) until
//     commit, so appends from all replicas are serialized and each event links to
//     the one committed before it. Taking it at the first write, not at the first
//     append, gives every writer the same lock order (head, then rows), so
//     writers never deadlock; ClaimDue is the one write that does not take it,
//     and it never waits for a lock (SKIP LOCKED), so it cannot close a cycle.
//     Triggers make the events table append-only and keep the head in step with
//     it, whoever writes: an INSERT is refused unless its rows extend the head
//     one after the other, and the head then moves once, to the last of them.
//   - Group commit. Holding the head lock to the commit serializes commits, each
//     with its WAL fsync, so concurrent Update calls of one Store share one
//     transaction: each fn in its own savepoint, one head-lock hold and one
//     commit for all of them (batch.go). Replicas each batch their own callers;
//     their batches take turns on the head lock.
//   - Pipelining. While a batch holds the head lock its round trips are what
//     bounds a replica, so the writes a fn does not wait for (certificate
//     records, notifications without a key) are queued and sent with its next
//     statement, or with the next fn's first one when fn has none left
//     (pipeline.go, batch.go). Audit appends wait longer: the events of all the
//     fns of a batch go as one INSERT, which moves the head once, in the round
//     trip of its COMMIT (earlier if a fn reads the log). A queued write that
//     fails still fails fn, fn still reads its own writes and the events
//     appended before it, and a batch whose events cannot be inserted does not
//     commit.
//   - No session state. Nothing depends on which pooled connection runs what:
//     locks are row locks or transaction-scoped advisory locks (migrations), all
//     released at commit. (A session advisory lock taken through a pool can stay
//     with a connection that another goroutine gets next: two leaders.)
//   - A replica that freezes mid-transaction (SIGSTOP, a VM pause) would hold the
//     head lock and stall every writer; idle_in_transaction_session_timeout (set
//     on each connection unless the DSN sets it) makes the server end such a
//     session and roll it back.
//
// Write transactions run at READ COMMITTED: the compare-and-swap on version and the
// head lock give the guarantees the store promises, and no statement fails with a
// serialization error that would force re-running fn (which the Store contract
// does not allow once fn has run). View runs at REPEATABLE READ, READ ONLY: one
// snapshot for the whole function.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ajar-dev/ajar"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

const (
	// DefaultMaxConns is the pool size when the DSN has no pool_max_conns.
	DefaultMaxConns = 16
	// DefaultIdleInTransactionTimeout is the server-side limit on how long a
	// transaction may sit waiting for this process (set unless the DSN names
	// idle_in_transaction_session_timeout). Every ajar transaction is a few
	// statements with no outside call in between, so only a frozen or
	// partitioned replica reaches it, and its locks are freed at that point.
	DefaultIdleInTransactionTimeout = 5 * time.Second

	// migrationLock is the pg_advisory_xact_lock key that serializes migrations
	// from replicas starting at once ("ajar" in ASCII, then 1).
	migrationLock int64 = 0x616a6172_00000001

	beginWrite = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"
	beginRead  = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
	// nowMicros reads the transaction's start time, fixed until it ends, exactly
	// (microseconds since the epoch).
	nowMicros = "SELECT (extract(epoch FROM now()) * 1000000)::bigint"
)

// Store is an ajar.Store on a PostgreSQL database. It is safe for concurrent use,
// and any number of Stores (in any number of processes) may share one database.
type Store struct {
	pool     *pgxpool.Pool
	now      func() time.Time // nil: the database's clock
	maxBatch int
	closed   atomic.Bool

	batchWait time.Duration // maxBatchWait; tests change it
	commits   atomic.Int64  // batches committed, for tests

	// notifies is set once an Update enqueued a notification (tx.notifies).
	notifies atomic.Bool

	// The database's clock as a batch last read it, and this process's
	// clock then (batch.go: clockReuse). Guarded by clockMu.
	clockMu             sync.Mutex
	clockDB, clockLocal time.Time

	// Group commit (batch.go). wmu guards batch and wclosed; pending counts
	// Update calls waiting for wmu, so the holder knows whether to leave the
	// batch open for them.
	wmu     sync.Mutex
	pending atomic.Int64
	batch   *batch
	wclosed bool
}

var _ ajar.Store = (*Store)(nil)

type options struct {
	now      func() time.Time
	maxConns int32
	maxBatch int
}

// Option configures Open.
type Option func(*options)

// WithNow replaces the database's clock with now, for tests that need to move
// time. Never use it with several replicas: the database's clock is what makes
// them agree.
func WithNow(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithMaxConns sets the connection pool's size (default DefaultMaxConns, or
// pool_max_conns from the DSN).
func WithMaxConns(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxConns = int32(n)
		}
	}
}

// Open connects to the database named by dsn (a postgres:// URL or key=value
// string, as libpq takes) and applies any pending migrations. Several replicas
// may open the same database at once: migrations run one at a time under a
// transaction-scoped advisory lock.
func Open(ctx context.Context, dsn string, opts ...Option) (_ *Store, err error) {
	o := options{maxBatch: DefaultMaxBatch}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx removes the password from the DSN it quotes.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	switch {
	case o.maxConns > 0:
		cfg.MaxConns = o.maxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	params := cfg.ConnConfig.RuntimeParams
	if _, ok := params["idle_in_transaction_session_timeout"]; !ok {
		params["idle_in_transaction_session_timeout"] = strconv.FormatInt(DefaultIdleInTransactionTimeout.Milliseconds(), 10)
	}
	if _, ok := params["application_name"]; !ok {
		params["application_name"] = "ajar"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, now: o.now, maxBatch: o.maxBatch, batchWait: maxBatchWait}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("postgres: open %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return s, nil
}

// migrate applies every embedded migration not yet recorded in schema_migrations,
// in name order, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.migrateFile(ctx, name); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) migrateFile(ctx context.Context, name string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Held until this transaction ends: the next replica waits here, then finds
	// the migration recorded. Released at commit or rollback whatever happens to
	// the connection afterwards.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name       text        NOT NULL PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)`, name).Scan(&done); err != nil {
		return err
	}
	if !done {
		buf, err := fs.ReadFile(migrationFS, name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(buf)); err != nil { // no arguments: simple protocol, several statements
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name) VALUES ($1)`, name); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// Close waits for running Update calls, commits the batch they are in, and
// closes the pool, waiting for connections in use to be returned. It is safe to
// call more than once.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.wmu.Lock()
	if s.batch != nil {
		// An Update left the batch open for a caller that is still waiting for
		// wmu; commit it for those already in it.
		s.finish(context.Background(), s.batch, nil)
	}
	first := !s.wclosed
	s.wclosed = true
	s.wmu.Unlock()
	if first {
		s.pool.Close()
	}
	return nil
}

// errClosed is returned by Update and View after Close.
var errClosed = errors.New("postgres: store is closed")

// end finishes the transaction on conn (rolling back unless commit) and returns
// the connection to the pool, or closes it if its state is not known to be clean.
func end(ctx context.Context, conn *pgxpool.Conn, commit bool) error {
	defer conn.Release() // the pool drops a connection left in a transaction
	ctx = context.WithoutCancel(ctx)
	if !commit {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(rctx, "ROLLBACK"); err != nil {
			conn.Conn().PgConn().Close(ctx)
		}
		return nil
	}
	// Not cut short by the caller's context: the caller must learn whether its
	// write committed, and a COMMIT abandoned half way leaves that unknown.
	tag, err := conn.Exec(ctx, "COMMIT")
	if err != nil {
		conn.Conn().PgConn().Close(ctx)
		return fmt.Errorf("postgres: commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		// The server rolled back instead (the transaction had failed).
		return fmt.Errorf("postgres: commit: the transaction was rolled back (%s)", tag)
	}
	return nil
}

// View runs fn in a read-only transaction on one snapshot; see ajar.Store.
//
// BEGIN and the reading of the transaction's clock are queued (pipeline.go):
// they go in one round trip with fn's first statement, or when fn first calls
// Now. If they fail, so does every call of fn's ReadTx, and View returns that
// error even if fn ignored it. When a batch read the database's clock less
// than a second before, the View's clock goes on from that reading instead
// (see the package comment) and only BEGIN is queued.
func (s *Store) View(ctx context.Context, fn func(ajar.ReadTx) error) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: acquire connection: %w", err)
	}
	t := &readTx{q: dbConn{Conn: conn, p: &pipe{}}, ctx: ctx, nowUnread: true}
	t.q.queue(beginRead, nil, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: begin: %w", err)
		}
		return nil
	})
	if now, ok := s.recentClock(); ok && s.now == nil {
		// A batch read the database's clock a moment ago: go on from that
		// reading, as the next batch would, instead of a statement (and,
		// when fn asks for Now first, a round trip) of the View's own.
		t.now, t.nowUnread = now, false
	} else {
		t.q.queue(nowMicros, nil, t.readNow(s))
	}
	defer func() {
		t.done.Store(true)
		if len(t.q.p.q) > 0 {
			conn.Release() // BEGIN was never sent
			return
		}
		end(ctx, conn, false)
	}()
	if err := fn(t); err != nil {
		return err
	}
	return t.q.failed() // BEGIN or the clock failed (only they are queued)
}

// readNow reads a View's clock, nowMicros's reply (or s.now, with WithNow).
func (t *readTx) readNow(s *Store) func(pgx.BatchResults) error {
	return func(br pgx.BatchResults) error {
		var us int64
		if err := br.QueryRow().Scan(&us); err != nil {
			return fmt.Errorf("postgres: begin: database clock: %w", err)
		}
		t.now, t.nowUnread = time.UnixMicro(us).UTC(), false
		if s.now != nil {
			t.now = s.now().UTC()
		}
		return nil
	}
}

// recentClock returns the database's clock as a batch read it less than
// clockReuse ago plus the time since on this process's monotonic clock, if
// there is such a reading.
func (s *Store) recentClock() (time.Time, bool) {
	s.clockMu.Lock()
	db, local := s.clockDB, s.clockLocal
	s.clockMu.Unlock()
	if local.IsZero() {
		return time.Time{}, false
	}
	since := time.Since(local)
	if since >= clockReuse {
		return time.Time{}, false
	}
	return db.Add(since).UTC(), true
}
