package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// Defaults and bounds for list queries.
const (
	defaultLimit  = 1000
	maxAuditLimit = 100000
)

// querier is what a transaction runs statements on: the writer's *sql.Conn (inside
// BEGIN IMMEDIATE) or a reader's *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readTx implements ajar.ReadTx for View, and for Update through tx.
type readTx struct {
	now    time.Time
	q      querier
	stmt   func(ctx context.Context, query string) (*sql.Stmt, error)
	detach bool // run statements without ctx's cancellation (the shared write transaction)
	done   atomic.Bool
	err    atomic.Pointer[error] // the first statement that failed, see fail
}

// tx implements ajar.Tx.
type tx struct {
	readTx
	head  *auditHead  // the batch's audit chain head, kept by the Store
	audit *auditQueue // the batch's queued audit events, kept by the Store
	// reqs are the requests fn wrote: their requester and target go with
	// the events about them, without a lookup per event.
	reqs []reqKey
	// after runs once fn's writes have committed (AfterCommit).
	after []func()
}

func (t *tx) AfterCommit(f func()) { t.after = append(t.after, f) }

// pendingEvent is an audit event waiting in an auditQueue, with the search
// columns of the request it is about when its tx knew them.
type pendingEvent struct {
	e                 ajar.AuditEvent
	requester, target string // "" when unknown: looked up at insert
}

// auditQueue holds the audit events of the open batch, their seq and hash
// already set, until they are inserted together: before the batch commits
// (Store.finish), or before a function in the batch reads the log. A few
// statements carry a whole batch's events: most of an insert statement's cost
// is its own (the trigger that keeps the log in sequence gives each a
// statement journal), not its rows'. Guarded by the Store's wmu.
type auditQueue struct {
	events  []pendingEvent
	flushed int // events[:flushed] are inserted
	// spLen and spFlushed are len(events) and flushed when the running fn's
	// savepoint began (mark): rolling it back (rollback) drops fn's events
	// and queues again those inserted inside it, which the rollback removed.
	spLen, spFlushed int
}

func (q *auditQueue) mark() { q.spLen, q.spFlushed = len(q.events), q.flushed }

func (q *auditQueue) rollback() {
	clear(q.events[q.spLen:])
	q.events = q.events[:q.spLen]
	q.flushed = min(q.flushed, q.spFlushed)
}

func (q *auditQueue) reset() {
	clear(q.events)
	q.events, q.flushed, q.spLen, q.spFlushed = q.events[:0], 0, 0, 0
}

// flush inserts the events not inserted yet, with statements from prepare.
func (q *auditQueue) flush(ctx context.Context, prepare func(context.Context, string) (*sql.Stmt, error)) error {
	for q.flushed < len(q.events) {
		todo := q.events[q.flushed:]
		n := min(len(todo), maxAuditRows)
		st, err := prepare(ctx, qInsertAuditRows[n])
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		args := make([]any, 0, 13*n)
		for _, p := range todo[:n] {
			e := p.e
			var requester, target, lookup any // NULL
			if p.requester != "" {
				requester, target = p.requester, p.target
			} else {
				lookup = e.Subject
			}
			args = append(args, e.Seq, e.Time.Format(time.RFC3339Nano), e.Actor, e.Action,
				e.Subject, []byte(e.Details), e.PrevHash, e.Hash, requester, lookup, e.Actor, target, lookup)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("sqlite: append audit events %d-%d: %w", todo[0].e.Seq, todo[n-1].e.Seq, err)
		}
		q.flushed += n
	}
	return nil
}

// reqKey is a request's id, requester and target.
type reqKey struct{ id, requester, target string }

// auditHead is the last audit event's Seq and Hash as the open write
// transaction has it, so that the events of a batch (five for a request and
// its certificate) read the head from the table once, not once each. It is
// valid only inside one batch: another process (ajar on the host) may write
// between batches.
type auditHead struct {
	ok   bool
	seq  int64
	hash []byte
}

var (
	_ ajar.ReadTx = (*readTx)(nil)
	_ ajar.Tx     = (*tx)(nil)
)

var errTxDone = errors.New("sqlite: transaction used after its function returned")

