package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
)

// Pipelining.
//
// A write transaction's statements run one after the other on one connection
// while its batch holds the chain-head lock (batch.go), so their round trips,
// not the server's work, bound how many requests a replica commits a second.
// The writes whose result fn does not wait for (an audit append, the head lock,
// a certificate record, a notification without a key, whose id is reserved
// beforehand: workflow.go) are therefore queued on the Tx instead of sent, and
// go in one round trip with the next statement that needs a result, or at the
// end of fn; when the batch ends after fn, with its COMMIT (commitWith in
// batch.go). The audit appends queued together go as one INSERT of all their
// rows (sent after the certificate records and notifications queued among
// them, which touch nothing they touch), and the head moves once for them
// (migration 0009: a statement trigger checks that the rows extend the head
// in sequence); so do the notifications queued together, in one INSERT after
// the appends'. Every statement has a cost of its own on the server, whatever
// its rows.
//
// The order of statements is the order of the calls: whatever is queued is sent
// before the statement that flushes it, so a read sees every write fn made
// before it and the head lock is still taken before any other write.
//
// The error contract stays the one of a statement sent at once, but an error
// may be reported later: when a queued statement fails (or its result check
// does, e.g. ECONFLICT for a certificate serial that exists), the Tx records
// that error, the call that flushed it returns it and so does every later call,
// and fn's Update returns it even if fn ignored it. fn's savepoint is rolled
// back, so nothing fn wrote survives. The writes whose result a caller acts on
// at once (CreateRequest's ECONFLICT, compare-and-swap updates, a notification
// whose key may be taken, ENOTFOUND of an update) are sent at once, as before.
// One difference remains: InsertSSHCert's ECONFLICT (a serial that exists,
// which random 64-bit serials make a bug, not a race) ends fn, where the
// SQLite store lets fn handle it and go on.

