package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
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
}

func (c NotifyConfig) withDefaults() NotifyConfig {
	if c.ExpiryReminder <= 0 {
		c.ExpiryReminder = 10 * time.Minute
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	return c
}

// notifier is the Service's part that writes notifications to the outbox;
// package events says what each one reads.
type notifier struct {
	cfg   NotifyConfig
	build events.Builder
}

func newNotifier(cfg NotifyConfig, pol *policy.Policy, provs Providers) *notifier {
	cfg = cfg.withDefaults()
	return &notifier{cfg: cfg, build: events.Builder{BaseURL: cfg.BaseURL, Kind: provs.Kind,
		Extendable: func(name string) bool { rule, ok := pol.Rule(name); return ok && rule.Extend != nil }}}
}

// wants reports whether any sink wants events of type t.
func (n *notifier) wants(t string) bool {
	for _, s := range n.cfg.Sinks {
		if s.Wants(t) {
			return true
		}
	}
	return false
}

// kick wakes the delivery workers.
func (n *notifier) kick() {
	if n.cfg.Wake != nil {
		n.cfg.Wake()
	}
}

// notifyAudit enqueues the notification an audit event means, if any sink
// wants it, in the same transaction: the outbox and the state change commit
// together.
func (s *Service) notifyAudit(ctx context.Context, tx ajar.Tx, actor, action, subject string, details any) error {
	event, state, ok := events.ForAudit(action)
	if !ok || !s.notify.wants(event) {
		return nil
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("notify %s: %w", action, err)
	}
	if events.Silent(action, raw) {
		return nil
	}
	r, err := tx.GetRequest(ctx, subject)
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
	return s.enqueue(ctx, tx, event, actor, subject, r, raw, "")
}

// enqueue writes event typ about r (nil if it is about no request) to the
// outbox of every sink that wants it. A non-empty key makes it go out once per
// sink however often it is enqueued.
func (s *Service) enqueue(ctx context.Context, tx ajar.Tx, typ, actor, subject string, r *ajar.Request, details json.RawMessage, key string) error {
	var sinks []notify.Sink
	for _, sk := range s.notify.cfg.Sinks {
		if sk.Wants(typ) {
			sinks = append(sinks, sk)
		}
	}
	if len(sinks) == 0 {
		return nil
	}
	now := tx.Now()
	ev := s.notify.build.Build(typ, actor, subject, r, details, now)
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("notify %s: %w", typ, err)
	}
	for _, sk := range sinks {
		n := &ajar.Notification{Sink: sk.Name(), Key: key, Event: b, CreatedAt: now}
		if _, err := tx.EnqueueNotification(ctx, n); err != nil {
			return fmt.Errorf("notify %s to %s: %w", typ, sk.Name(), err)
		}
	}
	s.notify.kick() // the worker may look before the commit; its poll catches up
	return nil
}

// reminderAt is when request.expiring is due for r: ExpiryReminder before its
// expiry, if a sink wants it and the window is longer than that.
func (s *Service) reminderAt(r *ajar.Request) (time.Time, bool) {
	if r.ExpiresAt == nil || r.ActivatedAt == nil || !s.notify.wants(policy.EventRequestExpiring) {
		return time.Time{}, false
	}
	start := *r.ActivatedAt
	if r.StartAt != nil && r.StartAt.After(start) {
		start = *r.StartAt
	}
	at := r.ExpiresAt.Add(-s.notify.cfg.ExpiryReminder)
	if !at.After(start) {
		return time.Time{}, false
	}
	return at, true
}

// activeNextAt is when the scheduler must look at an active request next: at
// its expiry, or before it to send the expiry reminder.
func (s *Service) activeNextAt(r *ajar.Request, now time.Time) *time.Time {
	if at, ok := s.reminderAt(r); ok && now.Before(at) {
		return ptr(at)
	}
	return ptr(*r.ExpiresAt)
}

// remindExpiring enqueues request.expiring for an active request whose reminder
// is due. Its key holds the expiry, so each window (an extension makes a new
// one) is reminded once per sink however often the scheduler looks.
func (s *Service) remindExpiring(ctx context.Context, tx ajar.Tx, r *ajar.Request, now time.Time) error {
	at, ok := s.reminderAt(r)
	if !ok || now.Before(at) || !now.Before(*r.ExpiresAt) {
		return nil
	}
	details, err := json.Marshal(map[string]any{"expires_at": r.ExpiresAt})
	if err != nil {
		return err
	}
	key := fmt.Sprintf("expiring:%s:%d", r.ID, r.ExpiresAt.UnixNano())
	return s.enqueue(ctx, tx, policy.EventRequestExpiring, ajar.ActorSystem, r.ID, r, details, key)
}
