package broker

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
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
}

func (c NotifyConfig) withDefaults() NotifyConfig {
	if c.ExpiryReminder <= 0 {
		c.ExpiryReminder = 10 * time.Minute
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	return c
}

// notifier is the Service's part that writes notifications to the outbox.
type notifier struct {
	cfg NotifyConfig
}

func newNotifier(cfg NotifyConfig) *notifier {
	return &notifier{cfg: cfg.withDefaults()}
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

// eventForAudit maps an audit action to the notification event it means, and
// the request state the event reports when the stored request does not show it
// yet (the scheduler audits before it writes the request).
var eventForAudit = map[string]struct {
	event string
	state ajar.State
}{
	"request.created":       {policy.EventRequestCreated, ""},
	"request.approved":      {policy.EventRequestApproved, ajar.StateApproved},
	"request.denied":        {policy.EventRequestDenied, ajar.StateDenied},
	"request.escalated":     {policy.EventRequestEscalated, ajar.StatePending},
	"request.extended":      {policy.EventRequestExtended, ajar.StateActive},
	"request.expired":       {policy.EventRequestEnded, ajar.StateExpired},
	"request.revoked":       {policy.EventRequestEnded, ajar.StateRevoked},
	"request.grant_failed":  {policy.EventRequestEnded, ajar.StateGrantFailed},
	"request.timed_out":     {policy.EventRequestEnded, ajar.StateTimedOut},
	"request.cancelled":     {policy.EventRequestEnded, ajar.StateCancelled},
	"request.revoke_failed": {policy.EventRevokeFailed, ajar.StateRevokeFailed},
	"extension.requested":   {policy.EventExtensionRequested, ""},
	"extension.denied":      {policy.EventExtensionDenied, ""},
	"breakglass.used":       {policy.EventBreakglassUsed, ""},
	"breakglass.extended":   {policy.EventBreakglassExtended, ""},
	"review.closed":         {policy.EventReviewClosed, ""},
	"drift.detected":        {policy.EventDriftDetected, ""},
	"drift.regranted":       {policy.EventDriftDetected, ""}, // package reconcile
	"drift.revoked":         {policy.EventDriftDetected, ""},
	"drift.repair_failed":   {policy.EventDriftDetected, ""},
}

// notifyAudit enqueues the notification an audit event means, if any sink
// wants it, in the same transaction: the outbox and the state change commit
// together.
func (s *Service) notifyAudit(ctx context.Context, tx ajar.Tx, actor, action, subject string, details any) error {
	m, ok := eventForAudit[action]
	if !ok || !s.notify.wants(m.event) {
		return nil
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("notify %s: %w", action, err)
	}
	if action == "request.created" && isBreakglass(raw) {
		return nil // breakglass.used, which follows, says it (and asks nobody to approve)
	}
	r, err := tx.GetRequest(ctx, subject)
	switch {
	case ajar.ErrorCode(err) == ajar.ENOTFOUND:
		r = nil // an event about something else than a request (drift)
	case err != nil:
		return fmt.Errorf("notify %s: %w", action, err)
	case m.state != "":
		r.State = m.state
	}
	if string(raw) == "null" {
		raw = nil
	}
	return s.enqueue(ctx, tx, m.event, actor, subject, r, raw, "")
}

func isBreakglass(details []byte) bool {
	var d struct {
		Breakglass bool `json:"breakglass"`
	}
	return json.Unmarshal(details, &d) == nil && d.Breakglass
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
	ev := s.buildEvent(typ, actor, subject, r, details, now)
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

func newEventID() string {
	var b [10]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(err)
	}
	return "evt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// buildEvent renders what happened for people: a summary and the exact
// commands (and links) to act on it.
func (s *Service) buildEvent(typ, actor, subject string, r *ajar.Request, details json.RawMessage, now time.Time) notify.Event {
	ev := notify.Event{ID: newEventID(), Type: typ, Time: now, Actor: actor, Details: details}
	var d struct {
		Reason      string    `json:"reason"`
		Comment     string    `json:"comment"`
		By          string    `json:"by"`
		Step        int       `json:"step"`
		EscalateTo  []string  `json:"escalate_to"`
		ExpiresAt   time.Time `json:"expires_at"`
		Error       string    `json:"error"`
		Attempts    int       `json:"attempts"`
		AutoApprove string    `json:"auto_approve"`
		Seq         int       `json:"seq"`
		Target      string    `json:"target"`
		Message     string    `json:"message"`
		Drift       string    `json:"drift"`
		Repair      string    `json:"repair"`
		State       string    `json:"state"`
	}
	if len(details) > 0 {
		_ = json.Unmarshal(details, &d) // best effort: the details are ours
	}
	if r == nil {
		ev.Summary = fmt.Sprintf("%s: %s", typ, subject)
		if typ == policy.EventDriftDetected {
			ev.Summary = fmt.Sprintf("drift on %s: %s", firstNonEmpty(d.Target, subject), firstNonEmpty(d.Drift, d.Message, string(details)))
		}
		return ev
	}
	id := r.ID
	page := ""
	if s.notify.cfg.BaseURL != "" {
		page = s.notify.cfg.BaseURL + "/requests/" + id
	}
	ev.Request = &notify.Request{
		ID: id, Target: r.Target, Requester: r.Requester, Reason: r.Reason, Ticket: r.Ticket,
		Duration: fmtDuration(r.Duration), Policy: r.Policy, State: string(r.State),
		StartAt: r.StartAt, ExpiresAt: r.ExpiresAt, URL: page,
	}
	act := func(label, who, cmd string) {
		ev.Actions = append(ev.Actions, notify.Action{Label: label, Who: who, Command: cmd, URL: page})
	}
	approve := func() {
		act("Approve", "approvers", "ajar approve "+id)
		act("Deny", "approvers", "ajar deny "+id+` --reason "..."`)
	}
	who, tgt, dur := r.Requester, r.Target, fmtDuration(r.Duration)
	switch typ {
	case policy.EventRequestCreated:
		ev.Summary = fmt.Sprintf("%s requests %s for %s", who, tgt, dur)
		if r.State == ajar.StatePending {
			ev.Summary += "; it needs approval"
			approve()
		} else {
			ev.Summary += "; approved by the policy"
		}
		act("Show", "requester", "ajar show "+id)
	case policy.EventRequestApproved:
		if d.AutoApprove != "" {
			ev.Summary = fmt.Sprintf("%s's request for %s (%s) is approved by the policy: %s", who, tgt, dur, d.AutoApprove)
		} else {
			ev.Summary = fmt.Sprintf("%s approved %s's request for %s (%s)", actor, who, tgt, dur)
		}
		if kind, err := s.providers.Kind(r.Target); err == nil && kind == "ssh-cert" {
			act("Get a certificate", "requester", "ajar ssh-cert "+id+" --public-key ~/.ssh/id_ed25519.pub --out ~/.ssh/id_ed25519-cert.pub")
		}
		act("Show", "requester", "ajar show "+id)
	case policy.EventRequestDenied:
		ev.Summary = fmt.Sprintf("%s denied %s's request for %s: %s", actor, who, tgt, d.Reason)
		act("Show", "requester", "ajar show "+id)
	case policy.EventRequestEscalated:
		ev.Summary = fmt.Sprintf("%s's request for %s (%s) has waited too long at approval step %d; %s may now decide", who, tgt, dur, d.Step+1, strings.Join(d.EscalateTo, ", "))
		approve()
	case policy.EventRequestExpiring:
		left := ""
		if r.ExpiresAt != nil {
			left = fmt.Sprintf(" in %s, at %s", fmtDuration(r.ExpiresAt.Sub(now).Round(time.Second)), r.ExpiresAt.UTC().Format(time.RFC3339))
		}
		ev.Summary = fmt.Sprintf("%s's access to %s ends%s", who, tgt, left)
		if rule, ok := s.pol.Rule(r.Policy); ok && rule.Extend != nil {
			act("Extend", "requester", "ajar extend "+id+" --by 30m")
		}
		act("End it now", "requester", "ajar revoke "+id)
	case policy.EventRequestExtended:
		ev.Summary = fmt.Sprintf("%s's access to %s was extended by %s, to %s", who, tgt, d.By, d.ExpiresAt.UTC().Format(time.RFC3339))
		act("Show", "requester", "ajar show "+id)
	case policy.EventRequestEnded:
		ev.Summary = fmt.Sprintf("%s's request for %s ended: %s", who, tgt, r.State)
		act("Evidence", "admins", "ajar evidence "+id)
	case policy.EventExtensionRequested:
		ev.Summary = fmt.Sprintf("%s asks to extend their access to %s by %s: %s", who, tgt, d.By, d.Reason)
		approve()
	case policy.EventExtensionDenied:
		ev.Summary = fmt.Sprintf("%s denied extending %s's access to %s: %s", actor, who, tgt, d.Reason)
		act("Show", "requester", "ajar show "+id)
	case policy.EventRevokeFailed:
		ev.Summary = fmt.Sprintf("removing %s's access to %s keeps failing after %d attempts: %s", who, tgt, d.Attempts, d.Error)
		act("Show", "admins", "ajar show "+id)
		act("List them all", "admins", "ajar requests --state revoke_failed")
	case policy.EventBreakglassUsed:
		ev.Summary = fmt.Sprintf("BREAK-GLASS: %s took access to %s for %s without approval: %s", who, tgt, dur, r.Reason)
		act("Close the review", "admins", "ajar review "+id+` --comment "..."`)
		act("Evidence", "admins", "ajar evidence "+id)
		act("Revoke", "admins", "ajar revoke "+id)
	case policy.EventBreakglassExtended:
		ev.Summary = fmt.Sprintf("BREAK-GLASS: %s asks to extend their access to %s by %s (%s): %s", who, tgt, d.By, d.State, d.Reason)
		act("Close the review", "admins", "ajar review "+id+` --comment "..."`)
		act("Evidence", "admins", "ajar evidence "+id)
		act("Revoke", "admins", "ajar revoke "+id)
	case policy.EventDriftDetected:
		what := firstNonEmpty(d.Drift, d.Message, "access is not as the store says")
		ev.Summary = fmt.Sprintf("drift on %s (%s's request): %s", tgt, who, what)
		switch {
		case d.Error != "":
			ev.Summary += "; repair failed: " + d.Error
		case d.Repair != "":
			ev.Summary += "; " + d.Repair
		}
		act("Show", "admins", "ajar show "+id)
		act("Evidence", "admins", "ajar evidence "+id)
	case policy.EventReviewClosed:
		ev.Summary = fmt.Sprintf("%s closed the break-glass review of %s's access to %s: %s", actor, who, tgt, d.Comment)
		act("Evidence", "admins", "ajar evidence "+id)
	default:
		ev.Summary = fmt.Sprintf("%s: %s's request for %s", typ, who, tgt)
	}
	return ev
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
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
