// Package sqlite is ajar's embedded store: one SQLite file (modernc.org/sqlite, pure
// Go) in WAL mode with synchronous=FULL, so a transaction that Update reported as
// committed survives a crash of the process or of the machine.
//
// All writes go through one connection. Concurrent Update calls are committed
// together (group commit): each fn runs in its own SAVEPOINT inside a shared
// BEGIN IMMEDIATE transaction, so fn's writes still commit or roll back as a unit,
// but a burst of callers pays for one fsync instead of one each. Update returns
// only once the shared transaction has committed. View runs on a separate pool of
// read-only connections and never waits for the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ajar-dev/ajar"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

const (
	// DefaultReadConns is the size of View's connection pool.
	DefaultReadConns = 4
	// DefaultMaxBatch is how many Update calls may share one commit.
	DefaultMaxBatch = 128

	// busyTimeout is how long a statement waits for a lock held by another
	// process (another ajar, or a backup tool) before failing with SQLITE_BUSY.
	busyTimeout = 10 * time.Second
	// maxBatchWait bounds how long a batch stays open for more callers, so a
	// steady stream of them cannot hold back the ones already in it. A batch
	// ends sooner when nobody waits to join; under load it is what sizes the
	// batches: each caller holds the writer about a millisecond, and each
	// commit writes the pages its callers changed and waits for an fsync, so
	// a longer bound shares both among more callers (5 ms made batches of
	// about five over HTTP; 25 ms cut the bytes written per request by a
	// quarter).
	maxBatchWait = 25 * time.Millisecond
	// lingerDelay is how long a batch with fewer callers than the one before
	// it waits for more before it commits (see endUpdate).
	lingerDelay = time.Millisecond
)

// Store is an ajar.Store on a SQLite file. It is safe for concurrent use.
type Store struct {
	now      func() time.Time
	maxBatch int

	writeDB *sql.DB   // exactly one connection, held as wconn
	wconn   *sql.Conn // the writer; used only with wmu held
	readDB  *sql.DB   // read-only pool for View

	// Group commit. wmu guards the writer connection and batch; pending counts
	// Update calls waiting for wmu, so the holder knows whether to leave the
	// transaction open for them.
	wmu     sync.Mutex
	pending atomic.Int64
	batch   *batch
	last    int // callers in the last batch committed
	closed  bool
	// readOnly is set by OpenReadOnly: there is no writer and Update fails.
	readOnly bool
	// inSavepoint is set while an Update's fn runs inside SAVEPOINT u.
	inSavepoint bool
	// head is the open batch's audit chain head (see auditHead); spHead is
	// what it was when the running fn's savepoint began.
	head, spHead auditHead
	// audit holds the open batch's audit events until they are inserted.
	audit auditQueue

	ckpt *checkpointer // nil in a read-only Store

	wstmts stmtCache // prepared on wconn, used with wmu held
	rstmts stmtCache // prepared on readDB, bound to each read tx
}

// batch is one open write transaction shared by several Update calls.
type batch struct {
	start time.Time
	n     int           // fns that ran in it
	timer bool          // a commit after lingerDelay is set
	done  chan struct{} // closed once err is set
	err   error         // the outcome of COMMIT
}

var _ ajar.Store = (*Store)(nil)

// Option configures Open.
type Option func(*Store)

// WithNow sets the store's clock (default time.Now). ReadTx.Now reads it once per
// transaction and returns it in UTC.
func WithNow(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// WithReadConns sets the number of read-only connections View uses (default
// DefaultReadConns).
func WithReadConns(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.readDB.SetMaxOpenConns(n)
			s.readDB.SetMaxIdleConns(n)
		}
	}
}

// WithMaxBatch bounds how many Update calls share one commit (default
// DefaultMaxBatch); 1 turns group commit off.
func WithMaxBatch(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.maxBatch = n
		}
	}
}

