package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// The notification outbox, review tasks and extensions (migration 0003).

const notificationCols = `id, sink, key, event, created_at, next_at, attempts, last_error, state, done_at, version`

func scanNotification(sc scanner) (ajar.Notification, error) {
	var (
		n             ajar.Notification
		key           sql.NullString
		created, next string
		state         string
		done          sql.NullString
	)
	if err := sc.Scan(&n.ID, &n.Sink, &key, &n.Event, &created, &next, &n.Attempts, &n.LastError, &state, &done, &n.Version); err != nil {
		return n, err
	}
	n.Key = key.String
	n.State = ajar.NotificationState(state)
	var d decoder
	n.CreatedAt = d.Time(created)
	n.NextAt = d.Time(next)
	n.DoneAt = d.nullTime(done)
	if d.Err != nil {
		return n, fmt.Errorf("decode notification %d: %w", n.ID, d.Err)
	}
	return n, nil
}

func (t *readTx) NextNotification(ctx context.Context, sink string) (*ajar.Notification, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, `SELECT `+notificationCols+` FROM notifications
		WHERE sink = ? AND state = 'pending' ORDER BY id LIMIT 1`)
	if err != nil {
		return nil, err
	}
	n, err := scanNotification(st.QueryRowContext(ctx, sink))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no pending notification for sink %s", sink)
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: next notification: %w", err))
	}
	return &n, nil
}

func (t *readTx) ListNotifications(ctx context.Context, f ajar.NotificationFilter) ([]ajar.Notification, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	var args []any
	b.WriteString(`SELECT ` + notificationCols + ` FROM notifications WHERE TRUE`)
	if f.Sink != "" {
		b.WriteString(` AND sink = ?`)
		args = append(args, f.Sink)
	}
	if f.State != "" {
		b.WriteString(` AND state = ?`)
		args = append(args, string(f.State))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	b.WriteString(` ORDER BY id LIMIT ?`)
	args = append(args, limit)
	rows, err := t.q.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list notifications: %w", err))
	}
	out, err := collect(rows, scanNotification)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list notifications: %w", err))
	}
	return out, nil
}

func (t *readTx) CountPendingNotifications(ctx context.Context) (map[string]int, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, `SELECT sink, count(*) FROM notifications WHERE state = 'pending' GROUP BY sink`)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: count notifications: %w", err))
	}
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var sink string
		var n int
		if err := rows.Scan(&sink, &n); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: count notifications: %w", err))
		}
		m[sink] = n
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: count notifications: %w", err))
	}
	return m, nil
}

func (t *tx) EnqueueNotification(ctx context.Context, n *ajar.Notification) (bool, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return false, err
	}
	args, next, err := sqlcodec.NewNotificationArgs(n)
	if err != nil {
		return false, err
	}
	// ON CONFLICT DO NOTHING covers only the (sink, key) index: id is chosen by
	// SQLite and cannot clash.
	st, err := t.prepared(ctx, `INSERT INTO notifications
		(sink, key, event, created_at, next_at, attempts, last_error, state, done_at, version)
		VALUES (?, ?, ?, ?, ?, 0, '', 'pending', NULL, 1)
		ON CONFLICT (sink, key) WHERE key IS NOT NULL DO NOTHING`)
	if err != nil {
		return false, err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: enqueue notification: %w", err))
	}
	if k, err := res.RowsAffected(); err != nil {
		return false, t.fail(fmt.Errorf("sqlite: enqueue notification: %w", err))
	} else if k == 0 {
		return false, nil
	}
	id, err := res.LastInsertId()
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: enqueue notification: %w", err))
	}
	n.ID, n.NextAt, n.Attempts, n.LastError = id, next, 0, ""
	n.State, n.DoneAt, n.Version = ajar.NotificationPending, nil, 1
	return true, nil
}

// maxNotificationRows is the most notifications one statement of
// UpdateNotifications writes.
const maxNotificationRows = 64

