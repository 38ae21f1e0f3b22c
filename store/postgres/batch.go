package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ajar-dev/ajar"
)

// Group commit.
//
// Every write transaction holds the audit chain-head lock until it commits, and
// a commit waits for its WAL fsync, so one transaction at a time cannot go
// faster than one fsync per Update, whatever the number of writers or replicas.
// Instead, the Update calls of one Store that arrive together share one
// transaction (a batch): each fn runs in its own SAVEPOINT, so fn's writes still
// commit or roll back as a unit, and the batch takes the head lock once and
// commits once, for one fsync. A fn that fails is rolled back to its savepoint
// and leaves nothing; the others in the batch go on. Update returns only once the
// batch has committed, and a batch that fails to commit fails every member that
// was in it.
//
// The callers themselves run their fns, one at a time under wmu, on the batch's
// connection (as the SQLite store does): a panic in fn stays on its caller's
// goroutine. A batch stays open while more callers wait for wmu, up to maxBatch
// fns or maxBatchWait, then the last member in it commits it. The functions of a
// batch run one after the other, so its round trips bound a replica's rate: the
// savepoint of a fn (and the release of the previous one) goes in one round trip
// with fn's first statement, the writes fn does not wait for are queued and go
// with its next statement (pipeline.go), those still queued when fn ends go with
// the next fn's first statement (Carried writes, below), and the last fn's go
// with the COMMIT. So do the audit events of all the fns of the batch that
// succeeded, in one INSERT that moves the chain head once (b.audit,
// pipeline.go); if it fails, nothing of the batch commits.
//
// Carried writes. When a fn succeeds with writes still queued (a certificate
// record, a notification without a key) and the batch goes on, they are not
// sent in a round trip of their own: fn's savepoint stays open and they wait on
// the batch (b.carry) until the next statement anyone sends, normally the next
// fn's first one, which goes in one round trip after them and after the release
// of fn's savepoint and the opening of the next one; if the batch ends first,
// they go with its COMMIT. Each fn's outcome stays its own:
//
//   - If a carried write fails, the server skips the rest of that round trip.
//     fn's savepoint is rolled back, the batch goes back to what it was before
//     fn (head lock, chain head, notification ids, audit events, kept fns:
//     dropCarry), fn's Update returns the write's error once the batch ends
//     (and runs no AfterCommit function), and what the next fn was sending goes
//     again without them, on the batch as it is now (tx.rebase).
//   - Until they are sent, the next fn runs on the state fn left (the head
//     lock, the chain head and the notification ids) but does not act on it
//     without a statement: its writes skip taking the head lock, which rebase
//     takes back first if fn's failure lost it; AppendAudit, AuditHead and
//     EnqueueNotification, which read the chain head or use the ids at once,
//     send the carried writes first (readTx.settle). A batch that ends, with
//     fn's writes still waiting, sends them before its COMMIT, and if they fail
//     commits without fn (finish, commitWith).
//   - Once they went through, fn's savepoint was released in that round trip:
//     nothing the next fn does afterwards (an error, a failed statement, a
//     panic) can undo fn.
//
// Locks. The batch takes the head lock at the first write of any of its fns and
// keeps it to the commit: from then on every later fn writes under it, so the
// lock order stays the one of single transactions (head, then rows). A lock
// taken inside a savepoint is released when the savepoint is rolled back, so if
// the fn that took the head lock fails, the batch no longer holds it and the
// next writing fn takes it again (reading the head afresh); the events it
// appended are dropped with it, so events wait in the batch's audit queue only
// while the batch holds the lock they were appended under. A claim (ClaimDue)
// made while the batch does not hold the head lock locks rows first; the batch
// then ends after that fn, so no later fn of it waits for the head lock while
// holding claimed rows (a cycle with a writer that holds the head lock and waits
// for one of them).

