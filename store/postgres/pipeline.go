package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
)

// Pipelining.
//
// A write transaction's statements run one after the other on one connection
// while its batch holds the chain-head lock (batch.go), so their round trips,
// not the server's work, bound how many requests a replica commits a second.
// The writes whose result fn does not wait for (the head lock, a certificate
// record, a notification without a key, whose id is reserved beforehand:
// workflow.go) are therefore queued on the Tx instead of sent, and go in one
// round trip with the next statement that needs a result. Those still queued
// when fn ends are carried (Carried writes in batch.go): they go with the next
// statement of the batch, normally the next fn's first, or with its COMMIT if
// the batch ends first (commitWith, finish). They go at the end of fn instead,
// in a round trip of their own, when they take the head lock or reserve
// notification ids (the next fn starts from their results), or when another
// fn's writes are still carried. The
// notifications queued together go as one INSERT of all their rows (sent
// after the certificate records queued among them, which touch nothing they
// touch). Every statement has a cost of its own on the server, whatever its
// rows.
//
// Audit appends go further: they wait in the batch's auditQueue, not fn's, and
// the events of every fn of the batch that succeeded go as one INSERT (more
// if there are more than maxAuditRows) in the round trip of the batch's COMMIT,
// so the head moves once per batch (migration 0009: a statement trigger checks
// that the rows extend the head in sequence and moves it). AppendAudit sets
// an event's seq and hashes at once, so the chain is fixed when it returns;
// the queue only delays the INSERT. The events not inserted yet go earlier,
// in the round trip of the statement that needs them in the table: a read of
// the log (ListAudit, or AuditHead when it reads the head row) and a write to
// a request that a waiting event names without its requester and target
// (qInsertAudit), whose trigger must read the request as it was when the
// event was appended. An INSERT sent inside a fn's savepoint is undone if that
// fn is rolled back: its events are dropped and the earlier fns' ones it
// carried wait again (auditQueue.rollback).
//
// The order of statements is the order of the calls: whatever fn queued is sent
// before the statement that flushes it, so a read sees every write fn made
// before it and the head lock is still taken before any other write.
//
// The error contract stays the one of a statement sent at once, but an error
// may be reported later: when a queued statement fails (or its result check
// does, e.g. ECONFLICT for a certificate serial that exists), the Tx records
// that error, the call that flushed it returns it and so does every later call,
// and fn's Update returns it even if fn ignored it. fn's savepoint is rolled
// back, so nothing fn wrote survives. A write carried past fn's end fails fn
// the same way, and fn alone: fn's Update returns its error once the batch has
// ended, without running fn's AfterCommit functions, and the next fn, which
// sent it with its own statement or before reading the chain head or the
// notification ids fn left, goes on as if fn had not run (batch.dropCarry,
// tx.rebase). The writes whose result a caller acts on
// at once (CreateRequest's ECONFLICT, compare-and-swap updates, a notification
// whose key may be taken, ENOTFOUND of an update) are sent at once, as before.
// AppendAudit refuses at once an event whose fields the INSERT would refuse
// (sqlcodec.CheckAuditEvent, and text with NUL or invalid UTF-8), so that one
// fn's event does not fail the others'. If a batch's INSERT of audit events
// fails all the same (say, a value too large for an index entry), the same
// holds when a call of fn sent it (the call and fn fail, fn's savepoint is
// rolled back); when the batch's COMMIT does, nothing of the batch commits and
// every Update in it returns the error: no change is stored without its
// events. One difference remains: InsertSSHCert's ECONFLICT (a serial that
// exists, which random 64-bit serials make a bug, not a race) ends fn, where
// the SQLite store lets fn handle it and go on.

// pipe is the queue of one Update fn's Tx.
type pipe struct {
	q []queued
	// err is the first queued statement's failure (or failed check): once
	// set, every later call of the Tx returns it.
	err error
	// written holds the requester and target of each request fn inserted
	// or updated, by id: its row holds them until the transaction ends (the
	// row stays locked), so fn's audit events about it name them
	// (qInsertAudit), and so do the later fns' of the batch once fn is kept
	// (batch.written).
	written map[string]requestKeys
}

// requestKeys are the columns of a request that its audit events copy.
type requestKeys struct{ requester, target string }

// wrote records that fn wrote r (inserted or updated its row) as it is now.
func (c dbConn) wrote(r *ajar.Request) {
	if c.p == nil {
		return
	}
	if c.p.written == nil {
		c.p.written = make(map[string]requestKeys)
	}
	c.p.written[r.ID] = requestKeys{requester: r.Requester, target: r.Target}
}