// pipe is the queue of one Update fn's Tx.
type pipe struct {
	q []queued
	// err is the first queued statement's failure (or failed check): once
	// set, every later call of the Tx returns it.
	err error
	// written holds the requester and target of each request fn inserted
	// or updated, by id: its row holds them until the transaction ends (the
	// row stays locked), so fn's audit events about it name them
	// (qInsertAudit).
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

// queued is a statement waiting to be sent, an audit event to insert, or a
// notification without a key to insert.
type queued struct {
	sql   string
	args  []any
	audit *ajar.AuditEvent
	notif *notifRow
	// apart is set for a write to a table that audit appends neither read
	// nor write (a certificate, a notification): queued audit appends may be
	// sent after it, together with the appends that follow it.
	apart bool
	// read reads the statement's result from br and returns the error the
	// Tx method that queued it would have returned. It fails only when the
	// statement failed on the server, never on a check of a result the
	// server accepted: the statements after it, the COMMIT included
	// (commitWith), must not have run.
	read func(br pgx.BatchResults) error
}

// qInsertAudit inserts the events of a run of queued appends, in seq order.
// The requester and target (audit search) of an event about a request the fn
// wrote are the ones it wrote (pipe.written); they are NULL for the others,
// whose row trigger fills them in from the request, if there is one
// (migrations 0008 and 0010). A trigger call per event cost the server more
// than the rest of the insert.
const qInsertAudit = `INSERT INTO audit_events (` + auditCols + `, requester, target)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::bytea[],
		$9::text[], $10::text[])`

// queue adds a statement whose result read checks when it is sent.
func (c dbConn) queue(sql string, args []any, read func(pgx.BatchResults) error) {
	c.p.q = append(c.p.q, queued{sql: sql, args: args, read: read})
}

// queueApart adds a statement as queue does, one that audit appends may be
// sent after (queued.apart).
func (c dbConn) queueApart(sql string, args []any, read func(pgx.BatchResults) error) {
	c.p.q = append(c.p.q, queued{sql: sql, args: args, read: read, apart: true})
}

// queueAudit adds an audit event to insert (already checked and hashed).
func (c dbConn) queueAudit(e *ajar.AuditEvent) {
	c.p.q = append(c.p.q, queued{audit: e})
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
// queued together go as one INSERT, as audit appends do; like a certificate
// record, they touch nothing audit appends touch.
func (c dbConn) queueNotification(n *notifRow) {
	c.p.q = append(c.p.q, queued{notif: n})
}

// waiting reports whether anything must be sent before the next statement.
func (c dbConn) waiting() bool {
	return (c.b != nil && c.b.pre != nil) || (c.p != nil && len(c.p.q) > 0)
}

// send sends b.pre, the queued statements and then sql (none if sql is
// empty) in one round trip, and reads the results of all but sql's. The
// caller reads sql's result from the returned BatchResults and closes it. If
// pre fails, the savepoints are in an unknown state and the batch cannot
// commit; if a queued statement fails, send returns its error (kept in p.err)
// and the transaction is aborted from there on.
func (c dbConn) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	var batch pgx.Batch
	npre := 0
	if c.b != nil {
		for _, q := range c.b.pre {
			batch.Queue(q)
		}
		npre = len(c.b.pre)
		c.b.pre = nil
		if npre > 0 {
			c.b.open = true // a failed BEGIN is rolled back all the same
		}
	}
	var reads []func(pgx.BatchResults) error
	if c.p != nil {
		// Audit appends wait in run and go as one INSERT before the first
		// statement they may not be sent after (or at the end): their order
		// among themselves, and with every other statement that touches
		// what they touch, is kept.
		// Notifications without a key wait in notifs the same way.
		var run, notifs []queued
		sendRun := func() {
			if len(run) > 0 {
				sql, args, read := auditInsert(run, c.p.written)
				batch.Queue(sql, args...)
				reads = append(reads, read)
				run = nil
			}
			if len(notifs) > 0 {
				sql, args, read := notificationInsert(notifs)
				batch.Queue(sql, args...)
				reads = append(reads, read)
				notifs = nil
			}
		}
		for _, q := range c.p.q {
			switch {
			case q.audit != nil:
				run = append(run, q)
				continue
			case q.notif != nil:
				notifs = append(notifs, q)
				continue
			case !q.apart:
				sendRun()
			}
			batch.Queue(q.sql, q.args...)
			reads = append(reads, q.read)
		}
		sendRun()
		c.p.q = c.p.q[:0]
	}
	if sql != "" {
		batch.Queue(sql, args...)
	}
	br := c.Conn.SendBatch(ctx, &batch)
	for range npre {
		if _, err := br.Exec(); err != nil {
			br.Close()
			c.b.broken = fmt.Errorf("postgres: savepoint: %w", err)
			return nil, c.b.broken
		}
	}
	for _, read := range reads {
		if err := read(br); err != nil {
			br.Close()
			if c.p.err == nil {
				c.p.err = err
			}
			return nil, c.p.err
		}
	}
	if sql == "" {
		if err := br.Close(); err != nil {
			if c.p != nil && c.p.err == nil {
				c.p.err = err
			}
			return nil, err
		}
		return nil, nil
	}
	return br, nil
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

// auditInsert is one INSERT of the events of a run of queued appends; written
// are the requests fn wrote (pipe.written).
func auditInsert(run []queued, written map[string]requestKeys) (string, []any, func(pgx.BatchResults) error) {
	n := len(run)
	seqs, times := make([]int64, n), make([]string, n)
	actors, actions, subjects := make([]string, n), make([]string, n), make([]string, n)
	details, prevs, hashes := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	requesters, targets := make([]*string, n), make([]*string, n)
	for i, q := range run {
		e := q.audit
		seqs[i], times[i] = e.Seq, e.Time.Format(time.RFC3339Nano)
		actors[i], actions[i], subjects[i] = e.Actor, e.Action, e.Subject
		details[i], prevs[i], hashes[i] = []byte(e.Details), e.PrevHash, e.Hash
		if k, ok := written[e.Subject]; ok {
			requesters[i], targets[i] = &k.requester, &k.target
		}
	}
	first := seqs[0]
	read := func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			if n == 1 {
				return mapError(err, fmt.Sprintf("append audit event %d", first))
			}
			return mapError(err, fmt.Sprintf("append audit events %d-%d", first, first+int64(n)-1))
		}
		return nil
	}
	return qInsertAudit, []any{seqs, times, actors, actions, subjects, details, prevs, hashes, requesters, targets}, read
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
