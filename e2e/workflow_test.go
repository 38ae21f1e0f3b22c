package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// hookSecretEnv holds the webhook's shared secret for the servers these tests
// start (they inherit the test's environment).
const hookSecretEnv, hookSecret = "AJAR_E2E_WORKFLOW_HOOK_SECRET", "e2e-workflow-secret"

// workflowPolicy is the policy of the workflow tests; HOOK_URL is replaced by
// the test's webhook receiver.
const workflowPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
scheduler: {poll_interval: 200ms, notify_retry: 500ms, notify_max_retry: 2s}
targets:
  shell: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: shell
    targets: [shell]
    requesters: [group:engineers]
    default_duration: 1m
    max_duration: 20m
    require_reason: true
    deny:
      - {expr: 'request.kind == "access" && request.reason.contains("friday")', message: no changes on a friday}
    approval:
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("10m")'
    extend: {max_extensions: 2, max_total: 40m, approval: none}
    breakglass: {allowed: [group:sre]}
notifications:
  - {name: hook, type: webhook, url: 'HOOK_URL', secret_env: ` + hookSecretEnv + `}
  - {name: log, type: log}
`

// receiver is a webhook endpoint that checks each event's HMAC signature; it
// answers 503 while down.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	down bool
	got  []notify.Event
	bad  int
	// refused holds when each delivery attempt was answered 503 (while down).
	refused []time.Time
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.down {
			rc.refused = append(rc.refused, time.Now())
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var e notify.Event
		if !notify.Verify([]byte(hookSecret), body, r.Header.Get(notify.HeaderSignature)) || json.Unmarshal(body, &e) != nil {
			rc.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		rc.got = append(rc.got, e)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setDown(v bool) { rc.mu.Lock(); rc.down = v; rc.mu.Unlock() }

func (rc *receiver) refusedAt() []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.refused)
}

func (rc *receiver) badCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.bad
}

func (rc *receiver) events() []notify.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// waitFor polls the receiver until cond holds.
func (rc *receiver) waitFor(t *testing.T, what string, timeout time.Duration, cond func([]notify.Event) bool) []notify.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := rc.events()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook: %s not received in %s; got %v", what, timeout, eventTypes(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eventTypes(evs []notify.Event) []string {
	var out []string
	for _, e := range evs {
		id := ""
		if e.Request != nil {
			id = e.Request.ID
		}
		out = append(out, e.Type+" "+id)
	}
	return out
}

// startWorkflowServer starts ajar with workflowPolicy and a webhook receiver.
func startWorkflowServer(t *testing.T) (*server, *receiver) {
	t.Helper()
	os.Setenv(hookSecretEnv, hookSecret) // inherited by the server; the same value for every test
	rc := newReceiver(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(workflowPolicy, "HOOK_URL", rc.srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, dir, "--config", cfg, "--dev"), rc
}

// TestWorkflowScheduled: a request starting 20s ahead is approved at once,
// becomes active at the start and not before, and expires at start + duration.
// "Not before" is read from the request and its audit trail, not from how fast
// the machine answers.
func TestWorkflowScheduled(t *testing.T) {
	parallel(t, costLong)
	s, _ := startWorkflowServer(t)
	start := time.Now().Add(20 * time.Second).Truncate(time.Second)
	r := s.request(t, "alice", "request", "shell", "--for", "5s", "--reason", "later", "--start", start.Format(time.RFC3339))
	if r.State != ajar.StateApproved || r.StartAt == nil || !r.StartAt.Equal(start) {
		t.Fatalf("scheduled request: %s, start %v; want approved at once, start %v", r.State, r.StartAt, start)
	}
	time.Sleep(time.Until(start.Add(-2 * time.Second)))
	if st := s.request(t, "alice", "show", r.ID).State; st != ajar.StateApproved && time.Now().Before(start) {
		t.Fatalf("before the start: %s", st)
	}
	got := s.waitState(t, "alice", r.ID, ajar.StateActive, 90*time.Second)
	if time.Now().Before(start) || got.ActivatedAt.Before(start) {
		t.Fatalf("active before the start: now %v, activated %v, start %v", time.Now(), got.ActivatedAt, start)
	}
	if !got.ExpiresAt.Equal(start.Add(5 * time.Second)) {
		t.Fatalf("expires %v, want start + duration = %v", got.ExpiresAt, start.Add(5*time.Second))
	}
	end := s.waitState(t, "alice", r.ID, ajar.StateExpired, 90*time.Second)
	if end.EndedAt.Before(start.Add(5 * time.Second)) {
		t.Errorf("ended at %v, before start + duration", end.EndedAt)
	}
	for _, e := range s.auditEvents(t) {
		if e.Subject == r.ID && e.Action == "request.activated" && e.Time.Before(start) {
			t.Errorf("request.activated at %v, before the start %v", e.Time, start)
		}
	}
}

// certValidBefore certifies a new key for request id and returns the
// certificate's valid-before.
func certValidBefore(t *testing.T, s *server, id string) time.Time {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if out, err := exec.Command(requireTool(t, "ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	s.ok(t, "alice", "ssh-cert", id, "--public-key", key+".pub", "--out", key+"-cert.pub")
	b, err := os.ReadFile(key + "-cert.pub")
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(int64(k.(*ssh.Certificate).ValidBefore), 0)
}

// TestWorkflowExtend: an SSH request extended before expiry stays active with
// no gap, and its new certificate has the new valid-before; an extension past
// max_total is refused with an error naming the field and the limit. The window
// (45s) leaves a loaded machine time to certify and extend before it ends.
func TestWorkflowExtend(t *testing.T) {
	parallel(t, costLong)
	s, _ := startWorkflowServer(t)
	r := s.request(t, "alice", "request", "shell", "--for", "45s", "--reason", "migration")
	if r.State != ajar.StateActive {
		t.Fatalf("request: %s", r.State)
	}
	exp1 := *r.ExpiresAt
	if vb := certValidBefore(t, s, r.ID); vb.Unix() != exp1.Unix() {
		t.Fatalf("first certificate valid before %v, want %v", vb, exp1)
	}
	var out struct {
		Request   ajar.Request   `json:"request"`
		Extension ajar.Extension `json:"extension"`
	}
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "extend", r.ID, "--by", "30s", "--reason", "not done", "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	exp2 := exp1.Add(30 * time.Second)
	if out.Request.State != ajar.StateActive || !out.Request.ExpiresAt.Equal(exp2) || out.Extension.State != ajar.ExtensionApplied {
		t.Fatalf("extended: %+v", out)
	}
	if vb := certValidBefore(t, s, r.ID); vb.Unix() != exp2.Unix() {
		t.Fatalf("new certificate valid before %v, want %v", vb, exp2)
	}
	// Past the first expiry the access is still there, and was never revoked.
	time.Sleep(time.Until(exp1.Add(time.Second)))
	if st := s.request(t, "alice", "show", r.ID).State; st != ajar.StateActive {
		t.Fatalf("after the first expiry: %s", st)
	}
	certValidBefore(t, s, r.ID)
	res := s.ajar(t, "alice", "extend", r.ID, "--by", "45m")
	if res.Code != 1 || !strings.Contains(res.Stderr, "extend.max_total 40m") || !strings.Contains(res.Stderr, "(field: --by)") {
		t.Fatalf("past max_total: exit %d, stderr %q", res.Code, res.Stderr)
	}
	end := s.waitState(t, "alice", r.ID, ajar.StateExpired, 90*time.Second)
	if end.EndedAt.Before(exp2) {
		t.Errorf("ended at %v, before the extended expiry %v", end.EndedAt, exp2)
	}
	for _, e := range s.auditEvents(t) {
		if e.Subject == r.ID && (e.Action == "request.revoking" || e.Action == "request.expired") && e.Time.Before(exp2) {
			t.Errorf("%s at %v, before the extended expiry", e.Action, e.Time)
		}
	}
}

// metricValue reads one unlabelled metric from /metrics.
func metricValue(t *testing.T, s *server, name string) string {
	t.Helper()
	status, body := s.httpDo(t, "", "GET", "/metrics", "")
	if status != 200 {
		t.Fatalf("GET /metrics: %d", status)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return ""
}

// TestWorkflowBreakglass: break-glass works with no approver present, sends
// the notification at once (the receiver checks the HMAC), and leaves a review
// listed until an admin closes it.
func TestWorkflowBreakglass(t *testing.T) {
	parallel(t, costLight)
	s, rc := startWorkflowServer(t)
	if res := s.ajar(t, "alice", "breakglass", "shell", "--for", "5m", "--reason", "x"); res.Code != 1 || !strings.Contains(res.Stderr, "break-glass") {
		t.Fatalf("alice may not: exit %d, %q", res.Code, res.Stderr)
	}
	r := s.request(t, "bob", "breakglass", "shell", "--for", "5m", "--reason", "INC-9: site down, friday night")
	if r.State != ajar.StateActive || len(r.Approvals) != 0 {
		t.Fatalf("break-glass: %s, approvals %v", r.State, r.Approvals)
	}
	evs := rc.waitFor(t, "breakglass.used", 60*time.Second, func(evs []notify.Event) bool {
		return slices.ContainsFunc(evs, func(e notify.Event) bool { return e.Type == "breakglass.used" })
	})
	i := slices.IndexFunc(evs, func(e notify.Event) bool { return e.Type == "breakglass.used" })
	if ev := evs[i]; ev.Request.ID != r.ID || ev.Actor != "bob@example.com" || !strings.Contains(ev.Summary, "BREAK-GLASS") {
		t.Errorf("event: %+v", ev)
	}
	if rc.badCount() != 0 {
		t.Errorf("%d webhook calls failed the HMAC check", rc.badCount())
	}
	if got := metricValue(t, s, "ajar_reviews_open"); got != "1" {
		t.Errorf("ajar_reviews_open = %s, want 1", got)
	}
	var open []ajar.ReviewTask
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "reviews", "-o", "json")), &open); err != nil || len(open) != 1 || open[0].RequestID != r.ID {
		t.Fatalf("open reviews: %v %+v", err, open)
	}
	if out := s.ok(t, "admin", "reviews"); !strings.Contains(out, r.ID) || !strings.Contains(out, "open") {
		t.Errorf("reviews table:\n%s", out)
	}
	if res := s.ajar(t, "bob", "review", r.ID, "--comment", "fine"); res.Code != 1 {
		t.Errorf("bob closing his own review: exit %d", res.Code)
	}
	s.ok(t, "admin", "review", r.ID, "--comment", "checked the incident timeline")
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "reviews", "-o", "json")), &open); err != nil || len(open) != 0 {
		t.Fatalf("open reviews after closing: %v %+v", err, open)
	}
	if got := metricValue(t, s, "ajar_reviews_open"); got != "0" {
		t.Errorf("ajar_reviews_open = %s, want 0", got)
	}
}

// TestWorkflowNotificationOutage: while the receiver is down, grants and
// revocations go on (their events wait in the outbox), delivery is retried
// with a growing delay (backoff) and logged, and once the receiver is back every
// event arrives once, in order. Nothing here depends on how fast the machine
// is: it waits on what the receiver sees, with generous deadlines.
func TestWorkflowNotificationOutage(t *testing.T) {
	parallel(t, costLight)
	s, rc := startWorkflowServer(t)
	rc.setDown(true)
	var want []string
	for i := range 3 {
		r := s.request(t, "alice", "request", "shell", "--for", "5m", "--reason", fmt.Sprintf("during the outage %d", i))
		if r.State != ajar.StateActive {
			t.Fatalf("request %d: %s, want active at once", i, r.State)
		}
		if r = s.request(t, "alice", "revoke", r.ID); r.State != ajar.StateRevoked {
			t.Fatalf("revoke %d: %s", i, r.State)
		}
		want = append(want, "request.created "+r.ID, "request.approved "+r.ID, "request.ended "+r.ID)
	}
	// The receiver refuses the head of the queue again and again; with
	// notify_retry 500ms and notify_max_retry 2s the delay before retry k is
	// at least min(500ms*2^(k-1), 2s)/2, jittered above that; load only makes
	// it longer.
	const attempts = 7
	var refused []time.Time
	eventually(t, 2*time.Minute, fmt.Sprintf("%d refused delivery attempts", attempts), func() bool {
		refused = rc.refusedAt()
		return len(refused) >= attempts
	})
	if n := len(rc.events()); n != 0 {
		t.Fatalf("%d events received while down", n)
	}
	rc.setDown(false)
	// Retries back off: from the third retry on, the gaps have grown to at least
	// 1s instead of staying at the first delay (250-500ms).
	for k := 2; k < attempts-1; k++ {
		if gap := refused[k+1].Sub(refused[k]); gap < 900*time.Millisecond {
			t.Errorf("retry %d came %v after the one before, want at least 1s (backoff): attempts at %v", k+1, gap, refused)
		}
	}
	rc.waitFor(t, "every event", 2*time.Minute, func(evs []notify.Event) bool { return len(evs) >= len(want) })
	// Delivered once: once nothing is pending, nothing more can arrive.
	eventually(t, 2*time.Minute, "an empty outbox", func() bool {
		m := s.okHTTP(t, "/metrics") // sinks with nothing pending are left out
		return strings.Contains(m, `ajar_notifications_pending{sink="hook"} 0`) || !strings.Contains(m, `ajar_notifications_pending{sink="hook"}`)
	})
	evs := rc.events()
	if got := eventTypes(evs); !slices.Equal(got, want) {
		t.Fatalf("after the outage:\n got %v\nwant %v", got, want)
	}
	// The log sink writes its lines without the outbox (notify.Direct); they
	// count as delivered all the same, and it was never down.
	m := s.okHTTP(t, "/metrics")
	var logged float64
	for line := range strings.Lines(m) {
		if v, ok := strings.CutPrefix(line, `ajar_notifications_delivered_total{sink="log"} `); ok {
			logged, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if logged < float64(len(want)) {
		t.Errorf("ajar_notifications_delivered_total{sink=\"log\"} = %v, want at least the %d events the hook got", logged, len(want))
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.ID] {
			t.Errorf("event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
	}
	for _, e := range evs {
		if e.Type == "request.created" {
			continue
		}
		if len(e.Actions) == 0 || !strings.HasPrefix(e.Actions[0].Command, "ajar ") {
			t.Errorf("%s has no command to act: %+v", e.Type, e.Actions)
		}
	}
	if !strings.Contains(s.logs(), "notification not delivered") {
		t.Errorf("the failed attempts are not logged")
	}
}

// TestWorkflowExplain: explain and the API's dry run say which rule applies,
// the outcome and why, and who approves; --as is for admins.
func TestWorkflowExplain(t *testing.T) {
	parallel(t, costLight)
	s, _ := startWorkflowServer(t)
	out := s.ok(t, "alice", "explain", "shell", "--for", "15m", "--reason", "deploy")
	for _, want := range []string{"Outcome:", "needs_approval", `request.duration <= duration("10m")`, "bob@example.com", "shell (applies)", "up to 2, 40m in all"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	var ex struct {
		Outcome string `json:"outcome"`
		User    string `json:"user"`
		Error   *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "explain", "shell", "--as", "alice@example.com", "--for", "5m", "--reason", "friday fix", "-o", "json")), &ex); err != nil ||
		ex.Outcome != "denied" || ex.User != "alice@example.com" || ex.Error.Code != "forbidden" {
		t.Errorf("explain --as: %v %+v", err, ex)
	}
	if res := s.ajar(t, "alice", "explain", "shell", "--as", "bob@example.com"); res.Code != 1 || !strings.Contains(res.Stderr, "(field: --as)") {
		t.Errorf("--as by a non-admin: exit %d, %q", res.Code, res.Stderr)
	}
	status, body := s.httpDo(t, "alice", "POST", "/v1/requests?dry_run=true", `{"target":"shell","duration":"5m","reason":"x"}`)
	if status != 200 || !strings.Contains(string(body), `"outcome":"auto_approved"`) {
		t.Errorf("dry run: %d %s", status, body)
	}
	var rs []ajar.Request
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "requests", "--mine", "-o", "json")), &rs); err != nil || len(rs) != 0 {
		t.Errorf("explain and the dry run created requests: %v %v", err, rs)
	}
}

var (
	reqID       = regexp.MustCompile(`req_[a-z0-9]+`)
	rfc3339     = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	hexHash     = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	fingerprint = regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`)
	codeBlock   = regexp.MustCompile("(?s)```\n.*?```")
	keyArg      = regexp.MustCompile("--key [^\\s`]+")
)