// enter checks that t may still be used and ctx is live, and returns the context
// statements run with.
func (t *readTx) enter(ctx context.Context) (context.Context, error) {
	if t.done.Load() {
		return nil, errTxDone
	}
	if err := t.failed(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.detach {
		return context.WithoutCancel(ctx), nil
	}
	return ctx, nil
}

// fail records err, a statement's failure that is not one of the contract's
// errors, and returns it. After it a write transaction refuses further statements:
// some errors (SQLITE_FULL, SQLITE_IOERR...) roll back the whole transaction, and
// a statement run after that would commit on its own.
func (t *readTx) fail(err error) error {
	if t.detach {
		t.err.CompareAndSwap(nil, &err)
	}
	return err
}

// failed returns the error recorded by fail, or nil.
func (t *readTx) failed() error {
	if p := t.err.Load(); p != nil {
		return *p
	}
	return nil
}

// prepared returns a prepared statement for one of the fixed queries, bound to t.
func (t *readTx) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: prepare: %w", err))
	}
	return st, nil
}

func (t *readTx) Now() time.Time { return t.now }

// Requests.

const requestCols = `id, target, requester, reason, ticket, duration, params, policy, state, end_reason,
	created_at, updated_at, start_at, approval_deadline, activated_at, expires_at, ended_at,
	approvals, handle, next_at, attempts, last_error, version`

const (
	qGetRequest    = `SELECT ` + requestCols + ` FROM requests WHERE id = ?`
	qInsertRequest = `INSERT INTO requests (` + requestCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qUpdateRequest = `UPDATE requests SET target = ?, requester = ?, reason = ?, ticket = ?,
		duration = ?, params = ?, policy = ?, state = ?, end_reason = ?, created_at = ?,
		updated_at = ?, start_at = ?, approval_deadline = ?, activated_at = ?, expires_at = ?,
		ended_at = ?, approvals = ?, handle = ?, next_at = ?, attempts = ?, last_error = ?,
		version = version + 1
		WHERE id = ? AND version = ?`
	qRequestExists = `SELECT EXISTS (SELECT 1 FROM requests WHERE id = ?)`
	qDue           = `SELECT id FROM requests WHERE next_at IS NOT NULL AND next_at <= ?
		ORDER BY next_at, id LIMIT ?`
	qSelectDue = `SELECT ` + requestCols + ` FROM requests WHERE next_at IS NOT NULL AND next_at <= ?
		ORDER BY next_at, id LIMIT ?`
	qClaimDue = `UPDATE requests SET next_at = ?, version = version + 1 WHERE id IN (` + qDue + `)`
	qNextDue  = `SELECT min(next_at) FROM requests WHERE next_at IS NOT NULL`
	qCount    = `SELECT state, count(*) FROM requests GROUP BY state`
)

func (t *readTx) GetRequest(ctx context.Context, id string) (*ajar.Request, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, qGetRequest)
	if err != nil {
		return nil, err
	}
	r, err := scanRequest(st.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s not found", id)
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: get request %s: %w", id, err))
	}
	return r, nil
}

// requestWhere returns the WHERE clause selecting what f selects (all but
// f.Limit) and its arguments.
// requestsFrom is the FROM clause for f: a lookup by requester, states,
// target and parameters names its index, because SQLite would otherwise walk
// all the requester's requests in list order (requests_requester) to save a
// sort of the few that match.
func requestsFrom(f ajar.RequestFilter) string {
	if f.SameParams && f.Requester != "" && f.Target != "" && len(f.States) > 0 {
		return ` FROM requests INDEXED BY requests_requester_state`
	}
	return ` FROM requests`
}

func requestWhere(f ajar.RequestFilter) (string, []any, error) {
	var b strings.Builder
	var args []any
	b.WriteString(` WHERE TRUE`)
	if f.Requester != "" {
		b.WriteString(` AND requester = ?`)
		args = append(args, f.Requester)
	}
	if f.Target != "" {
		b.WriteString(` AND target = ?`)
		args = append(args, f.Target)
	}
	if len(f.States) > 0 {
		b.WriteString(` AND state IN (?` + strings.Repeat(`, ?`, len(f.States)-1) + `)`)
		for _, s := range f.States {
			args = append(args, string(s))
		}
	}
	if !f.CreatedSince.IsZero() {
		at, err := sqlcodec.FormatTime("created_since", f.CreatedSince)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(` AND created_at >= ?`)
		args = append(args, at)
	}
	if f.After != nil {
		at, err := sqlcodec.FormatTime("after", f.After.CreatedAt)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(` AND (created_at < ? OR (created_at = ? AND id < ?))`)
		args = append(args, at, at, f.After.ID)
	}
	if f.SameParams {
		keys, err := sqlcodec.ParamsKeys(f.Params)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(` AND params IN (?` + strings.Repeat(`, ?`, len(keys)-1) + `)`) // requests_requester_state
		for _, k := range keys {
			args = append(args, k)
		}
	}
	return b.String(), args, nil
}

