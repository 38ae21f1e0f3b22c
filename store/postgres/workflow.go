package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// The notification outbox, review tasks and extensions (migration 0003).

const notificationCols = `id, sink, key, event, created_at, next_at, attempts, last_error, state, done_at, version`

func scanNotification(row pgx.Row) (ajar.Notification, error) {
	var (
		n             ajar.Notification
		key           *string
		created, next string
		attempts      int64
		state         string
		done          *string
	)
	if err := row.Scan(&n.ID, &n.Sink, &key, &n.Event, &created, &next, &attempts, &n.LastError, &state, &done, &n.Version); err != nil {
		return n, err
	}
	if key != nil {
		n.Key = *key
	}
	n.Attempts = int(attempts)
	n.State = ajar.NotificationState(state)
	var d sqlcodec.Decoder
	n.CreatedAt = d.Time(created)
	n.NextAt = d.Time(next)
	n.DoneAt = d.TimePtr(done)
	if d.Err != nil {
		return n, fmt.Errorf("decode notification %d: %w", n.ID, d.Err)
	}
	return n, nil
}

func (t *readTx) NextNotification(ctx context.Context, sink string) (*ajar.Notification, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	n, err := scanNotification(t.q.QueryRow(ctx, `SELECT `+notificationCols+` FROM notifications
		WHERE sink = $1 AND state = 'pending' ORDER BY id LIMIT 1`, sink))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no pending notification for sink %s", sink)
	} else if err != nil {
		return nil, t.fail(mapError(err, "next notification"))
	}
	return &n, nil
}

func (t *readTx) ListNotifications(ctx context.Context, f ajar.NotificationFilter) ([]ajar.Notification, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	b.WriteString(`SELECT ` + notificationCols + ` FROM notifications WHERE TRUE`)
	if f.Sink != "" {
		b.WriteString(` AND sink = ` + arg(f.Sink))
	}
	switch f.State {
	case "":
	case ajar.NotificationPending:
		// A constant, not a parameter: the partial index of pending
		// notifications then serves the plan the server keeps for this
		// statement, where with a parameter it planned every call anew
		// (the outbox lists each sink's pending notifications all the time).
		b.WriteString(` AND state = 'pending'`)
	default:
		b.WriteString(` AND state = ` + arg(string(f.State)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	b.WriteString(` ORDER BY id LIMIT ` + arg(limit))
	rows, err := t.q.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, t.fail(mapError(err, "list notifications"))
	}
	out, err := collect(rows, scanNotification)
	if err != nil {
		return nil, t.fail(mapError(err, "list notifications"))
	}
	return out, nil
}

func (t *readTx) CountPendingNotifications(ctx context.Context) (map[string]int, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, `SELECT sink, count(*) FROM notifications WHERE state = 'pending' GROUP BY sink`)
	if err != nil {
		return nil, t.fail(mapError(err, "count notifications"))
	}
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var sink string
		var n int64
		if err := rows.Scan(&sink, &n); err != nil {
			return nil, t.fail(mapError(err, "count notifications"))
		}
		m[sink] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, "count notifications"))
	}
	return m, nil
}

// EnqueueNotification takes n's id from the ids the transaction reserved from
// the sequence while it holds the head lock (with the lock once this store has
// enqueued a notification, else when none is left: one round trip for
// 16 of them), so ids are in commit order: no
// other writer reserves any until this transaction ends, and ids reserved
// before the head lock was lost (a rolled back savepoint) are never used. A
// notification without a key is then queued (pipeline.go): it cannot
// conflict, and nothing waits for its result.
func (t *tx) EnqueueNotification(ctx context.Context, n *ajar.Notification) (bool, error) {
	if err := t.enter(ctx); err != nil {
		return false, err
	}
	args, next, err := sqlcodec.NewNotificationArgs(n)
	if err != nil {
		return false, err
	}
	// The ids the fn before reserved are good only once its carried writes
	// went through (batch.go).
	if err := t.settle(ctx); err != nil {
		return false, err
	}
	if err := t.lockHead(ctx); err != nil {
		return false, err
	}
	if t.notifies != nil {
		t.notifies.Store(true)
	}
	if t.idsUnread {
		if err := t.q.flush(ctx); err != nil {
			return false, t.fail(err)
		}
	}
	if len(t.ids) == 0 {
		rows, err := t.q.Query(ctx, qReserveIDs)
		if err != nil {
			return false, t.fail(mapError(err, "enqueue notification"))
		}
		if err := t.setIDs(rows); err != nil {
			return false, t.fail(mapError(err, "enqueue notification"))
		}
	}
	id := t.ids[0]
	t.ids = t.ids[1:]
	args = append([]any{id}, args...)
	if n.Key == "" {
		// args: id, sink, key (nil), event, created_at, next_at.
		row := &notifRow{id: id, sink: n.Sink, event: []byte(n.Event)}
		var ok1, ok2 bool
		row.createdAt, ok1 = args[4].(string)
		row.nextAt, ok2 = args[5].(string)
		if !ok1 || !ok2 {
			return false, fmt.Errorf("postgres: enqueue notification: times encoded as %T and %T", args[4], args[5])
		}
		t.q.queueNotification(row)
	} else {
		err = t.q.QueryRow(ctx, qEnqueue+` ON CONFLICT (sink, key) WHERE key IS NOT NULL DO NOTHING RETURNING id`, args...).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil // the key is taken
		} else if err != nil {
			return false, t.fail(mapError(err, "enqueue notification"))
		}
	}
	n.ID, n.NextAt, n.Attempts, n.LastError = id, next, 0, ""
	n.State, n.DoneAt, n.Version = ajar.NotificationPending, nil, 1
	return true, nil
}