const (
	// DefaultMaxBatch is how many Update calls may share one commit. PostgreSQL
	// keeps the IDs of up to 64 subtransactions of a running transaction in
	// shared memory; past that, every other session's snapshot has to look
	// transaction status up on disk (pg_subtrans) while the batch runs.
	DefaultMaxBatch = 64

	// maxBatchWait bounds how long a batch stays open for more callers, so a
	// steady stream of them cannot hold back the ones already in it.
	maxBatchWait = 10 * time.Millisecond

	// clockMicros reads the database's clock, in microseconds since the epoch.
	clockMicros = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"

	// clockReuse is how long a reading of the database's clock serves later
	// batches (their clock is that reading plus the time since then on this
	// process's monotonic clock), so that most batches send BEGIN with their
	// first statement instead of in a round trip of its own.
	clockReuse = time.Second
)

// batch is one open write transaction shared by several Update calls. Its fields
// are used with Store.wmu held, except done and err.
type batch struct {
	conn  *pgxpool.Conn
	start time.Time
	n     int  // fns that ran in it
	kept  int  // fns that ran in it and succeeded
	cur   *tx  // the running fn's Tx, until endUpdate
	began bool // the batch's clock is set and BEGIN sent or in pre
	open  bool // BEGIN was sent
	// pre is what to send before the running fn's first statement, in the
	// same round trip: the end of the previous fn's savepoint and the start
	// of this one's. Empty once sent.
	pre []string
	// The database's clock when the batch began, and this process's then.
	clock0, local0 time.Time
	full           bool // take no more fns
	// broken is set when the transaction's state is unknown (a savepoint
	// failed): nobody in the batch may commit.
	broken error
	// The chain head as the last successful fn left it, if the batch holds
	// the head lock.
	headLocked bool
	headSeq    int64
	headHash   []byte
	// Notification ids reserved while the batch holds the head lock and not
	// used yet (workflow.go), in order.
	ids []int64
	// audit holds the batch's audit events until they are inserted
	// (pipeline.go); written, the requester and target of each request the
	// kept fns wrote, as the last of them wrote it (pipe.written).
	audit   auditQueue
	written map[string]requestKeys
	// carry holds the queued writes of a fn that succeeded, until they go
	// with the next statement (see Carried writes above); nil when none.
	carry *carry

	done chan struct{} // closed once err is set
	err  error         // the outcome of COMMIT
}

// carry is the queued writes of a fn that succeeded and was not the last of
// its batch, still to be sent, and what the batch was before that fn, to go
// back to if they fail (dropCarry).
type carry struct {
	t *tx // the fn; its queue (t.q.p) holds the writes
	// pre goes before them: the fn's savepoint, if it sent no statement.
	pre []string
	// The batch's head lock, chain head and notification ids before t, and
	// its audit queue's mark when t began (auditQueue.mark).
	headLocked       bool
	headSeq          int64
	headHash         []byte
	ids              []int64
	spLen, spFlushed int
}

// WithMaxBatch bounds how many Update calls share one commit (default
// DefaultMaxBatch); 1 turns group commit off.
func WithMaxBatch(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxBatch = n
		}
	}
}

// Update runs fn in a write transaction; see ajar.Store. fn must not call Update
// (the writer is not reentrant) and must not use its Tx after it returns or from
// another goroutine. If fn panics, its writes are rolled back and the panic
// continues.
//
// fn shares its transaction with other concurrent Update calls (see group commit
// above). Statements run with ctx's values but not its cancellation: a statement
// interrupted half way would break the connection and the batch shared with the
// other callers. fn sees a cancelled ctx through its own checks and through each
// Tx method, which fails at once when ctx is done.
//
// A nil return means committed. An error return means not committed, except when
// the connection itself is lost during COMMIT, which no client can tell apart.
func (s *Store) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	if s.closed.Load() {
		return errClosed
	}
	s.pending.Add(1)
	s.wmu.Lock()
	s.pending.Add(-1)
	if s.wclosed {
		s.wmu.Unlock()
		return errClosed
	}
	wctx := context.WithoutCancel(ctx)
	if s.batch == nil {
		if err := ctx.Err(); err != nil {
			s.wmu.Unlock()
			return err
		}
		b, err := s.beginBatch(ctx)
		if err != nil {
			s.wmu.Unlock()
			return err
		}
		s.batch = b
	}
	b := s.batch

	returned := false
	defer func() {
		if !returned {
			// fn panicked or called runtime.Goexit: undo its writes and free the
			// writer for everyone else while the panic goes on.
			s.endUpdate(wctx, b, errPanicked)
		}
	}()
	t, err := s.runFn(ctx, wctx, b, fn)
	returned = true
	if err = s.endUpdate(wctx, b, err); err != nil {
		return err
	}
	// fn's writes are in b; they are durable only once b commits. The wait is
	// not cut short by ctx: the caller must learn whether its write committed.
	<-b.done
	if t.carryErr != nil {
		// fn's carried writes failed: fn was rolled back (dropCarry).
		return t.carryErr
	}
	if b.err != nil {
		return b.err
	}
	for _, f := range t.after {
		f()
	}
	return nil
}