// Open opens (creating if needed) the database file at path and applies any
// pending migrations. path is a file name, not a DSN; in-memory databases are not
// supported because readers and the writer use separate connections.
func Open(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("sqlite: open: a database file path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// The file holds sealed keys and token hashes: create it for the owner only.
	// SQLite gives the -wal and -shm files the same mode.
	if f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	base := (&url.URL{Scheme: "file", Path: abs}).String()
	common := url.Values{}
	common.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	common.Set("_foreign_keys", "1")

	w := maps.Clone(common)
	w.Set("_journal_mode", "WAL")
	// FULL: in WAL mode every commit fsyncs the WAL, so a committed revocation
	// intent survives a power cut, not only a killed process. Group commit pays
	// for it.
	w.Set("_synchronous", "FULL")
	w.Add("_pragma", "journal_size_limit(67108864)")
	// Each Update's SAVEPOINT keeps a sub-journal of the pages it changed; in
	// memory it costs no write syscalls.
	w.Add("_pragma", "temp_store(MEMORY)")
	// Checkpoints run in the background (checkpoint.go); the writer only
	// steps in past this many pages.
	w.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", writerCheckpointPages))

	r := maps.Clone(common)
	r.Set("_query_only", "1")

	s := &Store{now: time.Now, maxBatch: DefaultMaxBatch}
	if s.writeDB, err = sql.Open("sqlite", base+"?"+w.Encode()); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if s.readDB, err = sql.Open("sqlite", base+"?"+r.Encode()); err != nil {
		s.writeDB.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.writeDB.SetMaxOpenConns(1)
	s.writeDB.SetMaxIdleConns(1)
	s.writeDB.SetConnMaxLifetime(0)
	s.writeDB.SetConnMaxIdleTime(0)
	s.readDB.SetMaxOpenConns(DefaultReadConns)
	s.readDB.SetMaxIdleConns(DefaultReadConns)
	for _, o := range opts {
		o(s)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if s.wconn, err = s.writeDB.Conn(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	var mode string
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if mode != "wal" {
		return nil, fmt.Errorf("sqlite: open %s: journal_mode is %q, want wal", path, mode)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// Refresh the planner's statistics where they are missing or stale (cheap;
	// SQLite limits the work), so ListRequests picks the right index.
	if _, err := s.wconn.ExecContext(ctx, "PRAGMA optimize=0x10002"); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: optimize: %w", path, err)
	}
	// Fail now, not at the first View, if the readers cannot open the file.
	if err := s.readDB.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	c := maps.Clone(common)
	c.Set("_synchronous", "FULL")
	ckdb, err := sql.Open("sqlite", base+"?"+c.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	ckdb.SetMaxOpenConns(1)
	if err := ckdb.PingContext(ctx); err != nil {
		ckdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.ckpt = newCheckpointer(ckdb)
	return s, nil
}

// migrate applies every embedded migration not yet recorded in schema_migrations,
// in name order, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.wconn.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT NOT NULL PRIMARY KEY) STRICT`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
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

func (s *Store) migrateFile(ctx context.Context, name string) (err error) {
	if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.wconn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var n int
	if err := s.wconn.QueryRowContext(ctx,
		`SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		_, err := s.wconn.ExecContext(ctx, "COMMIT")
		return err
	}
	buf, err := fs.ReadFile(migrationFS, name)
	if err != nil {
		return err
	}
	if _, err := s.wconn.ExecContext(ctx, string(buf)); err != nil {
		return err
	}
	if _, err := s.wconn.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES (?)`, name); err != nil {
		return err
	}
	_, err = s.wconn.ExecContext(ctx, "COMMIT")
	return err
}

// Close waits for running Update calls and closes the database. It is safe to call
// more than once.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ckpt != nil {
		s.ckpt.close()
	}
	if s.batch != nil {
		// An Update left the batch open for a caller that is still waiting for
		// wmu; commit it for those already in it.
		s.finish(context.Background(), s.batch, nil)
	}
	s.wstmts.close()
	s.rstmts.close()
	var errs []error
	if s.wconn != nil {
		errs = append(errs, s.wconn.Close())
	}
	if s.readDB != nil {
		errs = append(errs, s.readDB.Close())
	}
	if s.writeDB != nil {
		errs = append(errs, s.writeDB.Close())
	}
	return errors.Join(errs...)
}

// errClosed is returned by Update after Close.
var errClosed = errors.New("sqlite: store is closed")

// Update runs fn in a write transaction; see ajar.Store. fn must not call Update
// (the writer is not reentrant) and must not use its Tx after it returns or from
// another goroutine. If fn panics, its writes are rolled back and the panic
// continues.
//
// Statements run with ctx's values but not its cancellation: interrupting a
// statement would roll back the transaction shared with other callers. fn sees a
// cancelled ctx through its own checks and through each Tx method, which fails
// at once when ctx is done.
func (s *Store) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	s.pending.Add(1)
	s.wmu.Lock()
	s.pending.Add(-1)
	if s.closed {
		s.wmu.Unlock()
		return errClosed
	}
	wctx := context.WithoutCancel(ctx)
	if s.batch == nil {
		if err := s.execControl(wctx, "BEGIN IMMEDIATE"); err != nil {
			s.wmu.Unlock()
			return fmt.Errorf("sqlite: begin: %w", err)
		}
		s.head = auditHead{} // read from the table: someone may have written since
		s.batch = &batch{done: make(chan struct{}), start: time.Now()}
	}
	b := s.batch
	b.n++

	returned := false
	defer func() {
		if !returned {
			// fn panicked or called runtime.Goexit: undo its writes and free the
			// writer for everyone else while the panic goes on.
			s.endUpdate(wctx, b, false)
		}
	}()
	t, err := s.runFn(ctx, wctx, fn)
	returned = true
	s.endUpdate(wctx, b, err == nil)
	if err != nil {
		return err
	}
	// fn's writes are in b; they are durable only once b commits. The wait is
	// not cut short by ctx: the caller must learn whether its write committed.
	<-b.done
	if b.err != nil {
		return b.err
	}
	for _, f := range t.after {
		f()
	}
	return nil
}

// runFn runs fn inside SAVEPOINT u and returns the Tx it ran with. Called
// with wmu held.
func (s *Store) runFn(ctx, wctx context.Context, fn func(ajar.Tx) error) (*tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.execControl(wctx, "SAVEPOINT u"); err != nil {
		return nil, fmt.Errorf("sqlite: savepoint: %w", err)
	}
	s.inSavepoint = true
	s.spHead = s.head
	s.audit.mark()
	t := &tx{readTx: readTx{now: s.now().UTC(), detach: true, q: s.wconn, stmt: s.writeStmt}, head: &s.head, audit: &s.audit}
	defer t.done.Store(true)
	err := fn(t)
	if err == nil && t.failed() != nil {
		// fn went on after a statement failed; SQLite may have rolled back more
		// than that statement, so fn's work cannot be trusted to be whole.
		err = fmt.Errorf("sqlite: update ignored a failed statement: %w", t.failed())
	}
	return t, err
}

// endUpdate releases fn's savepoint, or rolls it back unless ok, then commits the
// batch if nobody is waiting to join it or it is full. It unlocks wmu.
func (s *Store) endUpdate(ctx context.Context, b *batch, ok bool) {
	defer s.wmu.Unlock()
	var err error
	if s.inSavepoint {
		s.inSavepoint = false
		if !ok {
			err = s.execControl(ctx, "ROLLBACK TO u")
			s.head = s.spHead // fn's events are gone
			s.audit.rollback()
		}
		if err == nil {
			err = s.execControl(ctx, "RELEASE u")
		}
	}
	switch {
	case err != nil:
		// The savepoint is gone: SQLite rolled back the whole transaction (or its
		// state is unknown), so nobody in this batch may commit.
		s.finish(ctx, b, fmt.Errorf("sqlite: transaction aborted: %w", err))
	case s.pending.Load() == 0 && b.n < s.last && b.n < s.maxBatch && time.Since(b.start) < maxBatchWait:
		// Nobody waits, but the last batch had more callers: they were
		// answered together and are likely on their way back. Committing now
		// would make this batch of one or two and the next of the rest, with
		// an fsync each; leave it open a moment for them instead. Whoever
		// joins decides again; if nobody does, the timer commits it.
		if !b.timer {
			b.timer = true
			time.AfterFunc(lingerDelay, func() {
				s.wmu.Lock()
				defer s.wmu.Unlock()
				if s.batch == b {
					s.finish(context.Background(), b, nil)
				}
			})
		}
	case s.pending.Load() == 0, b.n >= s.maxBatch, time.Since(b.start) >= maxBatchWait:
		s.finish(ctx, b, nil)
	}
}

// finish ends b: it commits, or rolls back if abort is set, and wakes everyone
// waiting on b. Called with wmu held.
func (s *Store) finish(ctx context.Context, b *batch, abort error) {
	s.batch = nil
	s.last = b.n
	s.head = auditHead{}
	b.err = abort
	if abort == nil {
		// The batch's audit events go in with it: if they cannot, none of
		// the changes they record may commit.
		if err := s.audit.flush(ctx, s.writeStmt); err != nil {
			b.err = err
		} else if err := s.execControl(ctx, "COMMIT"); err != nil {
			b.err = fmt.Errorf("sqlite: commit: %w", err)
		}
	}
	s.audit.reset()
	if b.err != nil {
		// Harmless if SQLite already rolled back on its own.
		s.wconn.ExecContext(ctx, "ROLLBACK")
	} else if s.ckpt != nil {
		s.ckpt.kick()
	}
	close(b.done)
}

// View runs fn in a read-only transaction on a consistent snapshot; see ajar.Store.
func (s *Store) View(ctx context.Context, fn func(ajar.ReadTx) error) error {
	sqlTx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin read: %w", err)
	}
	defer sqlTx.Rollback()
	t := &readTx{now: s.now().UTC(), q: sqlTx, stmt: func(ctx context.Context, query string) (*sql.Stmt, error) {
		if st := s.rstmts.lookup(query); st != nil {
			return sqlTx.StmtContext(ctx, st), nil
		}
		// Preparing on the pool would need a second connection while this
		// transaction holds one: with every read connection held by a View
		// doing the same, nothing could move. Prepare on this transaction now,
		// and for the cache in the background, holding no connection.
		s.rstmts.prepareLater(s.readDB, query)
		return sqlTx.PrepareContext(ctx, query)
	}}
	defer t.done.Store(true)
	return fn(t)
}

func (s *Store) writeStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	return s.wstmts.get(ctx, s.wconn, query)
}

// execControl runs a transaction-control statement (BEGIN, SAVEPOINT,
// RELEASE, COMMIT...) on the writer, prepared once: they run for every
// Update, and parsing them each time showed in profiles. Called with wmu held.
func (s *Store) execControl(ctx context.Context, query string) error {
	st, err := s.writeStmt(ctx, query)
	if err == nil {
		_, err = st.ExecContext(ctx)
	}
	return err
}

// stmtCache holds prepared statements for the fixed queries, keyed by their text.
type stmtCache struct {
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
	closed  bool
	wg      sync.WaitGroup // background prepares, waited for by close
}

// lookup returns the cached statement for query, or nil.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

// prepareLater prepares query on db in the background (once) and caches it. The
// caller may hold one of db's connections: this never waits for another one.
func (c *stmtCache) prepareLater(db *sql.DB, query string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.pending[query] || c.m[query] != nil {
		return
	}
	if c.pending == nil {
		c.pending = make(map[string]bool)
	}
	c.pending[query] = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		st, err := db.PrepareContext(context.Background(), query)
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.pending, query)
		if err != nil {
			return
		}
		if c.closed {
			st.Close()
			return
		}
		if c.m == nil {
			c.m = make(map[string]*sql.Stmt)
		}
		c.m[query] = st
	}()
}

type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func (c *stmtCache) get(ctx context.Context, p preparer, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	st, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st, nil
}

// close closes the cached statements and waits for background prepares, so
// nothing touches the database after the store is closed.
func (c *stmtCache) close() {
	c.mu.Lock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}