// setIDs keeps the ids reserved by qReserveIDs, in order.
func (t *tx) setIDs(rows pgx.Rows) error {
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	slices.Sort(ids)
	t.ids = ids
	return nil
}

const (
	// qReserveIDs reserves 16 notification ids, how many a transaction
	// takes at a time; the ones it does not use are gaps (ids only grow).
	// It names the sequence once per statement (OFFSET 0 keeps the
	// subquery from being pulled up into a per-row call) and takes its count
	// as a constant, so the server plans it once per connection: with the
	// count as a parameter it planned it anew on every call, and looked the
	// sequence up by name for every id.
	qReserveIDs = `SELECT nextval(s.seq) FROM
		(SELECT pg_get_serial_sequence('notifications', 'id')::regclass AS seq OFFSET 0) AS s,
		generate_series(1, 16)`
	qEnqueue = `INSERT INTO notifications
		(id, sink, key, event, created_at, next_at, attempts, last_error, state, done_at, version)
		OVERRIDING SYSTEM VALUE
		VALUES ($1, $2, $3, $4, $5, $6, 0, '', 'pending', NULL, 1)`
)

func (t *tx) UpdateNotifications(ctx context.Context, ns []*ajar.Notification) ([]bool, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	written := make([]bool, len(ns))
	if len(ns) == 0 {
		return written, nil
	}
	var (
		ids, versions, attempts []int64
		nexts, errs, states     []string
		dones                   []*string
	)
	at := make(map[int64]int, len(ns)) // id → index in ns
	for i, n := range ns {
		next, done, err := sqlcodec.NotificationUpdate(n)
		if err != nil {
			return nil, err
		}
		if _, dup := at[n.ID]; dup {
			continue // stale once the first is written, as one after the other
		}
		at[n.ID] = i
		ids, versions, attempts = append(ids, n.ID), append(versions, n.Version), append(attempts, int64(n.Attempts))
		nexts, errs, states, dones = append(nexts, next), append(errs, n.LastError), append(states, string(n.State)), append(dones, done)
	}
	if err := t.lockHead(ctx); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, `UPDATE notifications AS n SET next_at = v.next_at, attempts = v.attempts,
			last_error = v.last_error, state = v.state, done_at = v.done_at, version = n.version + 1
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])
			AS v(id, version, next_at, attempts, last_error, state, done_at)
		WHERE n.id = v.id AND n.version = v.version
		RETURNING n.id`, ids, versions, nexts, attempts, errs, states, dones)
	if err != nil {
		return nil, t.fail(mapError(err, "update notifications"))
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, t.fail(mapError(err, "update notifications"))
		}
		if i, ok := at[id]; ok {
			written[i] = true
			ns[i].Version++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, "update notifications"))
	}
	return written, nil
}

func (t *tx) UpdateNotification(ctx context.Context, n *ajar.Notification) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	next, done, err := sqlcodec.NotificationUpdate(n)
	if err != nil {
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	var k int64
	var exists bool
	err = t.q.QueryRow(ctx, `WITH upd AS (
		UPDATE notifications SET next_at = $1, attempts = $2, last_error = $3, state = $4, done_at = $5,
			version = version + 1
		WHERE id = $6 AND version = $7
		RETURNING 1)
		SELECT (SELECT count(*) FROM upd), EXISTS (SELECT 1 FROM notifications WHERE id = $6)`,
		next, int64(n.Attempts), n.LastError, string(n.State), done, n.ID, n.Version).Scan(&k, &exists)
	if err != nil {
		return t.fail(mapError(err, fmt.Sprintf("update notification %d", n.ID)))
	}
	switch {
	case k == 1:
		n.Version++
		return nil
	case !exists:
		return ajar.Errorf(ajar.ENOTFOUND, "notification %d not found", n.ID)
	default:
		return ajar.Errorf(ajar.ECONFLICT, "notification %d was changed concurrently (version %d is stale)", n.ID, n.Version)
	}
}