func (t *readTx) ListRequests(ctx context.Context, f ajar.RequestFilter) ([]*ajar.Request, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	where, args, err := requestWhere(f)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	args = append(args, limit)
	// The query's text depends only on which filters are set (the values are
	// arguments), so its few shapes are prepared once each.
	st, err := t.prepared(ctx, `SELECT `+requestCols+requestsFrom(f)+where+` ORDER BY created_at DESC, id DESC LIMIT ?`)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list requests: %w", err))
	}
	out, err := scanRequests(rows)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list requests: %w", err))
	}
	return out, nil
}

func (t *readTx) CountRequests(ctx context.Context, f ajar.RequestFilter) (int, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return 0, err
	}
	where, args, err := requestWhere(f)
	if err != nil {
		return 0, err
	}
	limit := int64(-1) // no bound
	if f.Limit > 0 {
		limit = int64(f.Limit)
	}
	var n int
	st, err := t.prepared(ctx, `SELECT count(*) FROM (SELECT 1`+requestsFrom(f)+where+` LIMIT ?)`) // few shapes, as in ListRequests
	if err != nil {
		return 0, err
	}
	err = st.QueryRowContext(ctx, append(args, limit)...).Scan(&n)
	if err != nil {
		return 0, t.fail(fmt.Errorf("sqlite: count requests: %w", err))
	}
	return n, nil
}

func (t *readTx) CountRequestsEach(ctx context.Context, fs ...ajar.RequestFilter) ([]int, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	counts := make([]int, len(fs))
	if len(fs) == 0 {
		return counts, nil
	}
	q, args, err := countEachQuery(fs)
	if err != nil {
		return nil, err
	}
	dest := make([]any, len(fs))
	for i := range counts {
		dest[i] = &counts[i]
	}
	st, err := t.prepared(ctx, q) // few shapes, as in CountRequests
	if err != nil {
		return nil, err
	}
	if err := st.QueryRowContext(ctx, args...).Scan(dest...); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: count requests: %w", err))
	}
	return counts, nil
}

// countEachQuery is the statement of CountRequestsEach: one column per
// filter, each CountRequests' count.
func countEachQuery(fs []ajar.RequestFilter) (string, []any, error) {
	var q strings.Builder
	var args []any
	q.WriteString(`SELECT `)
	for i, f := range fs {
		where, a, err := requestWhere(f)
		if err != nil {
			return "", nil, err
		}
		limit := int64(-1) // no bound
		if f.Limit > 0 {
			limit = int64(f.Limit)
		}
		if i > 0 {
			q.WriteString(`, `)
		}
		q.WriteString(`(SELECT count(*) FROM (SELECT 1` + requestsFrom(f) + where + ` LIMIT ?))`)
		args = append(append(args, a...), limit)
	}
	return q.String(), args, nil
}

func (t *readTx) CountByState(ctx context.Context) (map[ajar.State]int, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, qCount)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: count requests: %w", err))
	}
	defer rows.Close()
	m := make(map[ajar.State]int)
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: count requests: %w", err))
		}
		m[ajar.State(s)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: count requests: %w", err))
	}
	return m, nil
}

func (t *readTx) NextDue(ctx context.Context) (time.Time, bool, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	st, err := t.prepared(ctx, qNextDue)
	if err != nil {
		return time.Time{}, false, err
	}
	var s sql.NullString
	if err := st.QueryRowContext(ctx).Scan(&s); err != nil {
		return time.Time{}, false, t.fail(fmt.Errorf("sqlite: next due: %w", err))
	}
	if !s.Valid {
		return time.Time{}, false, nil
	}
	at, err := sqlcodec.ParseTime(s.String)
	if err != nil {
		return time.Time{}, false, t.fail(fmt.Errorf("sqlite: next due: %w", err))
	}
	return at, true, nil
}