// queued is a statement waiting to be sent, or a notification without a key
// to insert.
type queued struct {
	sql   string
	args  []any
	notif *notifRow
	// apart is set for a write to a table that notifications neither read
	// nor write (a certificate): queued notifications may be sent after it,
	// together with the ones that follow it.
	apart bool
	// read reads the statement's result from br and returns the error the
	// Tx method that queued it would have returned. It fails only when the
	// statement failed on the server, never on a check of a result the
	// server accepted: the statements after it, the COMMIT included
	// (commitWith), must not have run.
	read func(br pgx.BatchResults) error
}

// queue adds a statement whose result read checks when it is sent.
func (c dbConn) queue(sql string, args []any, read func(pgx.BatchResults) error) {
	c.p.q = append(c.p.q, queued{sql: sql, args: args, read: read})
}

// queueApart adds a statement as queue does, one that queued notifications
// may be sent after (queued.apart).
func (c dbConn) queueApart(sql string, args []any, read func(pgx.BatchResults) error) {
	c.p.q = append(c.p.q, queued{sql: sql, args: args, read: read, apart: true})
}

// notifRow is a notification without a key to insert: the columns of
// qInsertNotifications.
type notifRow struct {
	id                int64
	sink              string
	event             []byte
	createdAt, nextAt string
}

// queueNotification adds a notification without a key to insert. The ones
// queued together go as one INSERT; like a certificate record, they touch
// nothing audit appends touch.
func (c dbConn) queueNotification(n *notifRow) {
	c.p.q = append(c.p.q, queued{notif: n})
}

// waiting reports whether anything must be sent before the next statement.
func (c dbConn) waiting() bool {
	return (c.b != nil && (c.b.pre != nil || c.b.carry != nil)) || (c.p != nil && len(c.p.q) > 0) ||
		(c.audit && c.b != nil && c.b.audit.waiting())
}

// withAudit returns c with the batch's audit events not inserted yet sent
// before its next statement, after whatever fn queued.
func (c dbConn) withAudit() dbConn {
	c.audit = true
	return c
}

// writing returns c for a write to the requests ids: withAudit if an event
// waiting in the batch's queue names one of them without its requester and
// target, so that the insert trigger reads the request as it was when the
// event was appended (qInsertAudit).
func (c dbConn) writing(ids ...string) dbConn {
	if c.b != nil && c.b.audit.unnamed(ids) {
		return c.withAudit()
	}
	return c
}

// send sends, in one round trip, the writes carried from an earlier fn of the
// batch (batch.go), b.pre, the queued statements, the batch's audit events if
// c is withAudit, and then sql (none if sql is empty), and reads the results
// of all but sql's. The caller reads sql's result from the returned
// BatchResults and closes it. If pre fails, the savepoints are in an unknown
// state and the batch cannot commit; if a queued statement or the audit
// INSERT fails, send returns its error (kept in p.err; an *auditInsertError
// for the INSERT) and the transaction is aborted from there on. If a carried
// write fails, its fn is undone (batch.dropCarry) and the rest goes again in
// a round trip of its own.
func (c dbConn) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	for {
		br, carried, err := c.sendOnce(ctx, sql, args)
		if carried == nil {
			return br, err
		}
		if err := c.b.dropCarry(ctx, carried); err != nil {
			return nil, err
		}
	}
}