func (t *tx) PruneNotifications(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := t.enter(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, ajar.FieldErrorf("limit", "must be positive, got %d", limit)
	}
	b, err := sqlcodec.FormatTime("before", before)
	if err != nil {
		return 0, err
	}
	if err := t.lockHead(ctx); err != nil {
		return 0, err
	}
	tag, err := t.q.Exec(ctx, `DELETE FROM notifications WHERE id IN (
		SELECT id FROM notifications WHERE state <> 'pending' AND done_at < $1 ORDER BY done_at LIMIT $2)`, b, limit)
	if err != nil {
		return 0, t.fail(mapError(err, "prune notifications"))
	}
	return int(tag.RowsAffected()), nil
}

// Review tasks.

const reviewCols = `request_id, kind, requester, target, reason, opened_at, closed_at, closed_by, comment`

func scanReview(row pgx.Row) (ajar.ReviewTask, error) {
	var r ajar.ReviewTask
	var opened string
	var closed *string
	if err := row.Scan(&r.RequestID, &r.Kind, &r.Requester, &r.Target, &r.Reason, &opened, &closed, &r.ClosedBy, &r.Comment); err != nil {
		return r, err
	}
	var d sqlcodec.Decoder
	r.OpenedAt = d.Time(opened)
	r.ClosedAt = d.TimePtr(closed)
	if d.Err != nil {
		return r, fmt.Errorf("decode review %s: %w", r.RequestID, d.Err)
	}
	return r, nil
}

