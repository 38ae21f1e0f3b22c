package ajar

import (
	"encoding/json"
	"testing"
	"time"
)

// TestTransitions checks every pair of states against the state machine in
// docs/architecture.md: the allowed moves, and that everything else is forbidden.
func TestTransitions(t *testing.T) {
	allowed := map[[2]State]bool{
		{StatePending, StateApproved}:         true,
		{StatePending, StateDenied}:           true,
		{StatePending, StateCancelled}:        true,
		{StatePending, StateTimedOut}:         true,
		{StateApproved, StateActive}:          true,
		{StateApproved, StateCancelled}:       true,
		{StateApproved, StateDenied}:          true, // conditions refuse when the grant comes due
		{StateApproved, StateRevoking}:        true, // expired before granted, or grant failed
		{StateActive, StateRevoking}:          true,
		{StateRevoking, StateExpired}:         true,
		{StateRevoking, StateRevoked}:         true,
		{StateRevoking, StateGrantFailed}:     true,
		{StateRevoking, StateRevokeFailed}:    true,
		{StateRevokeFailed, StateExpired}:     true,
		{StateRevokeFailed, StateRevoked}:     true,
		{StateRevokeFailed, StateGrantFailed}: true,
	}
	for _, from := range States {
		for _, to := range States {
			want := allowed[[2]State{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	for _, s := range States {
		terminal := s == StateExpired || s == StateRevoked || s == StateDenied ||
			s == StateCancelled || s == StateTimedOut || s == StateGrantFailed
		if s.Terminal() != terminal {
			t.Errorf("%s.Terminal() = %v", s, s.Terminal())
		}
		for _, to := range States {
			if s.Terminal() && CanTransition(s, to) {
				t.Errorf("terminal state %s can move to %s", s, to)
			}
		}
	}
	if State("granting").Valid() || !StateRevokeFailed.Valid() {
		t.Error("Valid is wrong")
	}
}

func TestEndReasonFinalState(t *testing.T) {
	for reason, want := range map[EndReason]State{
		EndExpired: StateExpired, EndRevoked: StateRevoked, EndGrantFailed: StateGrantFailed,
	} {
		if got := reason.FinalState(); got != want {
			t.Errorf("%s.FinalState() = %s, want %s", reason, got, want)
		}
	}
}

func TestRequestJSON(t *testing.T) {
	exp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := Request{ID: "req_1", Target: "t", Requester: "a@b", Duration: 90 * time.Second, State: StateActive,
		ExpiresAt: &exp, Approvals: []Approval{}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "target", "requester", "state", "reason", "created_at", "expires_at", "approvals", "duration"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if m["duration"] != "1m30s" || m["expires_at"] != "2026-01-02T03:04:05Z" {
		t.Errorf("duration/expires_at = %v/%v", m["duration"], m["expires_at"])
	}
	var back Request
	if err := json.Unmarshal(b, &back); err != nil || back.Duration != r.Duration || !back.ExpiresAt.Equal(exp) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestUserMatches(t *testing.T) {
	u := User{ID: "alice@example.com", Groups: []string{"engineers"}}
	for subject, want := range map[string]bool{
		"alice@example.com": true, "group:engineers": true, "group:sre": false,
		"bob@example.com": false, "engineers": false, "group:": false,
	} {
		if got := u.Matches(subject); got != want {
			t.Errorf("Matches(%q) = %v, want %v", subject, got, want)
		}
	}
}

func TestAuditHashCoversEveryField(t *testing.T) {
	base := AuditEvent{Seq: 7, Time: time.Unix(1, 5).UTC(), Actor: "a", Action: "x", Subject: "s",
		Details: json.RawMessage(`{"k":1}`), PrevHash: []byte{1, 2}}
	h := string(base.ComputeHash())
	mutations := map[string]func(*AuditEvent){
		"seq":       func(e *AuditEvent) { e.Seq++ },
		"time":      func(e *AuditEvent) { e.Time = e.Time.Add(time.Nanosecond) },
		"actor":     func(e *AuditEvent) { e.Actor = "b" },
		"action":    func(e *AuditEvent) { e.Action = "y" },
		"subject":   func(e *AuditEvent) { e.Subject = "t" },
		"details":   func(e *AuditEvent) { e.Details = json.RawMessage(`{"k":2}`) },
		"prev_hash": func(e *AuditEvent) { e.PrevHash = []byte{1, 3} },
		"boundary":  func(e *AuditEvent) { e.Actor, e.Action = "ax", "" },
	}
	for name, mut := range mutations {
		e := base
		mut(&e)
		if string(e.ComputeHash()) == h {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
	// Time zones do not matter, only the instant.
	e := base
	e.Time = e.Time.In(time.FixedZone("X", 3600))
	if string(e.ComputeHash()) != h {
		t.Error("hash depends on the time zone")
	}
}