func (t *tx) CreateRequest(ctx context.Context, r *ajar.Request) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	if r.ID == "" {
		return ajar.FieldErrorf("id", "request id is required")
	}
	args, err := sqlcodec.RequestArgs(r)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qInsertRequest)
	if err != nil {
		return err
	}
	args = append(append([]any{r.ID}, args...), int64(1))
	if _, err := st.ExecContext(ctx, args...); err != nil {
		if isUniqueViolation(err) {
			return ajar.Errorf(ajar.ECONFLICT, "request %s already exists", r.ID)
		}
		return t.fail(fmt.Errorf("sqlite: create request %s: %w", r.ID, err))
	}
	r.Version = 1
	t.remember(r)
	return nil
}

// CreateRequestCounting implements ajar.Tx. The store has no round trips to
// save: it is CreateRequest then CountRequestsEach.
func (t *tx) CreateRequestCounting(ctx context.Context, r *ajar.Request, fs ...ajar.RequestFilter) ([]int, error) {
	if err := t.CreateRequest(ctx, r); err != nil {
		return nil, err
	}
	return t.CountRequestsEach(ctx, fs...)
}

// remember notes r's requester and target, as fn just wrote them, for the
// audit events fn appends about it from now on.
func (t *tx) remember(r *ajar.Request) {
	for i, k := range t.reqs {
		if k.id == r.ID {
			t.reqs[i] = reqKey{r.ID, r.Requester, r.Target}
			return
		}
	}
	if len(t.reqs) < 8 { // a fn writes a few requests; beyond that, look up
		t.reqs = append(t.reqs, reqKey{r.ID, r.Requester, r.Target})
	}
}

func (t *tx) UpdateRequest(ctx context.Context, r *ajar.Request) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	args, err := sqlcodec.RequestArgs(r)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qUpdateRequest)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, append(args, r.ID, r.Version)...)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update request %s: %w", r.ID, err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update request %s: %w", r.ID, err))
	}
	if n == 0 {
		st, err := t.prepared(ctx, qRequestExists)
		if err != nil {
			return err
		}
		var exists bool
		if err := st.QueryRowContext(ctx, r.ID).Scan(&exists); err != nil {
			return t.fail(fmt.Errorf("sqlite: update request %s: %w", r.ID, err))
		}
		if !exists {
			return ajar.Errorf(ajar.ENOTFOUND, "request %s not found", r.ID)
		}
		return ajar.Errorf(ajar.ECONFLICT, "request %s was changed concurrently (version %d is stale)", r.ID, r.Version)
	}
	r.Version++
	t.remember(r)
	return nil
}

// qRequestVersions reads the versions of the requests named in a JSON array.
const qRequestVersions = `SELECT id, version FROM requests WHERE id IN (SELECT value FROM json_each(?))`

// UpdateRequests checks every version first, with one query (nothing else
// writes while this transaction holds the writer), then writes the requests
// one UPDATE each: a stale or missing request leaves all of them unwritten.
func (t *tx) UpdateRequests(ctx context.Context, rs []*ajar.Request) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	ids := make([]string, len(rs))
	args := make([][]any, len(rs))
	seen := make(map[string]bool, len(rs))
	for i, r := range rs {
		if seen[r.ID] {
			return ajar.FieldErrorf("id", "request %s is named twice", r.ID)
		}
		seen[r.ID] = true
		ids[i] = r.ID
		if args[i], err = sqlcodec.RequestArgs(r); err != nil {
			return err
		}
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("sqlite: update requests: %w", err)
	}
	st, err := t.prepared(ctx, qRequestVersions)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(ctx, string(idsJSON))
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update requests: %w", err))
	}
	stored := make(map[string]int64, len(rs))
	for rows.Next() {
		var id string
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			rows.Close()
			return t.fail(fmt.Errorf("sqlite: update requests: %w", err))
		}
		stored[id] = v
	}
	if err := rows.Err(); err != nil {
		return t.fail(fmt.Errorf("sqlite: update requests: %w", err))
	}
	if err := sqlcodec.VersionsMatch(rs, stored); err != nil {
		return err
	}
	upd, err := t.prepared(ctx, qUpdateRequest)
	if err != nil {
		return err
	}
	for i, r := range rs {
		res, err := upd.ExecContext(ctx, append(args[i], r.ID, r.Version)...)
		if err != nil {
			return t.fail(fmt.Errorf("sqlite: update request %s: %w", r.ID, err))
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			// The versions were checked under the writer: this is a bug,
			// and the requests before r are written already.
			return t.fail(fmt.Errorf("sqlite: update request %s: %d rows written (%v)", r.ID, n, err))
		}
	}
	for _, r := range rs {
		r.Version++
		t.remember(r)
	}
	return nil
}