func (t *readTx) GetReview(ctx context.Context, requestID string) (*ajar.ReviewTask, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	r, err := scanReview(t.q.QueryRow(ctx, `SELECT `+reviewCols+` FROM reviews WHERE request_id = $1`, requestID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s has no review", requestID)
	} else if err != nil {
		return nil, t.fail(mapError(err, "get review "+requestID))
	}
	return &r, nil
}

func (t *readTx) ListReviews(ctx context.Context, f ajar.ReviewFilter) ([]ajar.ReviewTask, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	where, args := ` WHERE TRUE`, []any{}
	if f.OnlyOpen {
		where += ` AND closed_at IS NULL`
	}
	if f.After != nil {
		at, err := sqlcodec.FormatTime("after", f.After.OpenedAt)
		if err != nil {
			return nil, err
		}
		where += ` AND (opened_at < $1 OR (opened_at = $1 AND request_id < $2))`
		args = append(args, at, f.After.RequestID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	args = append(args, limit)
	q := `SELECT ` + reviewCols + ` FROM reviews` + where + fmt.Sprintf(` ORDER BY opened_at DESC, request_id DESC LIMIT $%d`, len(args))
	rows, err := t.q.Query(ctx, q, args...)
	if err != nil {
		return nil, t.fail(mapError(err, "list reviews"))
	}
	out, err := collect(rows, scanReview)
	if err != nil {
		return nil, t.fail(mapError(err, "list reviews"))
	}
	return out, nil
}

func (t *readTx) CountOpenReviews(ctx context.Context) (int, error) {
	if err := t.enter(ctx); err != nil {
		return 0, err
	}
	var n int64
	if err := t.q.QueryRow(ctx, `SELECT count(*) FROM reviews WHERE closed_at IS NULL`).Scan(&n); err != nil {
		return 0, t.fail(mapError(err, "count reviews"))
	}
	return int(n), nil
}

func (t *tx) CreateReview(ctx context.Context, r ajar.ReviewTask) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	if r.RequestID == "" {
		return ajar.FieldErrorf("request_id", "is required")
	}
	if r.ClosedAt != nil {
		return ajar.FieldErrorf("closed_at", "a new review is open")
	}
	opened, err := sqlcodec.FormatTime("opened_at", r.OpenedAt)
	if err != nil {
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO reviews (`+reviewCols+`) VALUES ($1, $2, $3, $4, $5, $6, NULL, '', '')
		ON CONFLICT (request_id) DO NOTHING`, r.RequestID, r.Kind, r.Requester, r.Target, r.Reason, opened)
	if err != nil {
		return t.fail(mapError(err, "create review "+r.RequestID))
	}
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "request %s already has a review", r.RequestID)
	}
	return nil
}

func (t *tx) CloseReview(ctx context.Context, requestID, closedBy, comment string, at time.Time) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	closed, err := sqlcodec.FormatTime("closed_at", at)
	if err != nil {
		return err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	var k int64
	var exists bool
	err = t.q.QueryRow(ctx, `WITH upd AS (
		UPDATE reviews SET closed_at = $1, closed_by = $2, comment = $3
		WHERE request_id = $4 AND closed_at IS NULL
		RETURNING 1)
		SELECT (SELECT count(*) FROM upd), EXISTS (SELECT 1 FROM reviews WHERE request_id = $4)`,
		closed, closedBy, comment, requestID).Scan(&k, &exists)
	if err != nil {
		return t.fail(mapError(err, "close review "+requestID))
	}
	switch {
	case k == 1:
		return nil
	case !exists:
		return ajar.Errorf(ajar.ENOTFOUND, "request %s has no review", requestID)
	default:
		return ajar.Errorf(ajar.ECONFLICT, "the review of request %s is already closed", requestID)
	}
}

// Extensions.

const extensionCols = `request_id, seq, by_ns, reason, requested_by, requested_at, state, approvals, decided_at, version`

func (t *readTx) ListExtensions(ctx context.Context, requestID string) ([]ajar.Extension, error) {
	return t.listExtensions(ctx, `SELECT `+extensionCols+` FROM extensions WHERE request_id = $1 ORDER BY seq`, requestID)
}

// ListPendingExtensions reads the partial index extensions_pending (migration
// 0008): the pending extensions only, however many extensions there are.
func (t *readTx) ListPendingExtensions(ctx context.Context) ([]ajar.Extension, error) {
	return t.listExtensions(ctx, `SELECT `+extensionCols+` FROM extensions WHERE state = 'pending' ORDER BY request_id, seq`)
}

func (t *readTx) listExtensions(ctx context.Context, query string, args ...any) ([]ajar.Extension, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, query, args...)
	if err != nil {
		return nil, t.fail(mapError(err, "list extensions"))
	}
	defer rows.Close()
	var out []ajar.Extension
	for rows.Next() {
		var (
			e                ajar.Extension
			seq, by          int64
			requested, state string
			approvals        string
			decided          *string
		)
		if err := rows.Scan(&e.RequestID, &seq, &by, &e.Reason, &e.RequestedBy, &requested, &state, &approvals, &decided, &e.Version); err != nil {
			return nil, t.fail(mapError(err, "list extensions"))
		}
		e.Seq = int(seq)
		e.By = time.Duration(by)
		e.State = ajar.ExtensionState(state)
		var d sqlcodec.Decoder
		e.RequestedAt = d.Time(requested)
		e.DecidedAt = d.TimePtr(decided)
		d.JSON(approvals, &e.Approvals)
		if d.Err != nil {
			return nil, t.fail(fmt.Errorf("postgres: list extensions: %s/%d: %w", e.RequestID, e.Seq, d.Err))
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(mapError(err, "list extensions"))
	}
	return out, nil
}

func (t *tx) CreateExtension(ctx context.Context, x *ajar.Extension) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	args, err := sqlcodec.NewExtensionArgs(x)
	if err != nil {
		return err
	}
	// Under the head lock no other writer can take the same next seq.
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	var seq int64
	err = t.q.QueryRow(ctx, `INSERT INTO extensions (`+extensionCols+`)
		SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8, 1 FROM extensions WHERE request_id = $1
		ON CONFLICT (request_id, seq) DO NOTHING
		RETURNING seq`, append([]any{x.RequestID}, args...)...).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return ajar.Errorf(ajar.ECONFLICT, "an extension of %s was created concurrently", x.RequestID)
	} else if err != nil {
		return t.fail(mapError(err, "create extension"))
	}
	x.Seq, x.Version = int(seq), 1
	return nil
}

func (t *tx) UpdateExtension(ctx context.Context, x *ajar.Extension) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	var e sqlcodec.Encoder
	approvals, decided := e.JSON("approvals", x.Approvals), e.TimePtr("decided_at", x.DecidedAt)
	if e.Err != nil {
		return e.Err
	}
	if err := t.lockHead(ctx); err != nil {
		return err
	}
	var k int64
	var exists bool
	err := t.q.QueryRow(ctx, `WITH upd AS (
		UPDATE extensions SET state = $1, approvals = $2, decided_at = $3, version = version + 1
		WHERE request_id = $4 AND seq = $5 AND version = $6
		RETURNING 1)
		SELECT (SELECT count(*) FROM upd), EXISTS (SELECT 1 FROM extensions WHERE request_id = $4 AND seq = $5)`,
		string(x.State), approvals, decided, x.RequestID, int64(x.Seq), x.Version).Scan(&k, &exists)
	if err != nil {
		return t.fail(mapError(err, fmt.Sprintf("update extension %s/%d", x.RequestID, x.Seq)))
	}
	switch {
	case k == 1:
		x.Version++
		return nil
	case !exists:
		return ajar.Errorf(ajar.ENOTFOUND, "extension %s/%d not found", x.RequestID, x.Seq)
	default:
		return ajar.Errorf(ajar.ECONFLICT, "extension %s/%d was changed concurrently (version %d is stale)", x.RequestID, x.Seq, x.Version)
	}
}
