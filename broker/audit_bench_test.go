package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
	"github.com/ajar-dev/ajar/notify"
)

// benchTx is a Tx that keeps nothing: the audit and notification work an
// Update's function does, without the store's own.
type benchTx struct {
	ajar.Tx // nil: any other call panics
	now     time.Time
}

func (t *benchTx) Now() time.Time { return t.now }

func (t *benchTx) AppendAudit(_ context.Context, e ajar.AuditEvent) (ajar.AuditEvent, error) {
	return e, nil
}

func (t *benchTx) EnqueueNotification(context.Context, *ajar.Notification) (bool, error) {
	return true, nil
}

// BenchmarkAuditAutoApproved is the audit and notification work under the
// store's writer lock for one auto-approved request that is active at once
// (CreateRequestThen): request.created and request.approved notify a sink,
// grant.started and request.activated do not (issue 14).
func BenchmarkAuditAutoApproved(b *testing.B) {
	sink := notify.NewLog("log", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