// beginBatch takes a connection for a new batch; its first fn begins the
// transaction. Called with wmu held.
func (s *Store) beginBatch(ctx context.Context) (*batch, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: acquire connection: %w", err)
	}
	return &batch{conn: conn, start: time.Now(), done: make(chan struct{})}, nil
}

// runFn opens fn's savepoint and runs fn in it, with b.cur set to fn's Tx,
// and returns that Tx. Called with wmu held.
func (s *Store) runFn(ctx, wctx context.Context, b *batch, fn func(ajar.Tx) error) (*tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case !b.began && s.reuseClock(b):
		// The database's clock was read a moment ago: go on from that
		// reading, and send BEGIN with fn's first statement.
		b.began = true
		b.pre = []string{beginWrite, "SAVEPOINT u"}
	case !b.began:
		// Begin the transaction and read the database's clock.
		b.began, b.open = true, true
		res, err := b.conn.Conn().PgConn().Exec(wctx, beginWrite+"; "+clockMicros).ReadAll()
		if err == nil {
			b.clock0, err = parseClock(res)
		}
		if err != nil {
			err = fmt.Errorf("postgres: begin: %w", err)
			b.broken = err
			return nil, err
		}
		b.local0 = time.Now()
		s.clockMu.Lock()
		s.clockDB, s.clockLocal = b.clock0, b.local0
		s.clockMu.Unlock()
		b.pre = []string{"SAVEPOINT u"}
	case b.pre == nil:
		b.pre = []string{"RELEASE SAVEPOINT u", "SAVEPOINT u"}
	}
	// fn's savepoint opens with its first statement (dbConn). Its clock is
	// the database's at the batch's start plus the time since then on this
	// machine's monotonic clock.
	now := b.clock0.Add(time.Since(b.local0))
	if s.now != nil {
		now = s.now()
	}
	b.n++
	b.audit.mark()
	t := &tx{readTx: readTx{
		q: dbConn{Conn: b.conn, b: b, p: &pipe{}}, now: now.UTC(),
		headLocked: b.headLocked, headSeq: b.headSeq, headHash: b.headHash,
	}, ids: b.ids, notifies: &s.notifies}
	b.cur = t
	defer t.done.Store(true)
	err := fn(t)
	switch {
	case err != nil:
	case t.failed() != nil:
		// fn went on after a statement failed; PostgreSQL aborted everything
		// since the savepoint at that point, so fn's work is not whole.
		err = fmt.Errorf("postgres: update ignored a failed statement: %w", t.failed())
	case b.open && b.conn.Conn().PgConn().TxStatus() != 'T':
		// A failure that did not go through fail: the same, and keeping it
		// would fail the whole batch.
		err = errors.New("postgres: update ignored a failed statement")
	}
	return t, err
}

// reuseClock sets b's clock to the last reading of the database's clock if
// it is less than clockReuse old, and reports whether it did.
func (s *Store) reuseClock(b *batch) bool {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if s.clockLocal.IsZero() || time.Since(s.clockLocal) >= clockReuse {
		return false
	}
	b.clock0, b.local0 = s.clockDB, s.clockLocal
	return true
}

