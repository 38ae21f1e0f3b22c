package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
	"github.com/ajar-dev/ajar/notify"
)

// benchTx is a Tx that keeps nothing but, when asked, what it was given: the
// audit and notification work an Update's function does, without the store's
// own.
type benchTx struct {
	ajar.Tx // nil: any other call panics
	now     time.Time
	keep    bool
	audit   []ajar.AuditEvent
	notes   []*ajar.Notification
}

func (t *benchTx) Now() time.Time { return t.now }

func (t *benchTx) AppendAudit(_ context.Context, e ajar.AuditEvent) (ajar.AuditEvent, error) {
	if t.keep {
		t.audit = append(t.audit, e)
	}
	return e, nil
}

func (t *benchTx) EnqueueNotification(_ context.Context, n *ajar.Notification) (bool, error) {
	if t.keep {
		t.notes = append(t.notes, n)
	}
	return true, nil
}

// GetRequest finds nothing: an event about something else than a request.
func (t *benchTx) GetRequest(_ context.Context, id string) (*ajar.Request, error) {
	return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s not found", id)
}

// countingDetails counts how often they are encoded.
type countingDetails struct {
	Reason string `json:"reason"`
	n      *atomic.Int32
}

func (d countingDetails) MarshalJSON() ([]byte, error) {
	d.n.Add(1)
	type plain countingDetails
	return json.Marshal(plain(d))
}

// TestAuditEncodesDetailsOnce: an audit event's details are encoded once,
// for the audit event and its notification alike, which carries the same
// bytes (issue 14: the writer's lock is held meanwhile).
func TestAuditEncodesDetailsOnce(t *testing.T) {
	s := &Service{notify: events.NewNotifier(events.NotifyConfig{Sinks: []notify.Sink{notify.NewWebhook("hook", nil, "http://127.0.0.1:9/", nil, nil)}},
		func(string) (string, error) { return "ssh-cert", nil }, func(string) bool { return false })}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	r := &ajar.Request{ID: "req_1", Target: "web", Requester: "alice@example.com", Duration: 5 * time.Minute, State: ajar.StatePending}
	ctx := context.Background()
	for _, stored := range []bool{false, true} {
		var n atomic.Int32
		tx := &benchTx{now: now, keep: true}
		details := countingDetails{Reason: "<b>fix</b> & \u2028 deploy", n: &n}
		var err error
		if stored {
			err = s.auditStored(ctx, tx, "bob@example.com", "request.denied", r, details)
		} else {
			err = s.audit(ctx, tx, "bob@example.com", "request.denied", "drift-sg", details)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.Load() != 1 {
			t.Errorf("stored %v: details encoded %d times, want once", stored, n.Load())
		}
		if len(tx.audit) != 1 || len(tx.notes) != 1 {
			t.Fatalf("stored %v: %d audit events, %d notifications", stored, len(tx.audit), len(tx.notes))
		}
		want, _ := json.Marshal(struct {
			Reason string `json:"reason"`
		}{details.Reason})
		if !bytes.Equal(tx.audit[0].Details, want) {
			t.Errorf("stored %v: audit details %s, want %s", stored, tx.audit[0].Details, want)
		}
		var ev notify.Event
		if err := json.Unmarshal(tx.notes[0].Event, &ev); err != nil || !bytes.Equal(ev.Details, want) {
			t.Errorf("stored %v: notification details %s (%v), want %s", stored, ev.Details, err, want)
		}
	}
}

// BenchmarkAuditAutoApproved is the audit and notification work under the
// store's writer lock for one auto-approved request that is active at once
// (CreateRequestThen): request.created and request.approved notify a sink,
// grant.started and request.activated do not (issue 14).
func BenchmarkAuditAutoApproved(b *testing.B) {
	sink := notify.NewWebhook("hook", nil, "http://127.0.0.1:9/", nil, nil) // through the outbox
	s := &Service{notify: events.NewNotifier(events.NotifyConfig{Sinks: []notify.Sink{sink}, BaseURL: "https://ajar.example.com"},
		func(string) (string, error) { return "ssh-cert", nil }, func(string) bool { return false })}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	exp := now.Add(5 * time.Minute)
	tx := &benchTx{now: now}
	r := &ajar.Request{
		ID: "req_01hx5v0r4k2m7p9q3s6t8w1y2z", Target: "web", Requester: "alice@example.com",
		Reason: "deploy the hotfix for INC-1234 <today> & check the logs", Ticket: "INC-1234",
		Duration: 5 * time.Minute, Policy: "web", State: ajar.StateActive, CreatedAt: now, UpdatedAt: now,
		ActivatedAt: &now, ExpiresAt: &exp, Params: map[string]string{"principal": "deploy"},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		details := map[string]any{
			"target": r.Target, "duration": r.Duration.String(), "reason": r.Reason,
			"ticket": r.Ticket, "params": r.Params, "policy": r.Policy,
		}
		if err := s.auditStored(ctx, tx, r.Requester, "request.created", r, details); err != nil {
			b.Fatal(err)
		}
		if err := s.auditStored(ctx, tx, ajar.ActorSystem, "request.approved", r,
			map[string]any{"auto_approve": `request.duration <= duration("5m")`}); err != nil {
			b.Fatal(err)
		}
		if err := s.audit(ctx, tx, ajar.ActorSystem, "grant.started", r.ID,
			map[string]any{"expires_at": r.ExpiresAt, "not_after": exp.Add(time.Minute), "provider": "ssh-cert"}); err != nil {
			b.Fatal(err)
		}
		if err := s.audit(ctx, tx, ajar.ActorSystem, "request.activated", r.ID,
			map[string]any{"expires_at": r.ExpiresAt, "handle": "c3NoLWNlcnQ="}); err != nil {
			b.Fatal(err)
		}
	}
}