func (t *tx) ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*ajar.Request, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, ajar.FieldErrorf("limit", "must be positive, got %d", limit)
	}
	nowS, err := sqlcodec.FormatTime("now", now)
	if err != nil {
		return nil, err
	}
	leaseS, err := sqlcodec.FormatTime("lease_until", leaseUntil)
	if err != nil {
		return nil, err
	}
	sel, err := t.prepared(ctx, qSelectDue)
	if err != nil {
		return nil, err
	}
	rows, err := sel.QueryContext(ctx, nowS, limit)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: claim due: %w", err))
	}
	due, err := scanRequests(rows)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: claim due: %w", err))
	}
	if len(due) == 0 {
		return nil, nil
	}
	// The same rows, selected the same way inside the same write transaction.
	upd, err := t.prepared(ctx, qClaimDue)
	if err != nil {
		return nil, err
	}
	res, err := upd.ExecContext(ctx, leaseS, nowS, limit)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: claim due: %w", err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: claim due: %w", err))
	} else if n != int64(len(due)) {
		return nil, t.fail(fmt.Errorf("sqlite: claim due: selected %d requests but updated %d", len(due), n))
	}
	for _, r := range due {
		lease := leaseUntil.UTC()
		r.NextAt = &lease
		r.Version++
	}
	return due, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRequest(sc scanner) (*ajar.Request, error) {
	var (
		r                                      ajar.Request
		dur                                    int64
		params, approvals, handle              string
		state, endReason                       string
		created, updated, deadline             string
		startAt, activated, expires, ended, nx sql.NullString
	)
	if err := sc.Scan(&r.ID, &r.Target, &r.Requester, &r.Reason, &r.Ticket, &dur, &params,
		&r.Policy, &state, &endReason, &created, &updated, &startAt, &deadline, &activated,
		&expires, &ended, &approvals, &handle, &nx, &r.Attempts, &r.LastError, &r.Version); err != nil {
		return nil, err
	}
	r.Duration = time.Duration(dur)
	r.State = ajar.State(state)
	r.EndReason = ajar.EndReason(endReason)
	var d decoder
	r.CreatedAt = d.Time(created)
	r.UpdatedAt = d.Time(updated)
	r.StartAt = d.nullTime(startAt)
	r.ApprovalDeadline = d.Time(deadline)
	r.ActivatedAt = d.nullTime(activated)
	r.ExpiresAt = d.nullTime(expires)
	r.EndedAt = d.nullTime(ended)
	r.NextAt = d.nullTime(nx)
	d.JSON(params, &r.Params)
	d.JSON(approvals, &r.Approvals)
	d.JSON(handle, &r.Handle)
	if d.Err != nil {
		return nil, fmt.Errorf("decode request %s: %w", r.ID, d.Err)
	}
	return &r, nil
}

// collect reads every row with scan, then closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanRequests(rows *sql.Rows) ([]*ajar.Request, error) {
	return collect(rows, scanRequest)
}

// Audit log.

const (
	qAuditHead = `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`
	auditCols  = `seq, time, actor, action, subject, details, prev_hash, hash`
)

// auditDialect writes SQLite's placeholders, and "+col" so that a time bound
// does not take the place of a better index.
var auditDialect = sqlcodec.AuditDialect{
	Placeholder: func(int) string { return "?" },
	Unindexed:   func(col string) string { return "+" + col },
}

func (t *readTx) auditHead(ctx context.Context) (int64, []byte, error) {
	st, err := t.prepared(ctx, qAuditHead)
	if err != nil {
		return 0, nil, err
	}
	var seq int64
	var hash []byte
	err = st.QueryRowContext(ctx).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	} else if err != nil {
		return 0, nil, t.fail(fmt.Errorf("sqlite: audit head: %w", err))
	}
	return seq, hash, nil
}

func (t *readTx) AuditHead(ctx context.Context) (int64, []byte, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return 0, nil, err
	}
	return t.auditHead(ctx)
}

// AuditHead and ListAudit of a write transaction see the events it queued.
func (t *tx) AuditHead(ctx context.Context) (int64, []byte, error) {
	if err := t.flushAudit(ctx); err != nil {
		return 0, nil, err
	}
	return t.readTx.AuditHead(ctx)
}