// parseClock reads clockMicros's reply, the last result of a simple query.
func parseClock(res []*pgconn.Result) (time.Time, error) {
	if len(res) == 0 {
		return time.Time{}, fmt.Errorf("no reply to %q", clockMicros)
	}
	last := res[len(res)-1]
	if len(last.Rows) != 1 || len(last.Rows[0]) != 1 {
		return time.Time{}, fmt.Errorf("unexpected reply to %q", clockMicros)
	}
	us, err := strconv.ParseInt(string(last.Rows[0][0]), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("database clock: %w", err)
	}
	return time.UnixMicro(us).UTC(), nil
}

// errPanicked is endUpdate's fn error when fn did not return.
var errPanicked = errors.New("postgres: update function panicked")

// endUpdate sends what the running fn queued (pipeline.go), then keeps fn's
// writes and audit events in the batch (fnErr nil and the queued statements
// succeeded) or rolls its savepoint back and drops its events, then commits the
// batch if nobody is waiting to join it, it is full or it has been open long
// enough. When the batch ends after fn, the queued statements go in one round
// trip with the batch's audit events and the COMMIT; when it goes on, they are
// carried to the next statement (carryOn) if they can be. It returns fn's
// outcome: fnErr, or the error of a statement it queued, or, if the batch ended
// with fn in the same round trip, the batch's; nil for carried writes, whose
// error Update takes from carryErr once the batch has ended. It unlocks wmu.
func (s *Store) endUpdate(ctx context.Context, b *batch, fnErr error) error {
	defer s.wmu.Unlock()
	err := fnErr
	if t := b.cur; t != nil && b.broken == nil {
		if t.claimedFirst && !t.headLocked {
			b.full = true // see Locks above
		}
		if err == nil && len(t.q.p.q) > 0 {
			switch {
			case s.ending(b):
				return s.commitWith(ctx, b, t)
			case b.carry == nil && t.q.failed() == nil && !t.headUnread && !t.idsUnread:
				// (Only writes are left in the queue, whose reads set
				// nothing of t's: the next fn starts from t's head and
				// ids.)
				b.cur = nil
				s.carryOn(b, t)
				return nil
			}
			// Another fn's writes are carried (this fn sent no statement),
			// or the queue reads the head or ids: send it all now.
			err = t.q.flush(ctx)
		}
		b.cur = nil
		switch {
		case err == nil && (b.pre == nil || b.audit.appended()):
			// (fn may append under the batch's head lock without sending
			// a statement: its events are all it wrote.)
			s.keep(b, t)
		case b.pre != nil:
			// fn sent no statement: its savepoint was never opened and there
			// is nothing to undo but the events it appended, never sent. The
			// next fn sends pre.
			b.audit.rollback()
		default:
			s.rollbackFn(ctx, b)
		}
	}
	switch {
	case b.broken != nil:
		s.finish(ctx, b, fmt.Errorf("postgres: transaction aborted: %w", b.broken))
	case s.ending(b):
		s.finish(ctx, b, nil)
	}
	return err
}

// ending reports whether b should commit after the fn that just ran.
func (s *Store) ending(b *batch) bool {
	return s.pending.Load() == 0 || b.full || b.n >= s.maxBatch || time.Since(b.start) >= s.batchWait
}

// keep keeps the running fn t's writes in b: its events stay in b.audit, and
// the head, the notification ids and the requests as t left them are the
// batch's.
func (s *Store) keep(b *batch, t *tx) {
	b.kept++
	b.headLocked, b.headSeq, b.headHash, b.ids = t.headLocked, t.headSeq, t.headHash, t.ids
	b.keepWritten(t)
}

// keepWritten makes the requests t wrote, as it wrote them, the batch's.
func (b *batch) keepWritten(t *tx) {
	if len(t.q.p.written) > 0 && b.written == nil {
		b.written = make(map[string]requestKeys, len(t.q.p.written))
	}
	for id, k := range t.q.p.written {
		b.written[id] = k
	}
}

// carryOn keeps the running fn t, which succeeded with writes still queued,
// in b as keep does, but leaves its savepoint open and its writes queued, to
// be sent with the next statement (Carried writes above). The requests t
// wrote become the batch's once they are sent (settleCarry): nothing reads
// them before.
func (s *Store) carryOn(b *batch, t *tx) {
	b.carry = &carry{
		t: t, pre: b.pre,
		headLocked: b.headLocked, headSeq: b.headSeq, headHash: b.headHash, ids: b.ids,
		spLen: b.audit.spLen, spFlushed: b.audit.spFlushed,
	}
	b.pre = nil // sent before t's writes, with them
	b.kept++
	b.headLocked, b.headSeq, b.headHash, b.ids = t.headLocked, t.headSeq, t.headHash, t.ids
}