// sendOnce is send, but if a carried write fails it returns its error as
// carried, and the caller undoes its fn (dropCarry): the server skipped
// everything after it, which is left as it was (b.pre, the queue).
func (c dbConn) sendOnce(ctx context.Context, sql string, args []any) (_ pgx.BatchResults, carried, _ error) {
	var batch pgx.Batch
	var cr *carry
	var pre []string
	if c.b != nil {
		cr, pre = c.b.carry, c.b.pre
	}
	var ncpre int
	var carryReads []func(pgx.BatchResults) error
	if cr != nil {
		for _, q := range cr.pre {
			batch.Queue(q)
		}
		carryReads = queuePipe(&batch, cr.t.q.p.q, nil)
		ncpre = len(cr.pre)
	}
	for _, q := range pre {
		batch.Queue(q)
	}
	if c.b != nil {
		c.b.pre = nil
		if len(pre) > 0 || ncpre > 0 {
			c.b.open = true // a failed BEGIN is rolled back all the same
		}
	}
	var reads []func(pgx.BatchResults) error
	if c.p != nil {
		reads = queuePipe(&batch, c.p.q, nil)
	}
	if c.audit && c.b != nil {
		reads = c.b.audit.queueInserts(&batch, reads)
	}
	if sql != "" {
		batch.Queue(sql, args...)
	}
	br := c.Conn.SendBatch(ctx, &batch)
	for range ncpre {
		if _, err := br.Exec(); err != nil {
			br.Close()
			c.b.broken = fmt.Errorf("postgres: savepoint: %w", err)
			return nil, nil, c.b.broken
		}
	}
	for _, read := range carryReads {
		if err := read(br); err != nil {
			br.Close()
			c.b.pre = pre
			return nil, err, nil
		}
	}
	if cr != nil {
		cr.t.q.p.q = cr.t.q.p.q[:0]
		c.b.settleCarry()
	}
	if c.p != nil {
		c.p.q = c.p.q[:0]
	}
	for range pre {
		if _, err := br.Exec(); err != nil {
			br.Close()
			c.b.broken = fmt.Errorf("postgres: savepoint: %w", err)
			return nil, nil, c.b.broken
		}
	}
	for _, read := range reads {
		if err := read(br); err != nil {
			br.Close()
			if c.p == nil {
				return nil, nil, err
			}
			if c.p.err == nil {
				c.p.err = err
			}
			return nil, nil, c.p.err
		}
	}
	if sql == "" {
		if err := br.Close(); err != nil {
			if c.p != nil && c.p.err == nil {
				c.p.err = err
			}
			return nil, nil, err
		}
		return nil, nil, nil
	}
	return br, nil, nil
}

// queuePipe adds the statements of queue to batch, and their reads to reads,
// which it returns. Notifications without a key wait and go as one
// INSERT before the first statement they may not be sent after (or at the
// end): their order among themselves, and with every other statement that
// touches what they touch, is kept.
func queuePipe(batch *pgx.Batch, queue []queued, reads []func(pgx.BatchResults) error) []func(pgx.BatchResults) error {
	var notifs []queued
	sendNotifs := func() {
		if len(notifs) > 0 {
			sql, args, read := notificationInsert(notifs)
			batch.Queue(sql, args...)
			reads = append(reads, read)
			notifs = nil
		}
	}
	for _, q := range queue {
		switch {
		case q.notif != nil:
			notifs = append(notifs, q)
			continue
		case !q.apart:
			sendNotifs()
		}
		batch.Queue(q.sql, q.args...)
		reads = append(reads, q.read)
	}
	sendNotifs()
	return reads
}

// flush sends whatever is waiting. It returns the first queued statement's
// error, if any.
func (c dbConn) flush(ctx context.Context) error {
	if c.p != nil && c.p.err != nil {
		return c.p.err
	}
	if !c.waiting() {
		return nil
	}
	_, err := c.send(c.ctx(ctx), "", nil)
	return err
}

// pendingAudit is an audit event waiting in an auditQueue.
type pendingAudit struct {
	e ajar.AuditEvent
	// keys are the requester and target of the request the event is about,
	// if a fn of the batch wrote it (named is set); else the insert trigger
	// fills them in from the request, if there is one.
	keys  requestKeys
	named bool
}

// auditQueue holds the audit events of a batch, their seq and hashes set,
// until they are inserted together: in the round trip of the batch's COMMIT,
// or before a statement that needs them in the table (see Pipelining). Used
// with Store.wmu held.
type auditQueue struct {
	events  []pendingAudit
	flushed int // events[:flushed] are inserted
	// spLen and spFlushed are len(events) and flushed when the running fn
	// began (mark): rolling its savepoint back (rollback) drops fn's events
	// and queues again those an INSERT inside that savepoint carried, which
	// the rollback removed.
	spLen, spFlushed int
}

func (q *auditQueue) mark() { q.spLen, q.spFlushed = len(q.events), q.flushed }

func (q *auditQueue) rollback() {
	clear(q.events[q.spLen:])
	q.events = q.events[:q.spLen]
	q.flushed = min(q.flushed, q.spFlushed)
}

// appended reports whether the running fn appended an event.
func (q *auditQueue) appended() bool { return len(q.events) > q.spLen }

// waiting reports whether events wait to be inserted.
func (q *auditQueue) waiting() bool { return q.flushed < len(q.events) }