func (t *tx) UpdateNotifications(ctx context.Context, ns []*ajar.Notification) ([]bool, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	written := make([]bool, len(ns))
	rows := make([][]any, len(ns))
	for i, n := range ns {
		if rows[i], err = notificationUpdateArgs(n); err != nil {
			return nil, err
		}
	}
	at := make(map[int64]int, len(ns)) // id → index in ns
	for lo := 0; lo < len(ns); lo += maxNotificationRows {
		hi := min(lo+maxNotificationRows, len(ns))
		clear(at)
		var args []any
		for i := lo; i < hi; i++ {
			if _, dup := at[ns[i].ID]; dup {
				// The same notification twice: the second is stale once
				// the first is written, as it would be one after the other.
				continue
			}
			at[ns[i].ID] = i
			args = append(args, rows[i]...)
		}
		st, err := t.prepared(ctx, qUpdateNotifications(len(at)))
		if err != nil {
			return nil, err
		}
		res, err := st.QueryContext(ctx, args...)
		if err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: update notifications: %w", err))
		}
		for res.Next() {
			var id int64
			if err := res.Scan(&id); err != nil {
				res.Close()
				return nil, t.fail(fmt.Errorf("sqlite: update notifications: %w", err))
			}
			if i, ok := at[id]; ok {
				written[i] = true
				ns[i].Version++
			}
		}
		if err := res.Close(); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: update notifications: %w", err))
		}
		if err := res.Err(); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: update notifications: %w", err))
		}
	}
	return written, nil
}

// qUpdateNotifications is the statement of UpdateNotifications for n rows,
// each (id, version, next_at, attempts, last_error, state, done_at).
func qUpdateNotifications(n int) string {
	const row = `(?, ?, ?, ?, ?, ?, ?)`
	return `WITH v(id, version, next_at, attempts, last_error, state, done_at) AS (VALUES ` + row + strings.Repeat(`, `+row, n-1) + `)
		UPDATE notifications SET next_at = v.next_at, attempts = v.attempts, last_error = v.last_error,
			state = v.state, done_at = v.done_at, version = notifications.version + 1
		FROM v WHERE notifications.id = v.id AND notifications.version = v.version
		RETURNING notifications.id`
}

// notificationUpdateArgs are n's row of qUpdateNotifications, or EINVALID.
func notificationUpdateArgs(n *ajar.Notification) ([]any, error) {
	next, done, err := sqlcodec.NotificationUpdate(n)
	if err != nil {
		return nil, err
	}
	return []any{n.ID, n.Version, next, n.Attempts, n.LastError, string(n.State), done}, nil
}