// TestWorkflowEvidence checks ajar evidence for a full lifecycle (request,
// approval, certificate, extension, revocation) against a golden file, with
// what changes from run to run (ids, times, hashes, keys) replaced by names.
func TestWorkflowEvidence(t *testing.T) {
	parallel(t, costLight)
	s, _ := startWorkflowServer(t)
	r := s.request(t, "alice", "request", "shell", "--for", "15m", "--reason", "deploy 1.2.3", "--ticket", "OPS-7")
	s.request(t, "bob", "approve", r.ID, "--comment", "go ahead")
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if out, err := exec.Command(requireTool(t, "ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	var cert struct {
		Info ajar.SSHCert `json:"info"`
	}
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "ssh-cert", r.ID, "--public-key", key+".pub", "-o", "json")), &cert); err != nil {
		t.Fatal(err)
	}
	s.ok(t, "alice", "extend", r.ID, "--by", "5m")
	s.request(t, "alice", "revoke", r.ID)

	md := s.ok(t, "admin", "evidence", r.ID)
	var ev struct {
		Integrity struct {
			HashesOK bool `json:"hashes_ok"`
			Covers   bool `json:"covers"`
		} `json:"integrity"`
	}
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "evidence", r.ID, "-o", "json")), &ev); err != nil || !ev.Integrity.HashesOK || !ev.Integrity.Covers {
		t.Fatalf("evidence JSON: %v %+v", err, ev)
	}
	got := strings.ReplaceAll(md, fmt.Sprint(cert.Info.Serial), "SERIAL")
	got = reqID.ReplaceAllString(got, "REQ_ID")
	got = rfc3339.ReplaceAllString(got, "TIME")
	got = fingerprint.ReplaceAllString(got, "FINGERPRINT")
	got = codeBlock.ReplaceAllString(got, "```\nCHECKPOINT\n```")
	got = keyArg.ReplaceAllString(got, "--key KEY")
	names := map[string]string{}
	got = hexHash.ReplaceAllStringFunc(got, func(h string) string {
		if names[h] == "" {
			names[h] = fmt.Sprintf("HASH-%d", len(names)+1)
		}
		return names[h]
	})
	golden := filepath.Join("testdata", "evidence.golden.md")
	if *updateGolden {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./e2e -run TestWorkflowEvidence -update)", err)
	}
	if got != string(want) {
		t.Errorf("ajar evidence differs from %s (run with -update to accept):\n%s", golden, got)
	}
}
