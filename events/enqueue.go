package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/policy"
)

// NotifyConfig configures event notifications: which events are written to
// the outbox, and how they read. Delivering them is notify/outbox's work. Zero
// fields take defaults.
type NotifyConfig struct {
	// Sinks receive the events they want. None: nothing is written to the
	// outbox at all.
	Sinks []notify.Sink
	// BaseURL is where people reach the web pages ("https://ajar.example.com");
	// events link to them. Empty: no links.
	BaseURL string
	// ExpiryReminder is how long before expiry request.expiring is sent (10m).
	ExpiryReminder time.Duration
	// Wake is called after notifications were written, to wake the delivery
	// workers (notify/outbox's Outbox.Kick); it must not block. It may run
	// before the transaction commits: the workers' poll catches up. Nil: none.
	Wake func()
	// Delivered is called with a notify.Direct sink's name after it got an
	// event (notify/outbox's Outbox.Delivered, which counts it as the outbox
	// counts its own deliveries); it must not block. Nil: none.
	Delivered func(sink string)
}

// Notifier writes notifications to the outbox in the caller's transaction,
// so that the outbox and the state change commit together; a notify.Direct
// sink gets its event once the transaction has committed, without the
// outbox. The core calls it from its audit write (Audit) and its scheduler
// (RemindExpiring). Its methods are safe for concurrent use.
type Notifier struct {
	cfg   NotifyConfig
	build Builder
}