func (t *tx) UpdateNotification(ctx context.Context, n *ajar.Notification) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	next, done, err := sqlcodec.NotificationUpdate(n)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, `UPDATE notifications SET next_at = ?, attempts = ?, last_error = ?,
		state = ?, done_at = ?, version = version + 1 WHERE id = ? AND version = ?`)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, next, n.Attempts, n.LastError, string(n.State), done, n.ID, n.Version)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update notification %d: %w", n.ID, err))
	}
	k, err := res.RowsAffected()
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update notification %d: %w", n.ID, err))
	}
	if k == 0 {
		var exists bool
		if err := t.q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM notifications WHERE id = ?)`, n.ID).Scan(&exists); err != nil {
			return t.fail(fmt.Errorf("sqlite: update notification %d: %w", n.ID, err))
		}
		if !exists {
			return ajar.Errorf(ajar.ENOTFOUND, "notification %d not found", n.ID)
		}
		return ajar.Errorf(ajar.ECONFLICT, "notification %d was changed concurrently (version %d is stale)", n.ID, n.Version)
	}
	n.Version++
	return nil
}

func (t *tx) PruneNotifications(ctx context.Context, before time.Time, limit int) (int, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, ajar.FieldErrorf("limit", "must be positive, got %d", limit)
	}
	b, err := sqlcodec.FormatTime("before", before)
	if err != nil {
		return 0, err
	}
	res, err := t.q.ExecContext(ctx, `DELETE FROM notifications WHERE id IN (
		SELECT id FROM notifications WHERE state != 'pending' AND done_at < ? ORDER BY done_at LIMIT ?)`, b, limit)
	if err != nil {
		return 0, t.fail(fmt.Errorf("sqlite: prune notifications: %w", err))
	}
	k, err := res.RowsAffected()
	if err != nil {
		return 0, t.fail(fmt.Errorf("sqlite: prune notifications: %w", err))
	}
	return int(k), nil
}

// Review tasks.

const reviewCols = `request_id, kind, requester, target, reason, opened_at, closed_at, closed_by, comment`

func scanReview(sc scanner) (ajar.ReviewTask, error) {
	var r ajar.ReviewTask
	var opened string
	var closed sql.NullString
	if err := sc.Scan(&r.RequestID, &r.Kind, &r.Requester, &r.Target, &r.Reason, &opened, &closed, &r.ClosedBy, &r.Comment); err != nil {
		return r, err
	}
	var d decoder
	r.OpenedAt = d.Time(opened)
	r.ClosedAt = d.nullTime(closed)
	if d.Err != nil {
		return r, fmt.Errorf("decode review %s: %w", r.RequestID, d.Err)
	}
	return r, nil
}

func (t *readTx) GetReview(ctx context.Context, requestID string) (*ajar.ReviewTask, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, `SELECT `+reviewCols+` FROM reviews WHERE request_id = ?`)
	if err != nil {
		return nil, err
	}
	r, err := scanReview(st.QueryRowContext(ctx, requestID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s has no review", requestID)
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: get review %s: %w", requestID, err))
	}
	return &r, nil
}

func (t *readTx) ListReviews(ctx context.Context, f ajar.ReviewFilter) ([]ajar.ReviewTask, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
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
		where += ` AND (opened_at < ? OR (opened_at = ? AND request_id < ?))`
		args = append(args, at, at, f.After.RequestID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	st, err := t.prepared(ctx, `SELECT `+reviewCols+` FROM reviews`+where+` ORDER BY opened_at DESC, request_id DESC LIMIT ?`)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, append(args, limit)...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list reviews: %w", err))
	}
	out, err := collect(rows, scanReview)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list reviews: %w", err))
	}
	return out, nil
}

func (t *readTx) CountOpenReviews(ctx context.Context) (int, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return 0, err
	}
	var n int
	if err := t.q.QueryRowContext(ctx, `SELECT count(*) FROM reviews WHERE closed_at IS NULL`).Scan(&n); err != nil {
		return 0, t.fail(fmt.Errorf("sqlite: count reviews: %w", err))
	}
	return n, nil
}

func (t *tx) CreateReview(ctx context.Context, r ajar.ReviewTask) error {
	ctx, err := t.enter(ctx)
	if err != nil {
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
	st, err := t.prepared(ctx, `INSERT INTO reviews (`+reviewCols+`) VALUES (?, ?, ?, ?, ?, ?, NULL, '', '')`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, r.RequestID, r.Kind, r.Requester, r.Target, r.Reason, opened); err != nil {
		if isUniqueViolation(err) {
			return ajar.Errorf(ajar.ECONFLICT, "request %s already has a review", r.RequestID)
		}
		return t.fail(fmt.Errorf("sqlite: create review %s: %w", r.RequestID, err))
	}
	return nil
}

func (t *tx) CloseReview(ctx context.Context, requestID, closedBy, comment string, at time.Time) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	closed, err := sqlcodec.FormatTime("closed_at", at)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, `UPDATE reviews SET closed_at = ?, closed_by = ?, comment = ?
		WHERE request_id = ? AND closed_at IS NULL`)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, closed, closedBy, comment, requestID)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: close review %s: %w", requestID, err))
	}
	k, err := res.RowsAffected()
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: close review %s: %w", requestID, err))
	}
	if k == 1 {
		return nil
	}
	var exists bool
	if err := t.q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM reviews WHERE request_id = ?)`, requestID).Scan(&exists); err != nil {
		return t.fail(fmt.Errorf("sqlite: close review %s: %w", requestID, err))
	}
	if !exists {
		return ajar.Errorf(ajar.ENOTFOUND, "request %s has no review", requestID)
	}
	return ajar.Errorf(ajar.ECONFLICT, "the review of request %s is already closed", requestID)
}

// Extensions.

