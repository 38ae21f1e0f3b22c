package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// Consistency of what people read (issue 13, items 13-16), through the real binary.

// ajarTZ runs the CLI as user with the time zone TZ (and extra environment).
func (s *server) ajarTZ(t testing.TB, user, tz string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "AJAR_SERVER="+s.URL, "AJAR_TOKEN="+s.tokens[user], "TZ="+tz)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ajar %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// line returns the line of out that starts with prefix ("" if none).
func line(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestConsistencyTimes: times for people are in the local zone (UTC with
// --utc, and in JSON); a scheduled request shows its start and end; ajar
// requests has a START column; durations print as people type them.
func TestConsistencyTimes(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	start := time.Now().Add(20 * time.Hour).Truncate(time.Minute).UTC()
	r := s.request(t, "alice", "request", "demo-ssh", "--for", "5m", "--reason", "tomorrow",
		"--start", start.Format(time.RFC3339), "--param", "source_ip=127.0.0.1")
	if r.State != ajar.StateApproved {
		t.Fatalf("the scheduled request is %s, want approved", r.State)
	}
	const tz = "Asia/Kolkata" // +05:30 all year
	loc, err := time.LoadLocation(tz)
	if err != nil {
		t.Fatal(err)
	}
	local := start.In(loc).Format(time.RFC3339)
	localEnd := start.Add(5 * time.Minute).In(loc).Format(time.RFC3339)

	show := s.ajarTZ(t, "alice", tz, "show", r.ID)
	if show.Code != 0 {
		t.Fatalf("show: exit %d: %s", show.Code, show.Stderr)
	}
	if l := line(show.Stdout, "Start:"); !strings.Contains(l, local) {
		t.Errorf("Start line %q, want %s (local)\n%s", l, local, show.Stdout)
	}
	if l := line(show.Stdout, "End:"); !strings.Contains(l, localEnd) {
		t.Errorf("End line %q, want %s (local)\n%s", l, localEnd, show.Stdout)
	}
	if l := line(show.Stdout, "Created:"); !strings.Contains(l, "+05:30") {
		t.Errorf("Created line %q is not in the local zone", l)
	}
	if l := line(show.Stdout, "Duration:"); !strings.HasSuffix(l, " 5m") {
		t.Errorf("Duration line %q, want 5m", l)
	}
	utc := s.ajarTZ(t, "alice", tz, "show", r.ID, "--utc")
	if l := line(utc.Stdout, "Start:"); !strings.Contains(l, start.Format(time.RFC3339)) {
		t.Errorf("with --utc, Start line %q, want %s", l, start.Format(time.RFC3339))
	}
	js := s.ajarTZ(t, "alice", tz, "show", r.ID, "-o", "json")
	if !strings.Contains(js.Stdout, `"start_at": "`+start.Format(time.RFC3339)+`"`) || !strings.Contains(js.Stdout, `"duration": "5m"`) {
		t.Errorf("JSON is not UTC with the duration as typed:\n%s", js.Stdout)
	}

	list := s.ajarTZ(t, "alice", tz, "requests")
	head := line(list.Stdout, "ID")
	if !strings.Contains(head, " START ") {
		t.Errorf("ajar requests has no START column: %q", head)
	}
	if row := line(list.Stdout, r.ID); !strings.Contains(row, local) || !strings.Contains(row, localEnd) {
		t.Errorf("ajar requests row %q lacks the local start %s and end %s", row, local, localEnd)
	}

	targets := s.ok(t, "alice", "targets")
	if row := line(targets, "demo-ssh"); !strings.Contains(row, " 15m ") || !strings.Contains(row, " 1h ") || strings.Contains(row, "0s") {
		t.Errorf("ajar targets prints durations unlike people type them: %q", row)
	}
}

// TestConsistencyShowHistory: ajar show says who approved (or the policy that
// did), who revoked, and whether it was break-glass; a revoked request has no
// "expires in".
func TestConsistencyShowHistory(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	auto := s.request(t, "alice", "request", "demo-ssh", "--for", "1m", "--reason", "auto", "--param", "source_ip=127.0.0.1")
	out := s.ok(t, "alice", "show", auto.ID)
	if l := line(out, "Approved by:"); !strings.Contains(l, "policy engineers-demo-ssh") {
		t.Errorf("auto-approved request: Approved by line %q\n%s", l, out)
	}

	r := s.request(t, "alice", "request", "demo-ssh", "--for", "30m", "--reason", "debug", "--param", "source_ip=127.0.0.1")
	s.ok(t, "bob", "approve", r.ID, "--comment", "go")
	s.ok(t, "admin", "revoke", r.ID)
	s.waitState(t, "alice", r.ID, ajar.StateRevoked, 60*time.Second)
	out = s.ok(t, "alice", "show", r.ID)
	if l := line(out, "Approved by:"); !strings.Contains(l, "bob@example.com") {
		t.Errorf("Approved by line %q\n%s", l, out)
	}
	if l := line(out, "Revoked by:"); !strings.Contains(l, "admin@example.com") {
		t.Errorf("Revoked by line %q\n%s", l, out)
	}
	if strings.Contains(out, "Expires:") || strings.Contains(out, "(in ") {
		t.Errorf("a revoked request still says when it expires:\n%s", out)
	}
	if strings.Contains(out, "Break-glass:") {
		t.Errorf("an ordinary request shown as break-glass:\n%s", out)
	}
}

// TestConsistencyShowBreakglass: ajar show says a request was break-glass.
func TestConsistencyShowBreakglass(t *testing.T) {
	parallel(t, costLight)
	s, _ := startWorkflowServer(t)
	r := s.request(t, "bob", "breakglass", "shell", "--for", "5m", "--reason", "INC-9: site down")
	out := s.ok(t, "bob", "show", r.ID)
	if l := line(out, "Break-glass:"); !strings.Contains(l, "yes, review open") {
		t.Errorf("Break-glass line %q\n%s", l, out)
	}
}

// TestConsistencyErrors: a server error names the flag to fix, not the API
// field; a URL that is not an ajar server is called so; AJAR_SERVER with a
// trailing /v1 works.
func TestConsistencyErrors(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	r := s.ajar(t, "alice", "request", "demo-ssh", "--for", "-5m", "--reason", "x", "--param", "source_ip=127.0.0.1")
	if r.Code != 1 || !strings.Contains(r.Stderr, "must be positive (field: --for)") {
		t.Errorf("negative --for: exit %d, stderr %q", r.Code, r.Stderr)
	}
	r = s.ajar(t, "alice", "request", "demo-ssh", "--for", "1m", "--param", "source_ip=127.0.0.1")
	if r.Code != 1 || !strings.Contains(r.Stderr, "(field: --reason)") {
		t.Errorf("no reason: exit %d, stderr %q", r.Code, r.Stderr)
	}
	r = s.ajar(t, "alice", "request", "demo-ssh", "--for", "1m", "--reason", "x", "--param", "source_ip=nope")
	if r.Code != 1 || !strings.Contains(r.Stderr, "(field: --param source_ip)") {
		t.Errorf("bad source_ip: exit %d, stderr %q", r.Code, r.Stderr)
	}

	v1 := &server{URL: s.URL + "/v1/", tokens: s.tokens}
	if out := v1.ok(t, "alice", "targets"); !strings.Contains(out, "demo-ssh") {
		t.Errorf("AJAR_SERVER with /v1: %q", out)
	}

	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/targets" {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>welcome</html>"))
			return
		}
		http.NotFound(w, r)
	}))
	defer other.Close()
	not := &server{URL: other.URL, tokens: s.tokens}
	for _, args := range [][]string{{"targets"}, {"requests"}} {
		r := not.ajar(t, "alice", args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, other.URL+" is not an ajar server") {
			t.Errorf("ajar %v against a web server that is not ajar: exit %d, stderr %q", args, r.Code, r.Stderr)
		}
	}
}