// NewNotifier returns a Notifier for cfg; kind and extendable are Builder's.
func NewNotifier(cfg NotifyConfig, kind func(target string) (string, error), extendable func(rule string) bool) *Notifier {
	if cfg.ExpiryReminder <= 0 {
		cfg.ExpiryReminder = 10 * time.Minute
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Notifier{cfg: cfg, build: Builder{BaseURL: cfg.BaseURL, Kind: kind, Extendable: extendable}}
}

// wants reports whether any sink wants events of type t.
func (n *Notifier) wants(t string) bool {
	for _, s := range n.cfg.Sinks {
		if s.Wants(t) {
			return true
		}
	}
	return false
}

// Wake wakes the delivery workers (NotifyConfig.Wake).
func (n *Notifier) Wake() {
	if n.cfg.Wake != nil {
		n.cfg.Wake()
	}
}

// Audit enqueues in tx the notification the audit event (actor, action,
// subject, details) means, if any sink wants it. details are the audit
// event's, as ajar.MarshalAuditDetails encoded them for it (nil: none): they
// are encoded once for both. An error (the store's) must fail the
// transaction.
func (n *Notifier) Audit(ctx context.Context, tx ajar.Tx, actor, action, subject string, details json.RawMessage) error {
	if !n.notifies(action, details) {
		return nil
	}
	return n.audit(ctx, tx, actor, action, subject, nil, details)
}

// AuditStored is Audit for an event about r, as tx stores it right now (the
// request was just written, unchanged since): it spares re-reading r.
func (n *Notifier) AuditStored(ctx context.Context, tx ajar.Tx, actor, action string, r *ajar.Request, details json.RawMessage) error {
	if !n.notifies(action, details) {
		return nil
	}
	c := *r
	return n.audit(ctx, tx, actor, action, r.ID, &c, details)
}

// notifies reports whether the audit event action with details notifies any
// sink at all.
func (n *Notifier) notifies(action string, details json.RawMessage) bool {
	event, _, ok := ForAudit(action)
	return ok && n.wants(event) && !Silent(action, details)
}

// audit enqueues the notification of an audit event with details raw, about
// r (read from tx when nil).
func (n *Notifier) audit(ctx context.Context, tx ajar.Tx, actor, action, subject string, r *ajar.Request, raw json.RawMessage) error {
	event, state, _ := ForAudit(action)
	var err error
	if r == nil {
		r, err = tx.GetRequest(ctx, subject)
	}
	switch {
	case ajar.ErrorCode(err) == ajar.ENOTFOUND:
		r = nil // an event about something else than a request (drift)
	case err != nil:
		return fmt.Errorf("notify %s: %w", action, err)
	case state != "":
		r.State = state
	}
	if string(raw) == "null" {
		raw = nil
	}
	return n.enqueue(ctx, tx, event, actor, subject, r, raw, "")
}

// enqueue writes event typ about r (nil if it is about no request) to the
// outbox of every sink that wants it. A non-empty key makes it go out once per
// sink however often it is enqueued.
func (n *Notifier) enqueue(ctx context.Context, tx ajar.Tx, typ, actor, subject string, r *ajar.Request, details json.RawMessage, key string) error {
	if !n.wants(typ) {
		return nil
	}
	now := tx.Now()
	var ev *notify.Event // built once, for the first sink that takes it
	var b []byte
	var direct []notify.Direct
	for _, sk := range n.cfg.Sinks {
		if !sk.Wants(typ) {
			continue
		}
		if d, ok := sk.(notify.Direct); ok {
			direct = append(direct, d)
			continue
		}
		if b == nil {
			if ev == nil {
				e := n.build.Build(typ, actor, subject, r, details, now)
				ev = &e
			}
			var err error
			if b, err = ev.AppendJSON(make([]byte, 0, 1536)); err != nil { // json.Marshal's bytes; most events fit
				return fmt.Errorf("notify %s: %w", typ, err)
			}
		}
		if _, err := tx.EnqueueNotification(ctx, &ajar.Notification{Sink: sk.Name(), Key: key, Event: b, CreatedAt: now}); err != nil {
			return fmt.Errorf("notify %s to %s: %w", typ, sk.Name(), err)
		}
	}
	if len(direct) > 0 {
		// Never before the change it reports has committed; never if it
		// does not. With no outbox sink, the event is built then too, out of
		// the writer's time (an Update's fn holds the store's writer), from
		// r as it is now.
		if ev == nil && r != nil {
			c := *r
			r = &c
		}
		tx.AfterCommit(func() {
			if ev == nil {
				e := n.build.Build(typ, actor, subject, r, details, now)
				ev = &e
			}
			for _, d := range direct {
				d.Deliver(context.WithoutCancel(ctx), ev)
				if n.cfg.Delivered != nil {
					n.cfg.Delivered(d.Name())
				}
			}
		})
	}
	if b != nil {
		n.Wake() // the worker may look before the commit; its poll catches up
	}
	return nil
}

// ReminderAt is when request.expiring is due for r: ExpiryReminder before its
// expiry, if a sink wants it and the window is longer than that.
func (n *Notifier) ReminderAt(r *ajar.Request) (time.Time, bool) {
	if r.ExpiresAt == nil || r.ActivatedAt == nil || !n.wants(policy.EventRequestExpiring) {
		return time.Time{}, false
	}
	start := *r.ActivatedAt
	if r.StartAt != nil && r.StartAt.After(start) {
		start = *r.StartAt
	}
	at := r.ExpiresAt.Add(-n.cfg.ExpiryReminder)
	if !at.After(start) {
		return time.Time{}, false
	}
	return at, true
}

// RemindExpiring enqueues request.expiring in tx for an active request whose
// reminder is due at now. Its key holds the expiry, so each window (an
// extension makes a new one) is reminded once per sink however often the
// scheduler looks.
func (n *Notifier) RemindExpiring(ctx context.Context, tx ajar.Tx, r *ajar.Request, now time.Time) error {
	at, ok := n.ReminderAt(r)
	if !ok || now.Before(at) || !now.Before(*r.ExpiresAt) {
		return nil
	}
	details, err := json.Marshal(map[string]any{"expires_at": r.ExpiresAt})
	if err != nil {
		return err
	}
	key := fmt.Sprintf("expiring:%s:%d", r.ID, r.ExpiresAt.UnixNano())
	return n.enqueue(ctx, tx, policy.EventRequestExpiring, ajar.ActorSystem, r.ID, r, details, key)
}
