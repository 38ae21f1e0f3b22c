package postgres

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// Defaults and bounds for list queries.
const (
	defaultLimit  = 1000
	maxAuditLimit = 100000
)

// readTx implements ajar.ReadTx for View, and for Update through tx.
type readTx struct {
	q    dbConn
	now  time.Time
	done atomic.Bool
	// nowUnread is set in a View while its BEGIN and clock are queued; ctx
	// is the View's, for Now to send them.
	nowUnread bool
	ctx       context.Context
	err       error // the first statement that failed, see fail

	// The chain head as of this transaction's last append, once it holds the
	// head lock (Update only). Nobody else can move the head meanwhile.
	headLocked bool
	headSeq    int64
	headHash   []byte
	// headUnread is set while the statement that takes the head lock is
	// queued (pipeline.go): headSeq and headHash are not read yet.
	headUnread bool
	// claimedFirst is set when ClaimDue locked rows before the head lock.
	claimedFirst bool
}

// tx implements ajar.Tx.
type tx struct {
	readTx
	// ids are notification ids reserved under the head lock, not used yet
	// (EnqueueNotification); idsUnread is set while their reservation is
	// queued. notifies is the Store's: set once it enqueued a notification,
	// from then on lockHead reserves ids with the head lock.
	ids       []int64
	idsUnread bool
	notifies  *atomic.Bool
	// after runs once fn's writes have committed (AfterCommit).
	after []func()
	// leaned is set when a write skipped taking the head lock because the
	// batch held it, while the writes of the fn before were still carried
	// (batch.go): if they fail, that lock may be gone with them (rebase).
	leaned bool
	// carryErr is the error of fn's carried writes, which undid fn
	// (batch.dropCarry); read by Update once the batch has ended.
	carryErr error
}

func (t *tx) AfterCommit(f func()) { t.after = append(t.after, f) }

var (
	_ ajar.ReadTx = (*readTx)(nil)
	_ ajar.Tx     = (*tx)(nil)
)

var errTxDone = errors.New("postgres: transaction used after its function returned")

// enter checks that t may still be used and ctx is live.
func (t *readTx) enter(ctx context.Context) error {
	if t.done.Load() {
		return errTxDone
	}
	if t.err != nil {
		return t.err
	}
	if err := t.q.failed(); err != nil {
		return t.fail(err)
	}
	return ctx.Err()
}

// fail records err, a statement's failure that is not one of the contract's
// errors, and returns it. PostgreSQL aborts the whole transaction when a
// statement fails, so every later call fails with the same error instead of
// "current transaction is aborted", and Update refuses to commit.
func (t *readTx) fail(err error) error {
	if perr := t.q.failed(); perr != nil {
		// A queued statement failed first: that is the cause (pipeline.go).
		err = perr
	}
	if t.err == nil {
		t.err = err
	}
	return err
}

// failed returns the error recorded by fail, or nil.
func (t *readTx) failed() error { return t.err }

// Now returns the transaction's clock. In a View whose clock is not read yet
// (View), it sends what is queued first; if that fails, it returns the zero
// time and every later call (and View) fails.
func (t *readTx) Now() time.Time {
	if t.nowUnread && t.err == nil {
		if err := t.q.flush(t.ctx); err != nil {
			t.fail(err)
		}
	}
	return t.now
}

// lockHead takes the audit chain-head lock for the rest of the transaction (see
// the package comment: every write takes it first, so writers lock in one order).
func (t *tx) lockHead(ctx context.Context) error {
	if t.headLocked {
		if t.q.b != nil && t.q.b.carry != nil {
			t.leaned = true
		}
		return nil
	}
	// Queued: it goes with the write that follows (pipeline.go), which it
	// precedes, so the lock order stays the same.
	t.headLocked, t.headUnread = true, true
	t.q.queue(qLockHead, nil, func(br pgx.BatchResults) error {
		t.headUnread = false
		if err := br.QueryRow().Scan(&t.headSeq, &t.headHash); err != nil {
			return fmt.Errorf("postgres: lock audit head: %w", err)
		}
		return nil
	})
	if t.notifies != nil && t.notifies.Load() && len(t.ids) == 0 {
		// This store enqueues notifications: reserve ids in the same round
		// trip, after the lock (EnqueueNotification).
		t.idsUnread = true
		t.q.queue(qReserveIDs, nil, func(br pgx.BatchResults) error {
			t.idsUnread = false
			rows, err := br.Query()
			if err != nil {
				rows.Close()
				return mapError(err, "reserve notification ids")
			}
			if err := t.setIDs(rows); err != nil {
				return mapError(err, "reserve notification ids")
			}
			return nil
		})
	}
	return nil
}