// settleCarry records that b's carried writes went through: their fn is kept
// for good. Its savepoint was released in the same round trip, unless the
// batch was committing.
func (b *batch) settleCarry() {
	b.keepWritten(b.carry.t)
	b.carry = nil
	if t := b.cur; t != nil {
		t.leaned = false
	}
}

// dropCarry undoes the fn whose carried writes failed with err (the server
// skipped the rest of their round trip): it rolls the fn's savepoint back,
// puts the batch back as it was before the fn, and records err as the fn's
// outcome (Update). The running fn, if any, which sent nothing yet, starts
// again from there (rebase). If the rollback fails, the transaction is lost
// and dropCarry returns that error.
func (b *batch) dropCarry(ctx context.Context, err error) error {
	c := b.carry
	b.carry = nil
	c.t.carryErr = err
	if _, rerr := b.conn.Conn().PgConn().Exec(ctx, "ROLLBACK TO SAVEPOINT u").ReadAll(); rerr != nil {
		b.broken = fmt.Errorf("postgres: rollback to savepoint: %w", rerr)
		return b.broken
	}
	b.kept--
	b.headLocked, b.headSeq, b.headHash, b.ids = c.headLocked, c.headSeq, c.headHash, c.ids
	// The fn's events go, and the earlier fns' that an INSERT inside its
	// savepoint carried wait again (auditQueue.rollback). The running fn
	// appended none (AppendAudit settles first).
	b.audit.spLen, b.audit.spFlushed = c.spLen, c.spFlushed
	b.audit.rollback()
	if t := b.cur; t != nil {
		b.audit.mark()
		t.rebase(b)
	}
	return nil
}

// rollbackFn undoes everything since the running fn's savepoint; the head
// lock, taken before it, stays. fn's audit events are dropped, and the earlier
// fns' ones that an INSERT inside the savepoint carried wait again. If that
// fails, the transaction is lost.
func (s *Store) rollbackFn(ctx context.Context, b *batch) {
	b.audit.rollback()
	if _, err := b.conn.Conn().PgConn().Exec(ctx, "ROLLBACK TO SAVEPOINT u").ReadAll(); err != nil {
		b.broken = fmt.Errorf("postgres: rollback to savepoint: %w", err)
	}
}

// commitWith ends b after its last fn t, sending t's queued statements, the
// batch's audit events and COMMIT in one round trip (after the writes carried
// from the fn before t, if t sent no statement). If one of t's statements
// fails, the server skips the rest (COMMIT included) and the transaction is
// aborted: t's savepoint is rolled back and the batch commits the others'
// writes as finish does, and t's error is returned. (Queued statements fail
// only on the server: pipeline.go.) If a carried write fails, only its fn
// fails (dropCarry) and the rest goes again. If the audit INSERT fails,
// nothing of the batch commits.
func (s *Store) commitWith(ctx context.Context, b *batch, t *tx) error {
	br, err := t.q.withAudit().send(ctx, "COMMIT", nil)
	if err != nil {
		var aerr *auditInsertError
		switch {
		case b.broken != nil:
		case errors.As(err, &aerr):
			// t's statements went through: t is one of the batch's
			// updates that do not commit.
			b.kept++
			s.finish(ctx, b, fmt.Errorf("postgres: commit: %w (a batch of %d updates, none committed)", err, b.kept))
			return b.err
		default:
			s.rollbackFn(ctx, b)
		}
		if b.broken != nil {
			s.finish(ctx, b, fmt.Errorf("postgres: transaction aborted: %w", b.broken))
			return b.err
		}
		s.finish(ctx, b, nil)
		return err
	}
	b.kept++
	s.batch = nil
	b.err = s.readCommit(ctx, b, br)
	b.conn.Release()
	close(b.done)
	return nil
}