func (t *tx) ListAudit(ctx context.Context, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	if err := t.flushAudit(ctx); err != nil {
		return nil, err
	}
	return t.readTx.ListAudit(ctx, f)
}

func (t *readTx) ListAudit(ctx context.Context, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxAuditLimit)
	q, args, err := sqlcodec.AuditSelect(auditDialect, auditCols, f, limit)
	if err != nil {
		return nil, err
	}
	var rows *sql.Rows
	if f.User == "" && f.Target == "" && f.Action == "" && f.From.IsZero() && f.To.IsZero() && f.BeforeSeq == 0 && !f.Newest {
		// Paging through the log or one request's events: a fixed query.
		st, perr := t.prepared(ctx, q)
		if perr != nil {
			return nil, perr
		}
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = t.q.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list audit: %w", err))
	}
	defer rows.Close()
	out := make([]ajar.AuditEvent, 0, sqlcodec.AuditCap(limit))
	var slab sqlcodec.Slab // the blobs, copied once each, with no allocation each
	for rows.Next() {
		var e ajar.AuditEvent
		var ts string
		var details, prev, hash sql.RawBytes
		if err := rows.Scan(&e.Seq, &ts, &e.Actor, &e.Action, &e.Subject, &details, &prev, &hash); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: list audit: %w", err))
		}
		if e.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: list audit: event %d: %w", e.Seq, err))
		}
		if len(details) > 0 {
			e.Details = slab.Copy(details)
		}
		e.PrevHash, e.Hash = slab.Copy(prev), slab.Copy(hash)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list audit: %w", err))
	}
	return out, nil
}

// AppendAudit sets e's place in the chain (seq, previous hash, hash) and
// queues it in the batch's auditQueue: it is inserted with the batch's other
// events before the commit, or before fn reads the log (flushAudit).
func (t *tx) AppendAudit(ctx context.Context, e ajar.AuditEvent) (ajar.AuditEvent, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return ajar.AuditEvent{}, err
	}
	if err := sqlcodec.CheckAuditEvent(&e); err != nil {
		return ajar.AuditEvent{}, err
	}
	// The hash covers the UTC text of the time; keep exactly that time.
	e.Time = e.Time.UTC()
	var seq int64
	var head []byte
	if t.head.ok {
		seq, head = t.head.seq, t.head.hash
	} else if seq, head, err = t.auditHead(ctx); err != nil {
		return ajar.AuditEvent{}, err
	}
	e.Seq = seq + 1
	e.PrevHash = head
	e.Hash = e.ComputeHash()
	p := pendingEvent{e: e}
	for _, k := range t.reqs {
		if k.id == e.Subject {
			p.requester, p.target = k.requester, k.target
			break
		}
	}
	t.audit.events = append(t.audit.events, p)
	*t.head = auditHead{ok: true, seq: e.Seq, hash: e.Hash}
	return e, nil
}

// maxAuditRows is the most events one insert statement carries.
const maxAuditRows = 64

// qInsertAuditRows[n] inserts n events. An event's requester and target are
// its parameters when tx knows them, else looked up from the request its
// subject names (NULL when it names none). The requester is left NULL when
// it is the event's actor: a search for a user walks the actor index too
// (sqlcodec.AuditSelect), so the requester index needs only the events
// others made about the user's requests, and a request's own events (made,
// certificate issued) cost one index entry less each.
var qInsertAuditRows = func() (q [maxAuditRows + 1]string) {
	const row = `(?, ?, ?, ?, ?, ?, ?, ?, nullif(coalesce(?, (SELECT requester FROM requests WHERE id = ?)), ?), coalesce(?, (SELECT target FROM requests WHERE id = ?)))`
	for n := 1; n <= maxAuditRows; n++ {
		q[n] = `INSERT INTO audit_events (seq, time, actor, action, subject, details, prev_hash, hash, requester, target) VALUES ` +
			row + strings.Repeat(", "+row, n-1)
	}
	return q
}()

// flushAudit inserts the batch's queued events, for a read of the log in fn.
// An error fails the transaction (t.fail).
func (t *tx) flushAudit(ctx context.Context) error {
	if err := t.audit.flush(ctx, t.stmt); err != nil {
		return t.fail(err)
	}
	return nil
}

// Keys and certificates.

