package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

func TestBuildRequestCreated(t *testing.T) {
	b := Builder{BaseURL: "https://ajar.example.com", Kind: func(string) (string, error) { return "ssh-cert", nil },
		Extendable: func(string) bool { return true }}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	r := &ajar.Request{ID: "req_1", Target: "web", Requester: "alice@example.com", Duration: 30 * time.Minute, State: ajar.StatePending}
	ev := b.Build(policy.EventRequestCreated, "alice@example.com", r.ID, r, nil, now)
	if ev.Summary != "alice@example.com requests web for 30m; it needs approval" {
		t.Errorf("summary %q", ev.Summary)
	}
	if ev.Request == nil || ev.Request.URL != "https://ajar.example.com/requests/req_1" || len(ev.Actions) != 3 || ev.Actions[0].Command != "ajar approve req_1" {
		t.Errorf("event %+v", ev)
	}
	exp := now.Add(5 * time.Minute)
	r.State, r.ExpiresAt = ajar.StateActive, &exp
	ev = b.Build(policy.EventRequestExpiring, ajar.ActorSystem, r.ID, r, nil, now)
	if ev.Summary != "alice@example.com's access to web ends in 5m, at 2026-03-01T09:05:00Z" || ev.Actions[0].Command != "ajar extend req_1 --by 30m" {
		t.Errorf("expiring: %q %+v", ev.Summary, ev.Actions)
	}
	d, _ := json.Marshal(map[string]any{"target": "sg", "drift": "rule back by hand"})
	if ev := b.Build(policy.EventDriftDetected, ajar.ActorSystem, "sg", nil, d, now); ev.Summary != "drift on sg: rule back by hand" {
		t.Errorf("drift: %q", ev.Summary)
	}
}

func TestForAuditAndSilent(t *testing.T) {
	if ev, st, ok := ForAudit("request.revoked"); !ok || ev != policy.EventRequestEnded || st != ajar.StateRevoked {
		t.Errorf("request.revoked: %s %s %v", ev, st, ok)
	}
	if _, _, ok := ForAudit("grant.started"); ok {
		t.Error("grant.started notifies")
	}
	if !Silent("request.created", []byte(`{"breakglass":true}`)) || Silent("request.created", []byte(`{}`)) || Silent("breakglass.used", []byte(`{"breakglass":true}`)) {
		t.Error("Silent")
	}
}