// TestConsistencyAuditForPeople: audit details printed to people have 1-based
// steps (as every table) and no \u003c escapes; hashes are hex in the CLI's
// JSON and in the evidence, as on the web pages.
func TestConsistencyAuditForPeople(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	s.request(t, "alice", "request", "demo-ssh", "--for", "1m", "--reason", "auto", "--param", "source_ip=127.0.0.1")
	r := s.request(t, "alice", "request", "demo-ssh", "--for", "30m", "--reason", "debug", "--param", "source_ip=127.0.0.1")
	s.ok(t, "bob", "approve", r.ID, "--comment", "go")

	out := s.ok(t, "admin", "audit")
	if strings.Contains(out, `\u003c`) || !strings.Contains(out, `request.duration <= duration(\"5m\")`) {
		t.Errorf("audit details escape <:\n%s", out)
	}
	if strings.Contains(out, `"1m0s"`) || !strings.Contains(out, `"duration":"1m"`) {
		t.Errorf("audit details print durations unlike people type them:\n%s", out)
	}
	var approved string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "bob@example.com") && strings.Contains(l, "request.approved") {
			approved = l
		}
	}
	if !strings.Contains(approved, `"step":1`) {
		t.Errorf("bob's approval of the one step is not step 1: %q", approved)
	}

	hexHash := regexp.MustCompile(`^[0-9a-f]{64}$`)
	evs := s.auditEvents(t)
	var raw []map[string]any
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "audit", "-o", "json")), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || len(raw) != len(evs) {
		t.Fatalf("%d events in JSON, %d decoded", len(raw), len(evs))
	}
	for i, e := range raw {
		if h, _ := e["hash"].(string); !hexHash.MatchString(h) {
			t.Errorf("event %d: hash %q is not hex", i+1, h)
		}
		if i > 0 {
			if h, _ := e["prev_hash"].(string); !hexHash.MatchString(h) {
				t.Errorf("event %d: prev_hash %q is not hex", i+1, h)
			}
		}
	}
	if res := s.ajar(t, "admin", "audit", "verify"); res.Code != 0 {
		t.Errorf("audit verify on hex hashes: exit %d: %s", res.Code, res.Stderr)
	}
	code, body := s.httpDo(t, "alice", "GET", "/v1/requests/"+r.ID+"/evidence", "")
	if code != 200 {
		t.Fatalf("evidence: %d %s", code, body)
	}
	var ev struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || len(ev.Events) == 0 {
		t.Fatalf("evidence: %v %s", err, body)
	}
	for _, e := range ev.Events {
		if h, _ := e["hash"].(string); !hexHash.MatchString(h) {
			t.Errorf("evidence event hash %q is not hex", h)
		}
	}
}
