package sqlcodec

import (
	"encoding/json"
	"time"

	"github.com/ajar-dev/ajar"
)

// The checks and column arguments below are the same in both stores. Each list of
// arguments is in the order of the columns named in its comment, which both
// stores' queries use.

// RequestArgs encodes every column of r but id and version: target, requester,
// reason, ticket, duration, params, policy, state, end_reason, created_at,
// updated_at, start_at, approval_deadline, activated_at, expires_at, ended_at,
// approvals, handle, next_at, attempts, last_error.
func RequestArgs(r *ajar.Request) ([]any, error) {
	var e Encoder
	args := []any{
		r.Target, r.Requester, r.Reason, r.Ticket, int64(r.Duration),
		e.JSON("params", r.Params), r.Policy, string(r.State), string(r.EndReason),
		e.Time("created_at", r.CreatedAt), e.Time("updated_at", r.UpdatedAt),
		e.TimePtr("start_at", r.StartAt), e.Time("approval_deadline", r.ApprovalDeadline),
		e.TimePtr("activated_at", r.ActivatedAt), e.TimePtr("expires_at", r.ExpiresAt),
		e.TimePtr("ended_at", r.EndedAt), e.JSON("approvals", r.Approvals),
		e.JSON("grant", r.Handle), e.TimePtr("next_at", r.NextAt),
		int64(r.Attempts), r.LastError,
	}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}

// CheckAuditEvent checks an audit event to append and sets empty details to nil.
func CheckAuditEvent(e *ajar.AuditEvent) error {
	if e.Time.IsZero() {
		return ajar.FieldErrorf("time", "audit event time is required")
	}
	if y := e.Time.UTC().Year(); y < 0 || y > 9999 {
		return ajar.FieldErrorf("time", "year %d is out of range", y)
	}
	if len(e.Details) == 0 {
		e.Details = nil
	} else if !json.Valid(e.Details) {
		return ajar.FieldErrorf("details", "audit event details are not valid JSON")
	}
	return nil
}

// SSHCertArgs encodes every column of c: serial, request_id, key_id, principals,
// fingerprint, valid_after, valid_before, issued_at, public_key.
func SSHCertArgs(c ajar.SSHCert) ([]any, error) {
	var e Encoder
	args := []any{
		int64(c.Serial), c.RequestID, c.KeyID, e.JSON("principals", c.Principals), c.Fingerprint,
		e.Time("valid_after", c.ValidAfter), e.Time("valid_before", c.ValidBefore), e.Time("issued_at", c.IssuedAt),
		c.PublicKey,
	}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}

// NewNotificationArgs checks a notification to enqueue and encodes the columns
// sink, key (NULL if empty), event, created_at, next_at. next is the time it is
// due: n.NextAt, or n.CreatedAt if that is zero.
func NewNotificationArgs(n *ajar.Notification) (args []any, next time.Time, err error) {
	if n.Sink == "" {
		return nil, time.Time{}, ajar.FieldErrorf("sink", "notification sink is required")
	}
	if !json.Valid(n.Event) {
		return nil, time.Time{}, ajar.FieldErrorf("event", "notification event is not valid JSON")
	}
	next = n.NextAt
	if next.IsZero() {
		next = n.CreatedAt
	}
	var e Encoder
	created, nextS := e.Time("created_at", n.CreatedAt), e.Time("next_at", next)
	if e.Err != nil {
		return nil, time.Time{}, e.Err
	}
	var key any
	if n.Key != "" {
		key = n.Key
	}
	return []any{n.Sink, key, []byte(n.Event), created, nextS}, next, nil
}

// NewExtensionArgs checks an extension to create and encodes the columns after
// request_id and seq: by_ns, reason, requested_by, requested_at, state,
// approvals, decided_at.
func NewExtensionArgs(x *ajar.Extension) ([]any, error) {
	if x.RequestID == "" {
		return nil, ajar.FieldErrorf("request_id", "is required")
	}
	var e Encoder
	args := []any{int64(x.By), x.Reason, x.RequestedBy, e.Time("requested_at", x.RequestedAt), string(x.State),
		e.JSON("approvals", x.Approvals), e.TimePtr("decided_at", x.DecidedAt)}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}

// VersionsMatch returns ENOTFOUND or ECONFLICT for the first request of rs
// whose id is not in stored or whose stored version is not its Version (the
// check of Tx.UpdateRequests, in both stores).
func VersionsMatch(rs []*ajar.Request, stored map[string]int64) error {
	for _, r := range rs {
		v, ok := stored[r.ID]
		switch {
		case !ok:
			return ajar.Errorf(ajar.ENOTFOUND, "request %s not found", r.ID)
		case v != r.Version:
			return ajar.Errorf(ajar.ECONFLICT, "request %s was changed concurrently (version %d is stale)", r.ID, r.Version)
		}
	}
	return nil
}

// NotificationUpdate checks n's state and encodes the times an update of n
// writes (Tx.UpdateNotification, UpdateNotifications): EINVALID for an
// unknown state or a time out of range; done is nil for no DoneAt.
func NotificationUpdate(n *ajar.Notification) (next string, done *string, err error) {
	switch n.State {
	case ajar.NotificationPending, ajar.NotificationDelivered, ajar.NotificationDropped:
	default:
		return "", nil, ajar.FieldErrorf("state", "unknown notification state %q", n.State)
	}
	if next, err = FormatTime("next_at", n.NextAt); err != nil {
		return "", nil, err
	}
	if n.DoneAt != nil {
		d, err := FormatTime("done_at", *n.DoneAt)
		if err != nil {
			return "", nil, err
		}
		done = &d
	}
	return next, done, nil
}