func (t *readTx) GetKey(ctx context.Context, name string) ([]byte, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, `SELECT sealed FROM keys WHERE name = ?`)
	if err != nil {
		return nil, err
	}
	var sealed []byte
	err = st.QueryRowContext(ctx, name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "key %s not found", name)
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: get key %s: %w", name, err))
	}
	if sealed == nil {
		sealed = []byte{}
	}
	return sealed, nil
}

func (t *tx) PutKey(ctx context.Context, name string, sealed []byte) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	if name == "" {
		return ajar.FieldErrorf("name", "key name is required")
	}
	if sealed == nil {
		sealed = []byte{}
	}
	st, err := t.prepared(ctx, `INSERT INTO keys (name, sealed) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, name, sealed); err != nil {
		if isUniqueViolation(err) {
			return ajar.Errorf(ajar.ECONFLICT, "key %s already exists", name)
		}
		return t.fail(fmt.Errorf("sqlite: put key %s: %w", name, err))
	}
	return nil
}

const sshCertCols = `serial, request_id, key_id, principals, fingerprint, valid_after, valid_before, issued_at, public_key`

func (t *readTx) ListSSHCerts(ctx context.Context, requestID string) ([]ajar.SSHCert, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	query, args := `SELECT `+sshCertCols+` FROM ssh_certs ORDER BY id`, []any(nil)
	if requestID != "" {
		query, args = `SELECT `+sshCertCols+` FROM ssh_certs WHERE request_id = ? ORDER BY id`, []any{requestID}
	}
	st, err := t.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list ssh certs: %w", err))
	}
	out, err := scanSSHCerts(rows)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list ssh certs: %w", err))
	}
	return out, nil
}

func (t *readTx) FindSSHCerts(ctx context.Context, f ajar.SSHCertFilter) ([]ajar.SSHCert, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	var args []any
	b.WriteString(`SELECT c.` + strings.ReplaceAll(sshCertCols, `, `, `, c.`) + ` FROM ssh_certs c`)
	if len(f.RequestStates) > 0 {
		b.WriteString(` JOIN requests r ON r.id = c.request_id`)
	}
	b.WriteString(` WHERE TRUE`)
	if !f.ValidAfter.IsZero() {
		after, err := sqlcodec.FormatTime("valid_after", f.ValidAfter)
		if err != nil {
			return nil, err
		}
		b.WriteString(` AND c.valid_before > ?`)
		args = append(args, after)
	}
	if f.Fingerprint != "" {
		b.WriteString(` AND c.fingerprint = ?`)
		args = append(args, f.Fingerprint)
	}
	if len(f.RequestStates) > 0 {
		b.WriteString(` AND r.state IN (?` + strings.Repeat(`, ?`, len(f.RequestStates)-1) + `)`)
		for _, s := range f.RequestStates {
			args = append(args, string(s))
		}
	}
	b.WriteString(` ORDER BY c.id`)
	rows, err := t.q.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: find ssh certs: %w", err))
	}
	out, err := scanSSHCerts(rows)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: find ssh certs: %w", err))
	}
	return out, nil
}

// scanSSHCerts reads rows of sshCertCols and closes them.
func scanSSHCerts(rows *sql.Rows) ([]ajar.SSHCert, error) {
	defer rows.Close()
	var out []ajar.SSHCert
	for rows.Next() {
		var c ajar.SSHCert
		var serial int64
		var principals, after, before, issued string
		if err := rows.Scan(&serial, &c.RequestID, &c.KeyID, &principals, &c.Fingerprint, &after, &before, &issued, &c.PublicKey); err != nil {
			return nil, err
		}
		c.Serial = uint64(serial)
		var d decoder
		c.ValidAfter = d.Time(after)
		c.ValidBefore = d.Time(before)
		c.IssuedAt = d.Time(issued)
		d.JSON(principals, &c.Principals)
		if d.Err != nil {
			return nil, fmt.Errorf("serial %d: %w", c.Serial, d.Err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t *tx) InsertSSHCert(ctx context.Context, c ajar.SSHCert) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	args, err := sqlcodec.SSHCertArgs(c)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, `INSERT INTO ssh_certs (`+sshCertCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, args...); err != nil {
		if isUniqueViolation(err) {
			return ajar.Errorf(ajar.ECONFLICT, "ssh certificate serial %d already exists", c.Serial)
		}
		return t.fail(fmt.Errorf("sqlite: insert ssh cert %d: %w", c.Serial, err))
	}
	return nil
}