const extensionCols = `request_id, seq, by_ns, reason, requested_by, requested_at, state, approvals, decided_at, version`

func (t *readTx) ListExtensions(ctx context.Context, requestID string) ([]ajar.Extension, error) {
	return t.listExtensions(ctx, `SELECT `+extensionCols+` FROM extensions WHERE request_id = ? ORDER BY seq`, requestID)
}

// ListPendingExtensions reads the partial index extensions_pending (migration
// 0008): the pending extensions only, however many extensions there are.
func (t *readTx) ListPendingExtensions(ctx context.Context) ([]ajar.Extension, error) {
	return t.listExtensions(ctx, `SELECT `+extensionCols+` FROM extensions WHERE state = 'pending' ORDER BY request_id, seq`)
}

func (t *readTx) listExtensions(ctx context.Context, query string, args ...any) ([]ajar.Extension, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list extensions: %w", err))
	}
	defer rows.Close()
	var out []ajar.Extension
	for rows.Next() {
		var (
			e                ajar.Extension
			by               int64
			requested, state string
			approvals        string
			decided          sql.NullString
		)
		if err := rows.Scan(&e.RequestID, &e.Seq, &by, &e.Reason, &e.RequestedBy, &requested, &state, &approvals, &decided, &e.Version); err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: list extensions: %w", err))
		}
		e.By = time.Duration(by)
		e.State = ajar.ExtensionState(state)
		var d decoder
		e.RequestedAt = d.Time(requested)
		e.DecidedAt = d.nullTime(decided)
		d.JSON(approvals, &e.Approvals)
		if d.Err != nil {
			return nil, t.fail(fmt.Errorf("sqlite: list extensions: %s/%d: %w", e.RequestID, e.Seq, d.Err))
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list extensions: %w", err))
	}
	return out, nil
}

func (t *tx) CreateExtension(ctx context.Context, x *ajar.Extension) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	args, err := sqlcodec.NewExtensionArgs(x)
	if err != nil {
		return err
	}
	var seq int
	if err := t.q.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) + 1 FROM extensions WHERE request_id = ?`, x.RequestID).Scan(&seq); err != nil {
		return t.fail(fmt.Errorf("sqlite: create extension: %w", err))
	}
	st, err := t.prepared(ctx, `INSERT INTO extensions (`+extensionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, append([]any{x.RequestID, seq}, args...)...); err != nil {
		if isUniqueViolation(err) {
			return ajar.Errorf(ajar.ECONFLICT, "extension %s/%d already exists", x.RequestID, seq)
		}
		return t.fail(fmt.Errorf("sqlite: create extension: %w", err))
	}
	x.Seq, x.Version = seq, 1
	return nil
}

func (t *tx) UpdateExtension(ctx context.Context, x *ajar.Extension) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	var e sqlcodec.Encoder
	approvals, decided := e.JSON("approvals", x.Approvals), e.TimePtr("decided_at", x.DecidedAt)
	if e.Err != nil {
		return e.Err
	}
	st, err := t.prepared(ctx, `UPDATE extensions SET state = ?, approvals = ?, decided_at = ?, version = version + 1
		WHERE request_id = ? AND seq = ? AND version = ?`)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, string(x.State), approvals, decided, x.RequestID, x.Seq, x.Version)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update extension %s/%d: %w", x.RequestID, x.Seq, err))
	}
	k, err := res.RowsAffected()
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update extension %s/%d: %w", x.RequestID, x.Seq, err))
	}
	if k == 0 {
		var exists bool
		if err := t.q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM extensions WHERE request_id = ? AND seq = ?)`, x.RequestID, x.Seq).Scan(&exists); err != nil {
			return t.fail(fmt.Errorf("sqlite: update extension %s/%d: %w", x.RequestID, x.Seq, err))
		}
		if !exists {
			return ajar.Errorf(ajar.ENOTFOUND, "extension %s/%d not found", x.RequestID, x.Seq)
		}
		return ajar.Errorf(ajar.ECONFLICT, "extension %s/%d was changed concurrently (version %d is stale)", x.RequestID, x.Seq, x.Version)
	}
	x.Version++
	return nil
}