// rebase starts t, which has sent nothing yet, again from the batch b as it is
// after the carried writes of the fn before t failed and that fn was undone
// (batch.dropCarry). t began on the head lock, chain head and notification ids
// that fn left; it read none of them (settle), but its writes may have skipped
// taking the head lock (leaned): if the lock went with that fn, lockHead takes
// it before everything t queued.
func (t *tx) rebase(b *batch) {
	t.headLocked, t.headSeq, t.headHash, t.ids = b.headLocked, b.headSeq, b.headHash, b.ids
	if t.leaned && !t.headLocked {
		q := t.q.p.q
		t.q.p.q = nil
		t.lockHead(context.Background()) // queues only
		t.q.p.q = append(t.q.p.q, q...)
	}
	t.leaned = false
}

// settle sends the writes carried from the fn before (batch.go) with whatever
// else waits, if they were not sent yet, before t acts on the head lock, chain
// head or notification ids that fn left: if they fail, fn is undone and t
// starts again from the batch as it was before fn (rebase).
func (t *readTx) settle(ctx context.Context) error {
	if t.q.b == nil || t.q.b.carry == nil {
		return nil
	}
	if err := t.q.flush(ctx); err != nil {
		return t.fail(err)
	}
	return nil
}

// readHead makes sure headSeq and headHash are read, once lockHead was called.
func (t *tx) readHead(ctx context.Context) error {
	if !t.headUnread {
		return nil
	}
	if err := t.q.flush(ctx); err != nil {
		return t.fail(err)
	}
	return nil
}

const qLockHead = `SELECT seq, hash FROM audit_head FOR UPDATE`

// Requests.

const requestCols = `id, target, requester, reason, ticket, duration, params, policy, state, end_reason,
	created_at, updated_at, start_at, approval_deadline, activated_at, expires_at, ended_at,
	approvals, handle, next_at, attempts, last_error, version`

