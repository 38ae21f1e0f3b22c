package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// windowPolicy is the demo's shape: an auto-approved SSH target whose
// extensions need no approval, and a target with the README's business-hours
// rule (HOURS is replaced by the test).
const windowPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
scheduler: {poll_interval: 200ms}
targets:
  shell: {provider: ssh-cert, config: {principals: [ubuntu]}}
  office: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: shell
    targets: [shell]
    requesters: [group:engineers]
    default_duration: 10m
    max_duration: 20m
    approval:
      auto_approve: 'true'
    extend: {max_extensions: 3, max_total: 40m, approval: none}
  - name: office
    targets: [office]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 1h
    deny:
      - {expr: 'HOURS', message: outside business hours}
    approval:
      timeout: 24h
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'true'
`

func startWindowServer(t *testing.T, hours string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(strings.Replace(windowPolicy, "HOURS", hours, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, dir, "--config", cfg, "--dev")
}

// TestAttackExtensionOverflow (issue item 1): "by": "2562047h47m16s" wrapped
// window + by to a negative duration, so max_total passed, the extension was
// auto-approved, the request ran until 2319 and ajar ssh-cert signed a
// certificate valid until then. Now the API refuses it with a field error,
// the expiry does not move, and no certificate passes start + max_total.
func TestAttackExtensionOverflow(t *testing.T) {
	parallel(t, costLight)
	s := startWindowServer(t, "false")
	r := s.request(t, "alice", "request", "shell", "--reason", "attack")
	if r.State != ajar.StateActive || r.ExpiresAt == nil {
		t.Fatalf("request: %s", r.State)
	}
	start := r.ExpiresAt.Add(-r.Duration)
	limit := start.Add(40 * time.Minute) // start + max_total
	for _, by := range []string{"2562047h47m16s", "9223372036s", "2562047h47m16s854775807ns", "8785h", "31m"} {
		status, body := s.httpDo(t, "alice", "POST", "/v1/requests/"+r.ID+"/extend", fmt.Sprintf(`{"by":%q,"reason":"more"}`, by))
		var e struct {
			Error struct{ Code, Field, Message string } `json:"error"`
		}
		if status != 400 || json.Unmarshal(body, &e) != nil || e.Error.Code != ajar.EINVALID || e.Error.Field != "by" {
			t.Fatalf("extend by %s: HTTP %d %s, want 400 invalid with field by", by, status, body)
		}
	}
	if res := s.ajar(t, "alice", "extend", r.ID, "--by", "2562047h47m16s"); res.Code != 1 || !strings.Contains(res.Stderr, "(field: --by)") {
		t.Fatalf("ajar extend --by 2562047h47m16s: exit %d, stderr %q", res.Code, res.Stderr)
	}
	got := s.request(t, "alice", "show", r.ID)
	if got.State != ajar.StateActive || !got.ExpiresAt.Equal(*r.ExpiresAt) {
		t.Fatalf("after the attack: %s, expires %v; want active, expiry unchanged %v", got.State, got.ExpiresAt, r.ExpiresAt)
	}
	if vb := certValidBefore(t, s, r.ID); vb.After(limit) || vb.After(*r.ExpiresAt) {
		t.Fatalf("certificate valid before %v, past the expiry %v (limit %v)", vb, r.ExpiresAt, limit)
	}
	// Extensions within the limits still work, up to start + max_total and
	// not a second more.
	s.ok(t, "alice", "extend", r.ID, "--by", "20m")
	s.ok(t, "alice", "extend", r.ID, "--by", "10m")
	if res := s.ajar(t, "alice", "extend", r.ID, "--by", "1s"); res.Code != 1 || !strings.Contains(res.Stderr, "(field: --by)") {
		t.Fatalf("1s past max_total: exit %d, stderr %q", res.Code, res.Stderr)
	}
	got = s.request(t, "alice", "show", r.ID)
	if !got.ExpiresAt.Equal(limit) {
		t.Fatalf("after extending to the limit: expires %v, want %v", got.ExpiresAt, limit)
	}
	if vb := certValidBefore(t, s, r.ID); vb.After(limit) {
		t.Fatalf("certificate valid before %v, past start + max_total %v", vb, limit)
	}
	n := 0
	for _, e := range s.auditEvents(t) {
		if e.Subject != r.ID || e.Action != "request.extended" {
			continue
		}
		n++
		var d struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal(e.Details, &d); err != nil || d.ExpiresAt.After(limit) {
			t.Errorf("extended past start + max_total: %s (%v)", e.Details, err)
		}
	}
	if n != 2 {
		t.Errorf("%d request.extended events, want the 2 within the limits", n)
	}
}

// TestAttackConditionsSeeGrantTime (issue item 4): the business-hours rule
// was evaluated at the time of asking, so a request made in hours for a start
// out of hours passed. Here "business hours" are the current UTC hour and the
// next one (so the test works at any time of day); a request for a start three
// hours ahead is out of hours and must be refused, though it is made in hours.
func TestAttackConditionsSeeGrantTime(t *testing.T) {
	parallel(t, costLight)
	now := time.Now().UTC()
	h := now.Hour()
	// Allowed: hours h and h+1 (mod 24). A start at now+3h is in neither.
	deny := fmt.Sprintf(`now.getHours("UTC") != %d && now.getHours("UTC") != %d`, h, (h+1)%24)
	s := startWindowServer(t, deny)
	in := s.request(t, "alice", "request", "office", "--for", "10m", "--reason", "in hours")
	if in.State != ajar.StateActive {
		t.Fatalf("a request for now, in hours: %s", in.State)
	}
	start := now.Add(3 * time.Hour).Truncate(time.Second)
	res := s.ajar(t, "alice", "request", "office", "--for", "10m", "--reason", "at night", "--start", start.Format(time.RFC3339))
	if res.Code != 1 || !strings.Contains(res.Stderr, "outside business hours") {
		t.Fatalf("made in hours for %s (out of hours): exit %d\nstdout %s\nstderr %s", start.Format(time.RFC3339), res.Code, res.Stdout, res.Stderr)
	}
	// Explain says the same.
	var ex struct {
		Outcome string `json:"outcome"`
	}
	out := s.ok(t, "alice", "explain", "office", "--for", "10m", "--start", start.Format(time.RFC3339), "-o", "json")
	if err := json.Unmarshal([]byte(out), &ex); err != nil || ex.Outcome != "denied" {
		t.Errorf("explain for %s: %q (%v), want denied\n%s", start.Format(time.RFC3339), ex.Outcome, err, out)
	}
	for _, e := range s.auditEvents(t) {
		if e.Action == "request.created" && strings.Contains(string(e.Details), "at night") {
			t.Errorf("the out-of-hours request was stored: %s", e.Details)
		}
	}
}