// unnamed reports whether an event waiting to be inserted is about one of the
// requests ids and does not name its requester and target.
func (q *auditQueue) unnamed(ids []string) bool {
	for _, p := range q.events[q.flushed:] {
		if !p.named && slices.Contains(ids, p.e.Subject) {
			return true
		}
	}
	return false
}

// maxAuditRows is the most events one INSERT carries: a batch's events go in
// as few statements as that allows. PostgreSQL itself takes far more rows (an
// array parameter may hold millions); the bound keeps a statement's message
// and its trigger's transition table to a few hundred kilobytes when a batch
// appends that many events.
const maxAuditRows = 1024

// queueInserts adds to batch the INSERTs of the events waiting to be inserted,
// and their reads to reads, which it returns. A read marks its events
// inserted when the server took them; if it fails, the transaction is aborted
// and the events stay where they were.
func (q *auditQueue) queueInserts(batch *pgx.Batch, reads []func(pgx.BatchResults) error) []func(pgx.BatchResults) error {
	for from := q.flushed; from < len(q.events); from += maxAuditRows {
		to := min(from+maxAuditRows, len(q.events))
		args, read := auditInsert(q, from, to)
		batch.Queue(qInsertAudit, args...)
		reads = append(reads, read)
	}
	return reads
}

// auditInsertError is the failure of an INSERT of a batch's audit events.
type auditInsertError struct{ err error }

func (e *auditInsertError) Error() string { return e.err.Error() }
func (e *auditInsertError) Unwrap() error { return e.err }

// qInsertAudit inserts audit events, in seq order. The requester and target
// (audit search) of an event about a request a fn of the batch wrote are the
// ones it wrote (pipe.written, batch.written); they are NULL for the others,
// whose row trigger fills them in from the request, if there is one
// (migrations 0008 and 0010). A trigger call per event cost the server more
// than the rest of the insert.
const qInsertAudit = `INSERT INTO audit_events (` + auditCols + `, requester, target)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::bytea[],
		$9::text[], $10::text[])`

// auditInsert returns the arguments of qInsertAudit for q.events[from:to],
// and the read of its result, which marks them inserted.
func auditInsert(q *auditQueue, from, to int) ([]any, func(pgx.BatchResults) error) {
	run := q.events[from:to]
	n := len(run)
	seqs, times := make([]int64, n), make([]string, n)
	actors, actions, subjects := make([]string, n), make([]string, n), make([]string, n)
	details, prevs, hashes := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	requesters, targets := make([]*string, n), make([]*string, n)
	for i := range run {
		p := &run[i]
		e := &p.e
		seqs[i], times[i] = e.Seq, e.Time.Format(time.RFC3339Nano)
		actors[i], actions[i], subjects[i] = e.Actor, e.Action, e.Subject
		details[i], prevs[i], hashes[i] = []byte(e.Details), e.PrevHash, e.Hash
		if p.named {
			requesters[i], targets[i] = &p.keys.requester, &p.keys.target
		}
	}
	first := seqs[0]
	read := func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			if n == 1 {
				return &auditInsertError{mapError(err, fmt.Sprintf("append audit event %d", first))}
			}
			return &auditInsertError{mapError(err, fmt.Sprintf("append audit events %d-%d", first, first+int64(n)-1))}
		}
		q.flushed = to
		return nil
	}
	return []any{seqs, times, actors, actions, subjects, details, prevs, hashes, requesters, targets}, read
}

// qInsertNotifications inserts the notifications of a run of queued ones
// (without a key), as qEnqueue does each.
const qInsertNotifications = `INSERT INTO notifications
	(id, sink, key, event, created_at, next_at, attempts, last_error, state, done_at, version)
	OVERRIDING SYSTEM VALUE
	SELECT id, sink, NULL, event, created_at, next_at, 0, '', 'pending', NULL, 1
	FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::text[]) AS n(id, sink, event, created_at, next_at)`

// notificationInsert is one INSERT of the notifications of a run of queued
// ones.
func notificationInsert(run []queued) (string, []any, func(pgx.BatchResults) error) {
	n := len(run)
	ids, sinks, events, created, next := make([]int64, n), make([]string, n), make([][]byte, n), make([]string, n), make([]string, n)
	for i, q := range run {
		ids[i], sinks[i], events[i], created[i], next[i] = q.notif.id, q.notif.sink, q.notif.event, q.notif.createdAt, q.notif.nextAt
	}
	read := func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return mapError(err, "enqueue notification")
		}
		return nil
	}
	return qInsertNotifications, []any{ids, sinks, events, created, next}, read
}