// readCommit reads the outcome of the COMMIT that ends br and closes br. It
// closes the connection if the COMMIT itself failed.
func (s *Store) readCommit(ctx context.Context, b *batch, br pgx.BatchResults) error {
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		b.conn.Conn().PgConn().Close(ctx)
		return fmt.Errorf("postgres: commit: %w (a batch of %d updates, none committed)", err, b.kept)
	case tag.String() != "COMMIT":
		return fmt.Errorf("postgres: commit: the transaction was rolled back (%s) (a batch of %d updates, none committed)", tag, b.kept)
	}
	s.commits.Add(1)
	return nil
}

// finish ends b: it commits, or rolls back if abort is set or no fn in b
// succeeded, returns the connection and wakes everyone waiting on b. The
// writes carried from the last fn that queued some and the batch's audit
// events not inserted yet go in one round trip with the COMMIT; if a carried
// write fails, its fn is rolled back (dropCarry) and the batch commits without
// it; if the events cannot be inserted, nothing commits. Called with wmu held.
func (s *Store) finish(ctx context.Context, b *batch, abort error) {
	s.batch = nil
	b.err = abort
	switch {
	case !b.open && b.carry == nil:
		b.conn.Release()
	case abort != nil || b.kept == 0:
		end(ctx, b.conn, false)
	default:
		// pre, if set, opens a savepoint nobody used: the COMMIT goes
		// without it.
		b.pre = nil
		c := dbConn{Conn: b.conn, b: b}.withAudit()
		var br pgx.BatchResults
		var err error
		for {
			var carried error
			br, carried, err = c.sendOnce(c.ctx(ctx), "COMMIT", nil)
			if carried == nil {
				break
			}
			if err = b.dropCarry(ctx, carried); err != nil || b.kept == 0 {
				break
			}
		}
		switch {
		case err != nil:
			// The audit INSERT failed, and the server skipped the COMMIT;
			// or the transaction was lost.
			b.err = fmt.Errorf("postgres: commit: %w (a batch of %d updates, none committed)", err, b.kept)
			end(ctx, b.conn, false)
		case br == nil:
			// The carried writes of the one fn kept failed: nothing to
			// commit.
			end(ctx, b.conn, false)
		default:
			b.err = s.readCommit(ctx, b, br)
			b.conn.Release()
		}
	}
	close(b.done)
}

// dbConn runs a transaction's statements on its connection. In a batch (b set),
// they run without the caller's cancellation (see Update), and the first one of
// a fn goes in one round trip with b.pre (its savepoint) and, with p set (an
// Update fn's Tx), with the statements fn queued before it (pipeline.go); with
// audit set (withAudit), with the batch's audit events not inserted yet too.
type dbConn struct {
	*pgxpool.Conn
	b     *batch
	p     *pipe
	audit bool
}

func (c dbConn) ctx(ctx context.Context) context.Context {
	if c.b != nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// failed returns the error of a queued statement that failed, if any.
func (c dbConn) failed() error {
	if c.p != nil {
		return c.p.err
	}
	return nil
}

func (c dbConn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	ctx = c.ctx(ctx)
	if err := c.failed(); err != nil {
		return pgconn.CommandTag{}, err
	}
	if !c.waiting() {
		return c.Conn.Exec(ctx, sql, args...)
	}
	br, err := c.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (c dbConn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	ctx = c.ctx(ctx)
	if err := c.failed(); err != nil {
		return nil, err
	}
	if !c.waiting() {
		return c.Conn.Query(ctx, sql, args...)
	}
	br, err := c.send(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		rows.Close()
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (c dbConn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	ctx = c.ctx(ctx)
	if err := c.failed(); err != nil {
		return errRow{err}
	}
	if !c.waiting() {
		return c.Conn.QueryRow(ctx, sql, args...)
	}
	br, err := c.send(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// batchRows are the rows of a pipelined query; the pipeline ends with them
// (Close, or Next reaching the end, as pgx.Rows closes itself).
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) end() {
	if !r.closed {
		r.closed = true
		r.err = r.br.Close()
	}
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.end()
	return false
}

func (r *batchRows) Close() {
	r.Rows.Close()
	r.end()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
