package events

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
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

func TestSilentDecodesAsJSONDoes(t *testing.T) {
	for details, want := range map[string]bool{
		`{"breakglass":true}`:                         true,
		`{"reason":"x","Breakglass":true}`:            true, // as json.Unmarshal matches keys
		`{"breakglass":false,"reason":"true"}`:        false,
		`{"reason":"true story","params":{"a":true}}`: false,
		`{"reason":"x"}`:                              false,
		`null`:                                        false,
		``:                                            false,
	} {
		if got := Silent("request.created", []byte(details)); got != want {
			t.Errorf("Silent(%s) = %v, want %v", details, got, want)
		}
	}
}

func TestEventIDs(t *testing.T) {
	re := regexp.MustCompile(`^evt_[a-z2-7]{16}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newEventID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("event id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

// captureTx keeps the notifications enqueued in it.
type captureTx struct {
	ajar.Tx // nil: any other call panics
	now     time.Time
	r       *ajar.Request
	notes   []*ajar.Notification
}

func (t *captureTx) Now() time.Time { return t.now }

func (t *captureTx) GetRequest(_ context.Context, id string) (*ajar.Request, error) {
	if t.r == nil || id != t.r.ID {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "request %s not found", id)
	}
	c := *t.r
	return &c, nil
}

func (t *captureTx) EnqueueNotification(_ context.Context, n *ajar.Notification) (bool, error) {
	t.notes = append(t.notes, n)
	return true, nil
}

// TestNotifierWritesJSONMarshalBytes: what the outbox stores for each sink is
// json.Marshal's encoding of the event, its details the audit event's bytes.
func TestNotifierWritesJSONMarshalBytes(t *testing.T) {
	logSink := notify.NewLog("log", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sinks := []notify.Sink{
		notify.NewWebhook("all", nil, "http://127.0.0.1:9/", nil, nil),
		notify.NewWebhook("created", []string{policy.EventRequestCreated}, "http://127.0.0.1:9/", nil, nil),
	}
	n := NewNotifier(NotifyConfig{Sinks: sinks, BaseURL: "https://ajar.example.com/"},
		func(string) (string, error) { return "ssh-cert", nil }, func(string) bool { return true })
	now := time.Date(2026, 3, 1, 9, 0, 0, 5, time.FixedZone("", 3600))
	exp := now.Add(time.Hour)
	// Valid UTF-8: decoding makes invalid bytes U+FFFD, which json.Marshal
	// then writes as it is (notify's encoder tests cover them).
	r := &ajar.Request{ID: "req_1", Target: "web<&>", Requester: "alice@example.com", Reason: "fix \u2028 <script> 日本",
		Ticket: "T-1", Duration: time.Hour, Policy: "web", State: ajar.StateActive, StartAt: &now, ExpiresAt: &exp}
	ctx := context.Background()
	for _, c := range []struct {
		action, subject string
		details         any
		sinks           int
	}{
		{"request.created", "req_1", map[string]any{"reason": r.Reason, "params": map[string]string{"u": "<root>"}}, 2},
		{"request.approved", "req_1", map[string]any{"auto_approve": `request.duration <= duration("1h")`}, 1},
		{"request.revoked", "req_1", nil, 1},
		{"drift.detected", "sg-1", map[string]any{"target": "sg-1", "drift": "rule & back"}, 1},
		{"request.created", "req_1", map[string]any{"breakglass": true}, 0}, // silent
		{"grant.started", "req_1", map[string]any{"x": 1}, 0},               // notifies nobody
	} {
		raw, err := ajar.MarshalAuditDetails(c.action, c.details)
		if err != nil {
			t.Fatal(err)
		}
		tx := &captureTx{now: now, r: r}
		if err := n.Audit(ctx, tx, "bob@example.com", c.action, c.subject, raw); err != nil {
			t.Fatal(err)
		}
		if len(tx.notes) != c.sinks {
			t.Fatalf("%s: %d notifications, want %d", c.action, len(tx.notes), c.sinks)
		}
		for _, note := range tx.notes {
			var ev notify.Event
			if err := json.Unmarshal(note.Event, &ev); err != nil {
				t.Fatalf("%s: %v", c.action, err)
			}
			if want, _ := json.Marshal(ev); !bytes.Equal(note.Event, want) {
				t.Errorf("%s: stored\n%s\njson.Marshal\n%s", c.action, note.Event, want)
			}
			if !bytes.Equal(ev.Details, raw) {
				t.Errorf("%s: details %s, audit event's %s", c.action, ev.Details, raw)
			}
			if err := logSink.Send(ctx, note.Event); err != nil {
				t.Errorf("%s: log sink: %v", c.action, err)
			}
		}
	}
}