const (
	qGetRequest    = `SELECT ` + requestCols + ` FROM requests WHERE id = $1`
	qInsertRequest = `INSERT INTO requests (` + requestCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
		ON CONFLICT (id) DO NOTHING`
	// The compare-and-swap. At READ COMMITTED, an UPDATE that waited for another
	// transaction's lock on the row re-checks its WHERE against the row that
	// transaction committed, so a concurrent writer's bump makes this one match
	// nothing. exists tells "changed" (ECONFLICT) from "missing" (ENOTFOUND).
	qUpdateRequest = `WITH upd AS (
		UPDATE requests SET target = $1, requester = $2, reason = $3, ticket = $4,
			duration = $5, params = $6, policy = $7, state = $8, end_reason = $9, created_at = $10,
			updated_at = $11, start_at = $12, approval_deadline = $13, activated_at = $14, expires_at = $15,
			ended_at = $16, approvals = $17, handle = $18, next_at = $19, attempts = $20, last_error = $21,
			version = version + 1
		WHERE id = $22 AND version = $23
		RETURNING 1)
		SELECT (SELECT count(*) FROM upd), EXISTS (SELECT 1 FROM requests WHERE id = $22)`
	// The claim: lock due rows no other transaction holds (SKIP LOCKED: claimers
	// never wait for each other), lease them and bump their fencing token, in one
	// statement. A row that another transaction changed after this statement's
	// snapshot is re-checked against its new next_at before it is locked.
	qClaimDue = `WITH due AS (
		SELECT id, next_at FROM requests
		WHERE next_at IS NOT NULL AND next_at <= $1
		ORDER BY next_at, id
		LIMIT $2
		FOR UPDATE SKIP LOCKED)
		UPDATE requests AS r SET next_at = $3, version = r.version + 1
		FROM due WHERE r.id = due.id
		RETURNING due.next_at, ` + prefixedRequestCols
	qNextDue = `SELECT min(next_at) FROM requests WHERE next_at IS NOT NULL`
	qCount   = `SELECT state, count(*) FROM requests GROUP BY state`
	// prefixedRequestCols is requestCols qualified with the table alias r.
	prefixedRequestCols = `r.id, r.target, r.requester, r.reason, r.ticket, r.duration, r.params, r.policy,
	r.state, r.end_reason, r.created_at, r.updated_at, r.start_at, r.approval_deadline, r.activated_at,
	r.expires_at, r.ended_at, r.approvals, r.handle, r.next_at, r.attempts, r.last_error, r.version`
)

func (t *readTx) GetRequest(ctx context.Context, id string) (*ajar.Request, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	r, err := scanRequest(t.q.QueryRow(ctx, qGetRequest, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s not found", id)
	} else if err != nil {
		return nil, t.fail(mapError(err, "get request "+id))
	}
	return r, nil
}

// requestWhere returns the WHERE clause selecting what f selects (all but
// f.Limit) and its arguments, numbered from $1.
func requestWhere(f ajar.RequestFilter) (string, []any, error) {
	return requestWhereArgs(f, nil)
}

// requestWhereArgs is requestWhere for a statement whose first arguments are
// args: it numbers its own after them and returns args with them added.
func requestWhereArgs(f ajar.RequestFilter, args []any) (string, []any, error) {
	var b strings.Builder
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	b.WriteString(` WHERE TRUE`)
	if f.Requester != "" {
		b.WriteString(` AND requester = ` + arg(f.Requester))
	}
	if f.Target != "" {
		b.WriteString(` AND target = ` + arg(f.Target))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, s := range f.States {
			states[i] = string(s)
		}
		b.WriteString(` AND state = ANY(` + arg(states) + `)`)
	}
	if !f.CreatedSince.IsZero() {
		at, err := sqlcodec.FormatTime("created_since", f.CreatedSince)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(` AND created_at >= ` + arg(at))
	}
	if f.After != nil {
		at, err := sqlcodec.FormatTime("after", f.After.CreatedAt)
		if err != nil {
			return "", nil, err
		}
		a := arg(at)
		b.WriteString(` AND (created_at < ` + a + ` OR (created_at = ` + a + ` AND id < ` + arg(f.After.ID) + `))`)
	}
	if f.SameParams {
		keys, err := sqlcodec.ParamsKeys(f.Params)
		if err != nil {
			return "", nil, err
		}
		// md5 first: it is what requests_reuse indexes (params may be too
		// long for a btree entry).
		sums := make([]string, len(keys))
		for i, k := range keys {
			sum := md5.Sum([]byte(k))
			sums[i] = hex.EncodeToString(sum[:])
		}
		b.WriteString(` AND md5(params) = ANY(` + arg(sums) + `) AND params = ANY(` + arg(keys) + `)`)
	}
	return b.String(), args, nil
}

func (t *readTx) ListRequests(ctx context.Context, f ajar.RequestFilter) ([]*ajar.Request, error) {
	if err := t.enter(ctx); err != nil {
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
	q := `SELECT ` + requestCols + ` FROM requests` + where + fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := t.q.Query(ctx, q, args...)
	if err != nil {
		return nil, t.fail(mapError(err, "list requests"))
	}
	out, err := scanRequests(rows)
	if err != nil {
		return nil, t.fail(mapError(err, "list requests"))
	}
	return out, nil
}

func (t *readTx) CountRequests(ctx context.Context, f ajar.RequestFilter) (int, error) {
	if err := t.enter(ctx); err != nil {
		return 0, err
	}
	where, args, err := requestWhere(f)
	if err != nil {
		return 0, err
	}
	q := `SELECT count(*) FROM (SELECT 1 FROM requests` + where
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	var n int
	if err := t.q.QueryRow(ctx, q+`) AS matched`, args...).Scan(&n); err != nil {
		return 0, t.fail(mapError(err, "count requests"))
	}
	return n, nil
}

func (t *readTx) CountRequestsEach(ctx context.Context, fs ...ajar.RequestFilter) ([]int, error) {
	if err := t.enter(ctx); err != nil {
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
	if err := t.q.QueryRow(ctx, q, args...).Scan(countDest(counts)...); err != nil {
		return nil, t.fail(mapError(err, "count requests"))
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
		var where string
		var err error
		if where, args, err = requestWhereArgs(f, args); err != nil {
			return "", nil, err
		}
		if i > 0 {
			q.WriteString(`, `)
		}
		q.WriteString(`(SELECT count(*) FROM (SELECT 1 FROM requests` + where)
		if f.Limit > 0 {
			args = append(args, f.Limit)
			fmt.Fprintf(&q, ` LIMIT $%d`, len(args))
		}
		fmt.Fprintf(&q, `) AS matched%d)`, i)
	}
	return q.String(), args, nil
}

// countDest is the Scan destinations of countEachQuery's row, into counts.
func countDest(counts []int) []any {
	dest := make([]any, len(counts))
	for i := range counts {
		dest[i] = &counts[i]
	}
	return dest
}

func (t *readTx) CountByState(ctx context.Context) (map[ajar.State]int, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, qCount)
	if err != nil {
		return nil, t.fail(mapError(err, "count requests"))
	}
	defer rows.Close()
	m := make(map[ajar.State]int)
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, t.fail(mapError(err, "count requests"))
		}
		m[ajar.State(s)] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, "count requests"))
	}
	return m, nil
}

func (t *readTx) NextDue(ctx context.Context) (time.Time, bool, error) {
	if err := t.enter(ctx); err != nil {
		return time.Time{}, false, err
	}
	var s *string
	if err := t.q.QueryRow(ctx, qNextDue).Scan(&s); err != nil {
		return time.Time{}, false, t.fail(mapError(err, "next due"))
	}
	if s == nil {
		return time.Time{}, false, nil
	}
	at, err := sqlcodec.ParseTime(*s)
	if err != nil {
		return time.Time{}, false, t.fail(fmt.Errorf("postgres: next due: %w", err))
	}
	return at, true, nil
}

func (t *tx) CreateRequest(ctx context.Context, r *ajar.Request) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	if r.ID == "" {
		return ajar.FieldErrorf("id", "request id is required")
	}
	args, err := sqlcodec.RequestArgs(r)
	if err != nil {
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	args = append(append([]any{r.ID}, args...), int64(1))
	tag, err := t.q.writing(r.ID).Exec(ctx, qInsertRequest, args...)
	if err != nil {
		return t.fail(mapError(err, "create request "+r.ID))
	}
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "request %s already exists", r.ID)
	}
	r.Version = 1
	t.q.wrote(r)
	return nil
}

// CreateRequestCounting implements ajar.Tx: the INSERT is queued (pipeline.go)
// and goes in the round trip of the count, which runs after it and so counts
// r. Its ECONFLICT is CreateRequest's: the INSERT skips an id that exists
// without failing, so the count runs all the same and the Tx stays usable.
func (t *tx) CreateRequestCounting(ctx context.Context, r *ajar.Request, fs ...ajar.RequestFilter) ([]int, error) {
	if len(fs) == 0 || t.q.writing(r.ID).audit {
		// Nothing to count, or audit events that name r wait to be inserted
		// before it (CreateRequest): one after the other.
		if err := t.CreateRequest(ctx, r); err != nil {
			return nil, err
		}
		return t.CountRequestsEach(ctx, fs...)
	}
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	if r.ID == "" {
		return nil, ajar.FieldErrorf("id", "request id is required")
	}
	args, err := sqlcodec.RequestArgs(r)
	if err != nil {
		return nil, err
	}
	q, qargs, err := countEachQuery(fs)
	if err != nil {
		return nil, err
	}
	if err := t.lockHead(ctx); err != nil {
		return nil, err
	}
	args = append(append([]any{r.ID}, args...), int64(1))
	inserted := false
	t.q.queue(qInsertRequest, args, func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err != nil {
			return mapError(err, "create request "+r.ID)
		}
		inserted = tag.RowsAffected() == 1
		return nil
	})
	counts := make([]int, len(fs))
	if err := t.q.QueryRow(ctx, q, qargs...).Scan(countDest(counts)...); err != nil {
		if ierr := t.q.failed(); ierr != nil {
			return nil, t.fail(ierr) // the INSERT's, mapped by its read
		}
		return nil, t.fail(mapError(err, "count requests"))
	}
	if !inserted {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s already exists", r.ID)
	}
	r.Version = 1
	t.q.wrote(r)
	return counts, nil
}

func (t *tx) UpdateRequest(ctx context.Context, r *ajar.Request) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	args, err := sqlcodec.RequestArgs(r)
	if err != nil {
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	var n int64
	var exists bool
	if err := t.q.writing(r.ID).QueryRow(ctx, qUpdateRequest, append(args, r.ID, r.Version)...).Scan(&n, &exists); err != nil {
		return t.fail(mapError(err, "update request "+r.ID))
	}
	switch {
	case n == 1:
		r.Version++
		t.q.wrote(r)
		return nil
	case !exists:
		return ajar.Errorf(ajar.ENOTFOUND, "request %s not found", r.ID)
	default:
		return ajar.Errorf(ajar.ECONFLICT, "request %s was changed concurrently (version %d is stale)", r.ID, r.Version)
	}
}

// The batched compare-and-swap (UpdateRequests). qLockRequests locks the rows
// (after the head lock, in id order) and reads their versions; qUpdateRequests,
// sent in the same round trip, then writes them all from arrays, one per
// column, only if every stored version is the expected one (the rows are
// locked, so no other transaction can change them between the two).
const (
	qLockRequests   = `SELECT id, version FROM requests WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`
	qUpdateRequests = `UPDATE requests AS r SET target = v.target, requester = v.requester,
		reason = v.reason, ticket = v.ticket, duration = v.duration, params = v.params,
		policy = v.policy, state = v.state, end_reason = v.end_reason, created_at = v.created_at,
		updated_at = v.updated_at, start_at = v.start_at, approval_deadline = v.approval_deadline,
		activated_at = v.activated_at, expires_at = v.expires_at, ended_at = v.ended_at,
		approvals = v.approvals, handle = v.handle, next_at = v.next_at, attempts = v.attempts,
		last_error = v.last_error, version = r.version + 1
	FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
		$7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
		$14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
		$21::text[], $22::bigint[], $23::text[])
		AS v(id, version, target, requester, reason, ticket, duration, params, policy, state,
			end_reason, created_at, updated_at, start_at, approval_deadline, activated_at,
			expires_at, ended_at, approvals, handle, next_at, attempts, last_error)
	WHERE r.id = ANY($1::text[]) AND r.id = v.id AND r.version = v.version
		AND NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS c(id, version)
			LEFT JOIN requests AS s ON s.id = c.id
			WHERE s.version IS DISTINCT FROM c.version)`
)

// requestArgCols is how many columns sqlcodec.RequestArgs encodes; of them,
// the ones at these indexes are bigint (duration, attempts), the rest text.
const requestArgCols = 21

var requestArgInts = [requestArgCols]bool{4: true, 19: true}

// UpdateRequests locks the requests' rows and writes them in one round trip
// (with whatever fn queued before it: pipeline.go).
func (t *tx) UpdateRequests(ctx context.Context, rs []*ajar.Request) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	if len(rs) == 0 {
		return nil
	}
	n := len(rs)
	ids, versions := make([]string, n), make([]int64, n)
	cols := make([]any, requestArgCols)
	for c := range cols {
		if requestArgInts[c] {
			cols[c] = make([]int64, n)
		} else {
			cols[c] = make([]*string, n)
		}
	}
	seen := make(map[string]bool, n)
	for i, r := range rs {
		if seen[r.ID] {
			return ajar.FieldErrorf("id", "request %s is named twice", r.ID)
		}
		seen[r.ID] = true
		ids[i], versions[i] = r.ID, r.Version
		args, err := sqlcodec.RequestArgs(r)
		if err != nil {
			return err
		}
		for c, a := range args {
			switch v := a.(type) {
			case int64:
				cols[c].([]int64)[i] = v
			case string:
				cols[c].([]*string)[i] = &v
			case nil:
			default:
				return fmt.Errorf("postgres: update requests: column %d is a %T", c, a)
			}
		}
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	stored := make(map[string]int64, n)
	t.q.queue(qLockRequests, []any{ids}, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			rows.Close()
			return mapError(err, "lock requests")
		}
		for rows.Next() {
			var id string
			var v int64
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return mapError(err, "lock requests")
			}
			stored[id] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return mapError(err, "lock requests")
		}
		return nil
	})
	tag, err := t.q.writing(ids...).Exec(ctx, qUpdateRequests, append([]any{ids, versions}, cols...)...)
	if err != nil {
		return t.fail(mapError(err, "update requests"))
	}
	switch w := tag.RowsAffected(); {
	case w == int64(n):
		for _, r := range rs {
			r.Version++
			t.q.wrote(r)
		}
		return nil
	case w != 0:
		return t.fail(fmt.Errorf("postgres: update requests: %d of %d written", w, n))
	}
	if err := sqlcodec.VersionsMatch(rs, stored); err != nil {
		return err
	}
	return t.fail(fmt.Errorf("postgres: update requests: none of %d written, all current", n))
}

func (t *tx) ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*ajar.Request, error) {
	if err := t.enter(ctx); err != nil {
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
	// No head lock: SKIP LOCKED never waits, so a claim cannot take part in a
	// deadlock, and claims from several replicas run side by side. (A batch
	// that claimed before it held the head lock ends after this fn: batch.go.
	// Whether it did is known once the claim is sent: the head lock t began
	// with may go with the carried writes of the fn before, rebase.)
	rows, err := t.q.Query(ctx, qClaimDue, nowS, limit, leaseS)
	if !t.headLocked {
		t.claimedFirst = true
	}
	if err != nil {
		return nil, t.fail(mapError(err, "claim due"))
	}
	type claim struct {
		was string // next_at before the claim
		r   *ajar.Request
	}
	var claims []claim
	for rows.Next() {
		var c claim
		if c.r, err = scanRequestAfter(rows, &c.was); err != nil {
			rows.Close()
			return nil, t.fail(mapError(err, "claim due"))
		}
		claims = append(claims, c)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, "claim due"))
	}
	// RETURNING has no order; the contract is earliest first. The "C" collation
	// orders text as Go compares strings.
	slices.SortFunc(claims, func(a, b claim) int {
		if c := strings.Compare(a.was, b.was); c != 0 {
			return c
		}
		return strings.Compare(a.r.ID, b.r.ID)
	})
	out := make([]*ajar.Request, len(claims))
	for i, c := range claims {
		out[i] = c.r
	}
	return out, nil
}

func scanRequest(row pgx.Row) (*ajar.Request, error) { return scanRequestAfter(row) }

// scanRequestAfter scans a request's columns after the given leading columns.
func scanRequestAfter(row pgx.Row, lead ...any) (*ajar.Request, error) {
	var (
		r                                      ajar.Request
		dur, attempts                          int64
		params, approvals, handle              string
		state, endReason                       string
		created, updated, deadline             string
		startAt, activated, expires, ended, nx *string
	)
	dest := append(lead, &r.ID, &r.Target, &r.Requester, &r.Reason, &r.Ticket, &dur, &params,
		&r.Policy, &state, &endReason, &created, &updated, &startAt, &deadline, &activated,
		&expires, &ended, &approvals, &handle, &nx, &attempts, &r.LastError, &r.Version)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	r.Duration = time.Duration(dur)
	r.Attempts = int(attempts)
	r.State = ajar.State(state)
	r.EndReason = ajar.EndReason(endReason)
	var d sqlcodec.Decoder
	r.CreatedAt = d.Time(created)
	r.UpdatedAt = d.Time(updated)
	r.StartAt = d.TimePtr(startAt)
	r.ApprovalDeadline = d.Time(deadline)
	r.ActivatedAt = d.TimePtr(activated)
	r.ExpiresAt = d.TimePtr(expires)
	r.EndedAt = d.TimePtr(ended)
	r.NextAt = d.TimePtr(nx)
	d.JSON(params, &r.Params)
	d.JSON(approvals, &r.Approvals)
	d.JSON(handle, &r.Handle)
	if d.Err != nil {
		return nil, fmt.Errorf("decode request %s: %w", r.ID, d.Err)
	}
	return &r, nil
}

// collect reads every row with scan, then closes rows.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
}

func scanRequests(rows pgx.Rows) ([]*ajar.Request, error) {
	return collect(rows, scanRequest)
}

// Audit log.

const auditCols = `seq, time, actor, action, subject, details, prev_hash, hash`

func (t *readTx) AuditHead(ctx context.Context) (int64, []byte, error) {
	if err := t.enter(ctx); err != nil {
		return 0, nil, err
	}
	// The head as the fn before left it is known only once its carried
	// writes went through.
	if err := t.settle(ctx); err != nil {
		return 0, nil, err
	}
	if t.headLocked {
		if t.headUnread {
			if err := t.q.flush(ctx); err != nil {
				return 0, nil, t.fail(err)
			}
		}
		return t.headSeq, t.headHash, nil
	}
	var seq int64
	var hash []byte
	// (In an Update, events wait in the batch's queue only while it holds
	// the head lock, so none waits here; withAudit all the same: the row
	// read must be the head of the events appended.)
	if err := t.q.withAudit().QueryRow(ctx, `SELECT seq, hash FROM audit_head`).Scan(&seq, &hash); err != nil {
		return 0, nil, t.fail(mapError(err, "audit head"))
	}
	return seq, hash, nil
}

func (t *readTx) ListAudit(ctx context.Context, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	if err := t.enter(ctx); err != nil {
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
	// In an Update, the batch's events not inserted yet go first
	// (pipeline.go): fn reads every event appended before.
	rows, err := t.q.withAudit().Query(ctx, q, args...)
	if err != nil {
		return nil, t.fail(mapError(err, "list audit"))
	}
	defer rows.Close()
	out := make([]ajar.AuditEvent, 0, sqlcodec.AuditCap(limit))
	for rows.Next() {
		var e ajar.AuditEvent
		var ts string
		var details []byte
		if err := rows.Scan(&e.Seq, &ts, &e.Actor, &e.Action, &e.Subject, &details, &e.PrevHash, &e.Hash); err != nil {
			return nil, t.fail(mapError(err, "list audit"))
		}
		if e.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return nil, t.fail(fmt.Errorf("postgres: list audit: event %d: %w", e.Seq, err))
		}
		if len(details) > 0 {
			e.Details = json.RawMessage(details)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, "list audit"))
	}
	return out, nil
}

// AppendAudit sets e's place in the chain (seq, previous hash, hash) under the
// head lock and queues it in the batch's auditQueue: it is inserted with the
// batch's other events in the round trip of the COMMIT, or earlier when a
// statement needs it in the table (pipeline.go).
func (t *tx) AppendAudit(ctx context.Context, e ajar.AuditEvent) (ajar.AuditEvent, error) {
	if err := t.enter(ctx); err != nil {
		return ajar.AuditEvent{}, err
	}
	if err := sqlcodec.CheckAuditEvent(&e); err != nil {
		return ajar.AuditEvent{}, err
	}
	if err := checkAuditText(&e); err != nil {
		return ajar.AuditEvent{}, err
	}
	// e extends the head the fn before left only once that fn's carried
	// writes went through (batch.go).
	if err := t.settle(ctx); err != nil {
		return ajar.AuditEvent{}, err
	}
	if err := t.lockHead(ctx); err != nil {
		return ajar.AuditEvent{}, err
	}
	if err := t.readHead(ctx); err != nil {
		return ajar.AuditEvent{}, err
	}
	// The hash covers the UTC text of the time; keep exactly that time.
	e.Time = e.Time.UTC()
	e.Seq = t.headSeq + 1
	e.PrevHash = t.headHash
	e.Hash = e.ComputeHash()
	// Queued in the batch's auditQueue, and inserted with the batch's other
	// events (pipeline.go). The insert trigger checks that the events extend
	// the head and moves it.
	p := pendingAudit{e: e}
	if k, ok := t.q.p.written[e.Subject]; ok {
		p.keys, p.named = k, true
	} else if k, ok := t.q.b.written[e.Subject]; ok {
		p.keys, p.named = k, true
	}
	t.q.b.audit.events = append(t.q.b.audit.events, p)
	t.headSeq, t.headHash = e.Seq, e.Hash
	return e, nil
}

// maxAuditText bounds the indexed text of an audit event (actor, action,
// subject), in bytes: far above any id ajar makes (API ids are at most 200
// characters, user ids 320), and far below the size of a B-tree index entry
// PostgreSQL refuses (about 2,700 bytes after compression).
const maxAuditText = 1024

// checkAuditText refuses the text of e that PostgreSQL cannot store, as the
// server would (mapError), or cannot index. The event is inserted with the
// batch's others (pipeline.go): refused there, it would fail every Update of
// the batch.
func checkAuditText(e *ajar.AuditEvent) error {
	for _, s := range [...]string{e.Actor, e.Action, e.Subject} {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return ajar.Errorf(ajar.EINVALID, "append audit event: text must be valid UTF-8 without NUL characters")
		}
		if len(s) > maxAuditText {
			return ajar.Errorf(ajar.EINVALID, "append audit event: actor, action and subject must be at most %d bytes", maxAuditText)
		}
	}
	return nil
}

// Keys and certificates.

func (t *readTx) GetKey(ctx context.Context, name string) ([]byte, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	var sealed []byte
	err := t.q.QueryRow(ctx, `SELECT sealed FROM keys WHERE name = $1`, name).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "key %s not found", name)
	} else if err != nil {
		return nil, t.fail(mapError(err, "get key "+name))
	}
	if sealed == nil {
		sealed = []byte{}
	}
	return sealed, nil
}

func (t *tx) PutKey(ctx context.Context, name string, sealed []byte) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	if name == "" {
		return ajar.FieldErrorf("name", "key name is required")
	}
	if sealed == nil {
		sealed = []byte{}
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO keys (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, sealed)
	if err != nil {
		return t.fail(mapError(err, "put key "+name))
	}
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "key %s already exists", name)
	}
	return nil
}

const sshCertCols = `serial, request_id, key_id, principals, fingerprint, valid_after, valid_before, issued_at, public_key`

func (t *readTx) ListSSHCerts(ctx context.Context, requestID string) ([]ajar.SSHCert, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	query, args := `SELECT `+sshCertCols+` FROM ssh_certs ORDER BY id`, []any(nil)
	if requestID != "" {
		query, args = `SELECT `+sshCertCols+` FROM ssh_certs WHERE request_id = $1 ORDER BY id`, []any{requestID}
	}
	return t.querySSHCerts(ctx, "list ssh certs", query, args...)
}

func (t *readTx) FindSSHCerts(ctx context.Context, f ajar.SSHCertFilter) ([]ajar.SSHCert, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	b.WriteString(`SELECT ` + sshCertCols + ` FROM ssh_certs WHERE TRUE`)
	if !f.ValidAfter.IsZero() {
		after, err := sqlcodec.FormatTime("valid_after", f.ValidAfter)
		if err != nil {
			return nil, err
		}
		b.WriteString(` AND valid_before > ` + arg(after))
	}
	if f.Fingerprint != "" {
		b.WriteString(` AND fingerprint = ` + arg(f.Fingerprint))
	}
	if len(f.RequestStates) > 0 {
		states := make([]string, len(f.RequestStates))
		for i, s := range f.RequestStates {
			states[i] = string(s)
		}
		b.WriteString(` AND request_id IN (SELECT id FROM requests WHERE state = ANY(` + arg(states) + `))`)
	}
	b.WriteString(` ORDER BY id`)
	return t.querySSHCerts(ctx, "find ssh certs", b.String(), args...)
}

func (t *readTx) querySSHCerts(ctx context.Context, doing, query string, args ...any) ([]ajar.SSHCert, error) {
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, t.fail(mapError(err, doing))
	}
	defer rows.Close()
	var out []ajar.SSHCert
	for rows.Next() {
		var c ajar.SSHCert
		var serial int64
		var principals, after, before, issued string
		if err := rows.Scan(&serial, &c.RequestID, &c.KeyID, &principals, &c.Fingerprint, &after, &before, &issued, &c.PublicKey); err != nil {
			return nil, t.fail(mapError(err, doing))
		}
		c.Serial = uint64(serial)
		var d sqlcodec.Decoder
		c.ValidAfter = d.Time(after)
		c.ValidBefore = d.Time(before)
		c.IssuedAt = d.Time(issued)
		d.JSON(principals, &c.Principals)
		if d.Err != nil {
			return nil, t.fail(fmt.Errorf("postgres: %s: serial %d: %w", doing, c.Serial, d.Err))
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, doing))
	}
	return out, nil
}

func (t *tx) InsertSSHCert(ctx context.Context, c ajar.SSHCert) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	args, err := sqlcodec.SSHCertArgs(c)
	if err != nil {
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	// Queued (pipeline.go): a serial that exists fails the insert (a unique
	// violation, so the server refuses it, not a check here) and fn with
	// ECONFLICT when it is sent.
	t.q.queueApart(qInsertSSHCert, args, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			if pgCode(err) == codeUniqueViolation {
				return ajar.Errorf(ajar.ECONFLICT, "ssh certificate serial %d already exists", c.Serial)
			}
			return mapError(err, fmt.Sprintf("insert ssh cert %d", c.Serial))
		}
		return nil
	})
	return nil
}

const qInsertSSHCert = `INSERT INTO ssh_certs (` + sshCertCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
