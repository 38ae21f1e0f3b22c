// Package events says what each audit event tells people: which
// notification an audit action means (ForAudit), and how it reads (Builder:
// a summary, the exact commands and links to act on it), and Notifier, which
// writes it to the outbox in the caller's transaction: the core calls it from
// its audit write, so the notification commits with the change.
// notify/outbox delivers it. See docs/architecture.md.
package events

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/policy"
)

// forAudit maps an audit action to the notification event it means, and
// the request state the event reports when the stored request does not show it
// yet (the scheduler audits before it writes the request).
var forAudit = map[string]struct {
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
	"drift.regranted":       {policy.EventDriftDetected, ""},
	"drift.revoked":         {policy.EventDriftDetected, ""},
	"drift.repair_failed":   {policy.EventDriftDetected, ""},
}

// ForAudit returns the notification event an audit action means, and the
// request state the event reports when the stored request does not show it
// yet (empty: the stored one); ok is false when the action notifies nobody.
func ForAudit(action string) (event string, state ajar.State, ok bool) {
	m, ok := forAudit[action]
	return m.event, m.state, ok
}

// Silent reports whether the audit event action with details (JSON) must not
// notify although ForAudit maps it: a break-glass request.created, since
// breakglass.used, which follows, says it (and asks nobody to approve).
func Silent(action string, details []byte) bool {
	return action == "request.created" && isBreakglass(details)
}

func isBreakglass(details []byte) bool {
	if !bytes.Contains(details, []byte("true")) {
		return false // no JSON true anywhere: spare decoding (most requests)
	}
	var d struct {
		Breakglass bool `json:"breakglass"`
	}
	return json.Unmarshal(details, &d) == nil && d.Breakglass
}

// Builder builds notification events. Its fields come from the core.
type Builder struct {
	// BaseURL is where people reach the web pages, without a trailing slash;
	// empty: no links.
	BaseURL string
	// Kind returns the provider type of a target ("ssh-cert").
	Kind func(target string) (string, error)
	// Extendable reports whether the policy rule named so allows extensions.
	Extendable func(policy string) bool
}

// eventIDEncoding is base32 in lower case, without padding.
var eventIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newEventID() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	var id [4 + 16]byte // "evt_" and 10 bytes in base32
	copy(id[:], "evt_")
	eventIDEncoding.Encode(id[4:], b[:])
	return string(id[:])
}

// Build renders what happened for people: a summary and the exact commands
// (and links) to act on it. r is the request the event is about (nil for
// none), details the audit event's details.
func (b Builder) Build(typ, actor, subject string, r *ajar.Request, details json.RawMessage, now time.Time) notify.Event {
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
	switch typ {
	case policy.EventRequestCreated, policy.EventRequestExpiring, policy.EventRequestEnded, policy.EventBreakglassUsed:
		// Their summaries read no details: spare decoding them.
	default:
		if len(details) > 0 {
			_ = json.Unmarshal(details, &d) // best effort: the details are ours
		}
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
	if b.BaseURL != "" {
		page = b.BaseURL + "/requests/" + id
	}
	ev.Request = &notify.Request{
		ID: id, Target: r.Target, Requester: r.Requester, Reason: r.Reason, Ticket: r.Ticket,
		Duration: ajar.FormatDuration(r.Duration), Policy: r.Policy, State: string(r.State),
		StartAt: r.StartAt, ExpiresAt: r.ExpiresAt, URL: page,
	}
	act := func(label, who, cmd string) {
		ev.Actions = append(ev.Actions, notify.Action{Label: label, Who: who, Command: cmd, URL: page})
	}
	approve := func() {
		act("Approve", "approvers", "ajar approve "+id)
		act("Deny", "approvers", "ajar deny "+id+` --reason "..."`)
	}
	who, tgt, dur := r.Requester, r.Target, ajar.FormatDuration(r.Duration)
	switch typ {
	case policy.EventRequestCreated:
		ev.Summary = who + " requests " + tgt + " for " + dur // every request: no fmt
		if r.State == ajar.StatePending {
			ev.Summary += "; it needs approval"
			approve()
		} else {
			ev.Summary += "; approved by the policy"
		}
		act("Show", "requester", "ajar show "+id)
	case policy.EventRequestApproved:
		if d.AutoApprove != "" {
			ev.Summary = who + "'s request for " + tgt + " (" + dur + ") is approved by the policy: " + d.AutoApprove
		} else {
			ev.Summary = fmt.Sprintf("%s approved %s's request for %s (%s)", actor, who, tgt, dur)
		}
		if kind, err := b.Kind(r.Target); err == nil && kind == "ssh-cert" {
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
			left = fmt.Sprintf(" in %s, at %s", ajar.FormatDuration(r.ExpiresAt.Sub(now).Round(time.Second)), r.ExpiresAt.UTC().Format(time.RFC3339))
		}
		ev.Summary = fmt.Sprintf("%s's access to %s ends%s", who, tgt, left)
		if b.Extendable(r.Policy) {
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
