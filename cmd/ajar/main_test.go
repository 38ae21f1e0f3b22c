package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/readmodel"
)

// startServer runs the real API server around core.
func startServer(tb testing.TB, core api.Core) string {
	tb.Helper()
	srv := httptest.NewServer(api.NewServer(core, idsOf(core), api.Options{}).Handler())
	tb.Cleanup(srv.Close)
	return srv.URL
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI against server as alice, with the global flags after the command.
func runCLI(tb testing.TB, server string, args ...string) result {
	tb.Helper()
	args = append(args, "--server", server, "--token", "alice-token")
	return runRaw(tb, args...)
}

func runRaw(tb testing.TB, args ...string) result {
	tb.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (r result) want(tb testing.TB, code int, stderrHas ...string) {
	tb.Helper()
	if r.code != code {
		tb.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			tb.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func (f *fakeCore) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func TestUsageErrors(t *testing.T) {
	core := newFakeCore()
	url := startServer(t, core)
	for _, tt := range []struct {
		name string
		args []string
		has  string
	}{
		{"param without =", []string{"request", "prod-web", "--param", "bad"}, "(field: --param)"},
		{"param without key", []string{"request", "prod-web", "--param", "=x"}, "(field: --param)"},
		{"param twice", []string{"request", "prod-web", "--param", "a=1", "--param", "a=2"}, "(field: --param)"},
		{"bad start", []string{"request", "prod-web", "--start", "tomorrow"}, "(field: --start)"},
		{"empty for", []string{"request", "prod-web", "--for", ""}, "(field: --for)"},
		{"timeout without wait", []string{"request", "prod-web", "--timeout", "1m"}, "(field: --timeout)"},
		{"bad timeout", []string{"request", "prod-web", "--wait", "--timeout", "soon"}, "--timeout"},
		{"negative timeout", []string{"request", "prod-web", "--wait", "--timeout", "-1s"}, "(field: --timeout)"},
		{"no target", []string{"request"}, "missing argument TARGET"},
		{"deny without reason", []string{"deny", "r1"}, "(field: --reason)"},
		{"deny with blank reason", []string{"deny", "r1", "--reason", "  "}, "(field: --reason)"},
		{"bad output", []string{"requests", "-o", "yaml"}, `must be "table" or "json"`},
		{"bad state", []string{"requests", "--state", "sleeping"}, "(field: --state)"},
		{"extra argument", []string{"show", "r1", "r2"}, `unexpected argument "r2"`},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"requests", "--all"}, "unknown flag: --all"},
		{"ssh-cert without key", []string{"ssh-cert", "r1"}, "(field: --public-key)"},
		{"ssh without ssh arguments", []string{"ssh", "prod"}, "(field: SSH ARGS)"},
		{"ssh bad source ip", []string{"ssh", "prod", "--source-ip", "example.com", "--", "host"}, "(field: --source-ip)"},
		{"bad server", []string{"whoami", "--server", "ftp://x"}, "(field: --server)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r result
			if tt.name == "bad server" {
				r = runRaw(t, append(tt.args, "--token", "alice-token")...)
			} else {
				r = runCLI(t, url, tt.args...)
			}
			r.want(t, exitUsage, "error: ", tt.has, "--help' for usage")
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
	if calls := core.Calls(); len(calls) != 0 {
		t.Errorf("usage errors reached the server: %v", calls)
	}
}

func TestMissingToken(t *testing.T) {
	t.Setenv("AJAR_TOKEN", "")
	url := startServer(t, newFakeCore())
	r := runRaw(t, "whoami", "--server", url)
	r.want(t, exitUsage, "AJAR_TOKEN")
}

func TestEnvironment(t *testing.T) {
	url := startServer(t, newFakeCore())
	t.Setenv("AJAR_SERVER", url)
	t.Setenv("AJAR_TOKEN", "alice-token")
	r := runRaw(t, "whoami")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "alice@example.com") {
		t.Errorf("whoami stdout:\n%s", r.stdout)
	}
	// Flags win over the environment, before or after the command name.
	runRaw(t, "--token", "wrong", "whoami").want(t, exitError, "error: API token not accepted")
	runRaw(t, "whoami", "--server", "http://127.0.0.1:1").want(t, exitError, "cannot reach the ajar server")
}

func TestServerErrorFormat(t *testing.T) {
	core := newFakeCore()
	core.err = ajar.FieldErrorf("duration", "is longer than the maximum of 2h")
	url := startServer(t, core)
	r := runCLI(t, url, "request", "prod-web", "--for", "5h", "--reason", "x")
	r.want(t, exitError)
	if want := "error: is longer than the maximum of 2h (field: --for)\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}

	core.locked(func() { core.err = ajar.Errorf(ajar.ENOTFOUND, "request r9 not found") })
	r = runCLI(t, url, "show", "r9")
	r.want(t, exitError)
	if want := "error: request r9 not found\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

func TestRequestSendsInput(t *testing.T) {
	core := newFakeCore()
	url := startServer(t, core)
	r := runCLI(t, url, "request", "prod-web", "--for", "45m", "--reason", "deploy hotfix",
		"--ticket", "OPS-42", "--start", "2026-01-02T16:00:00+01:00",
		"--param", "source_ip=203.0.113.7", "--param", "note=a=b,c")
	r.want(t, exitOK)
	start := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	want := ajar.CreateInput{
		Target: "prod-web", Duration: "45m", Reason: "deploy hotfix", Ticket: "OPS-42", Start: &start,
		Params: map[string]string{"source_ip": "203.0.113.7", "note": "a=b,c"},
	}
	core.locked(func() {
		if !core.create.Start.Equal(start) {
			t.Errorf("start = %v, want %v", core.create.Start, start)
		}
		got := core.create
		got.Start = &start
		if !reflect.DeepEqual(got, want) {
			t.Errorf("core got %+v, want %+v", got, want)
		}
	})
	for _, s := range []string{"ID:", "r2", "State:", "pending", "Reason:", "deploy hotfix", "Params:", "source_ip=203.0.113.7"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}

func TestShowJSON(t *testing.T) {
	url := startServer(t, newFakeCore())
	r := runCLI(t, url, "show", "r1", "-o", "json")
	r.want(t, exitOK)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"id", "target", "requester", "state", "reason", "created_at", "expires_at", "approvals"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q:\n%s", k, r.stdout)
		}
	}
	for _, k := range []string{"created_at", "expires_at"} {
		if _, err := time.Parse(time.RFC3339, got[k].(string)); err != nil {
			t.Errorf("%s is not RFC 3339: %v", k, err)
		}
	}
	if a, ok := got["approvals"].([]any); !ok || len(a) != 1 {
		t.Errorf("approvals = %#v", got["approvals"])
	}

	// The human view shows the approvals too.
	r = runCLI(t, url, "show", "r1")
	r.want(t, exitOK)
	for _, s := range []string{"prod-web", "active", "OPS-42", "30m", "Expires:", "bob@example.com", "lgtm"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("show lacks %q:\n%s", s, r.stdout)
		}
	}
}

func TestRequestWait(t *testing.T) {
	core := newFakeCore()
	core.script["r2"] = []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateApproved, ajar.StateActive}
	url := startServer(t, core)
	r := runCLI(t, url, "request", "prod-web", "--for", "30m", "--reason", "x", "--wait", "-o", "json")
	r.want(t, exitOK, "request r2: pending\n", "request r2: approved\n", "request r2: active\n")
	if strings.Count(r.stderr, "approved") != 1 {
		t.Errorf("a state is reported once, when it changes:\n%s", r.stderr)
	}
	var req ajar.Request
	if err := json.Unmarshal([]byte(r.stdout), &req); err != nil || req.State != ajar.StateActive {
		t.Fatalf("stdout = %s (%v), want the active request", r.stdout, err)
	}
}

func TestRequestWaitEndsBadly(t *testing.T) {
	core := newFakeCore()
	core.script["r2"] = []ajar.State{ajar.StateDenied}
	url := startServer(t, core)
	r := runCLI(t, url, "request", "prod-web", "--reason", "x", "--wait")
	r.want(t, exitError, "request r2: denied\n", "error: request r2 ended denied")
	if !strings.Contains(r.stdout, "denied") {
		t.Errorf("the final request is printed:\n%s", r.stdout)
	}
}

func TestRequestWaitTimeout(t *testing.T) {
	url := startServer(t, newFakeCore()) // r2 stays pending
	r := runCLI(t, url, "request", "prod-web", "--reason", "x", "--wait", "--timeout", "700ms")
	r.want(t, exitError, "error: gave up after 700ms waiting for request r2, still pending")
}

// TestRequestsPages: "ajar requests" follows the server's cursors to the last
// page; with --limit it shows one page and prints how to get the next.
func TestRequestsPages(t *testing.T) {
	core := newFakeCore()
	core.paged = true
	url := startServer(t, core)
	r := runCLI(t, url, "requests", "-o", "json")
	r.want(t, exitOK)
	var reqs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &reqs); err != nil || len(reqs) != 2 || reqs[0]["id"] != "r1" || reqs[1]["id"] != "r0" {
		t.Fatalf("all pages: %v\n%s", err, r.stdout)
	}
	r = runCLI(t, url, "requests", "--mine", "--limit", "1")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "r1") || strings.Contains(r.stdout, "r0") ||
		!strings.Contains(r.stderr, "more: ajar requests --mine --limit 1 --cursor page2") {
		t.Fatalf("one page:\n%s\n%s", r.stdout, r.stderr)
	}
	r = runCLI(t, url, "requests", "--mine", "--limit", "1", "--cursor", "page2")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "r0") || strings.Contains(r.stderr, "more:") {
		t.Fatalf("second page:\n%s\n%s", r.stdout, r.stderr)
	}
	runCLI(t, url, "requests", "--limit", "1001").want(t, exitUsage)
}

func TestRequests(t *testing.T) {
	core := newFakeCore()
	url := startServer(t, core)
	r := runCLI(t, url, "requests", "--mine", "--state", "active")
	r.want(t, exitOK)
	core.locked(func() {
		if want := (readmodel.ListInput{Mine: true, State: ajar.StateActive}); core.list != want {
			t.Errorf("core got %+v, want %+v", core.list, want)
		}
	})
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "EXPIRES") ||
		!strings.Contains(lines[1], "r1") || !strings.Contains(lines[1], "2026-01-02T15:34:05Z") {
		t.Errorf("table:\n%s", r.stdout)
	}

	r = runCLI(t, url, "requests", "-o", "json")
	r.want(t, exitOK)
	var reqs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &reqs); err != nil || len(reqs) != 1 || reqs[0]["id"] != "r1" {
		t.Fatalf("JSON array: %v\n%s", err, r.stdout)
	}
}

func TestActions(t *testing.T) {
	core := newFakeCore()
	url := startServer(t, core)

	r := runCLI(t, url, "approve", "r1", "--comment", "lgtm")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "approved") {
		t.Errorf("approve stdout:\n%s", r.stdout)
	}
	runCLI(t, url, "deny", "r1", "--reason", "freeze").want(t, exitOK)
	core.locked(func() {
		if core.comment != "lgtm" || core.reason != "freeze" {
			t.Errorf("core got comment %q reason %q", core.comment, core.reason)
		}
	})
	for verb, state := range map[string]string{"revoke": "revoking", "cancel": "cancelled"} {
		r := runCLI(t, url, verb, "r1", "-o", "json")
		r.want(t, exitOK)
		var got ajar.Request
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || string(got.State) != state {
			t.Errorf("%s: %s (%v)", verb, r.stdout, err)
		}
	}
}

func TestTargetsAndWhoAmI(t *testing.T) {
	url := startServer(t, newFakeCore())
	r := runCLI(t, url, "targets")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "prod-web") || !strings.Contains(r.stdout, "1 of group:sre") {
		t.Errorf("targets:\n%s", r.stdout)
	}
	r = runCLI(t, url, "targets", "-o", "json")
	r.want(t, exitOK)
	var targets []readmodel.TargetInfo
	if err := json.Unmarshal([]byte(r.stdout), &targets); err != nil || len(targets) != 1 {
		t.Errorf("targets JSON: %v\n%s", err, r.stdout)
	}
	r = runCLI(t, url, "whoami", "-o", "json")
	r.want(t, exitOK)
	var id ajar.Caller
	if err := json.Unmarshal([]byte(r.stdout), &id); err != nil || id.ID != "alice@example.com" {
		t.Errorf("whoami JSON: %v\n%s", err, r.stdout)
	}
}

func TestSSHCert(t *testing.T) {
	core := newFakeCore()
	url := startServer(t, core)
	dir := t.TempDir()

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	pubFile := filepath.Join(dir, "id_ed25519.pub")
	os.WriteFile(pubFile, []byte(keyLine+" alice@laptop\n"), 0o644)

	out := filepath.Join(dir, "id_ed25519-cert.pub")
	r := runCLI(t, url, "ssh-cert", "r1", "--public-key", pubFile, "--out", out)
	r.want(t, exitOK, "serial 7", "wrote "+out)
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing with --out", r.stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "ssh-ed25519-cert-v01@openssh.com AAAAFakeCert alice\n" {
		t.Fatalf("cert file = %q (%v)", b, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Errorf("cert file mode = %v, want 0644", fi.Mode().Perm())
	}
	core.locked(func() {
		if core.pubKey != keyLine {
			t.Errorf("core got key %q, want %q", core.pubKey, keyLine)
		}
	})

	// Without --out the certificate goes to stdout.
	r = runCLI(t, url, "ssh-cert", "r1", "--public-key", pubFile)
	r.want(t, exitOK)
	if r.stdout != "ssh-ed25519-cert-v01@openssh.com AAAAFakeCert alice\n" {
		t.Errorf("stdout = %q", r.stdout)
	}

	// A private key is refused before anything is sent.
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	privFile := filepath.Join(dir, "id_ed25519")
	os.WriteFile(privFile, pem.EncodeToMemory(block), 0o600)
	before := len(core.Calls())
	runCLI(t, url, "ssh-cert", "r1", "--public-key", privFile).want(t, exitUsage, "is a private key", "(field: --public-key)")
	garbage := filepath.Join(dir, "garbage.pub")
	os.WriteFile(garbage, []byte("hello\n"), 0o644)
	runCLI(t, url, "ssh-cert", "r1", "--public-key", garbage).want(t, exitUsage, "not an OpenSSH public key")
	runCLI(t, url, "ssh-cert", "r1", "--public-key", filepath.Join(dir, "missing.pub")).want(t, exitUsage, "cannot read")
	runCLI(t, url, "ssh-cert", "r1", "--public-key", pubFile, "--out", filepath.Join(dir, "nodir", "c.pub")).want(t, exitUsage, "(field: --out)")
	if after := len(core.Calls()); after != before {
		t.Errorf("bad keys reached the server: %v", core.Calls()[before:])
	}
}

func TestSSHCA(t *testing.T) {
	t.Setenv("AJAR_TOKEN", "")
	url := startServer(t, newFakeCore())
	r := runRaw(t, "ssh", "ca", "--server", url) // no token needed
	r.want(t, exitOK)
	if r.stdout != "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeCA ajar-ca\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestAuditPages(t *testing.T) {
	core := newFakeCore()
	for i := int64(1); i <= 2500; i++ {
		subject := "r1"
		if i%2 == 0 {
			subject = "r2"
		}
		core.events = append(core.events, ajar.AuditEvent{
			Seq: i, Time: testTime, Actor: "alice@example.com", Action: "request.created", Subject: subject,
			Details: json.RawMessage(`{"target": "prod-web"}`),
		})
	}
	url := startServer(t, core)

	r := runCLI(t, url, "audit", "-o", "json")
	r.want(t, exitOK)
	var events []ajar.AuditEvent
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil {
		t.Fatalf("not a JSON array: %v", err)
	}
	if len(events) != 2500 || !slices.IsSortedFunc(events, func(a, b ajar.AuditEvent) int { return int(a.Seq - b.Seq) }) {
		t.Fatalf("got %d events", len(events))
	}
	core.locked(func() {
		var afters []int64
		for _, f := range core.filters {
			afters = append(afters, f.AfterSeq)
		}
		if want := []int64{0, 1000, 2000, 2500}; !slices.Equal(afters, want) {
			t.Errorf("pages after %v, want %v", afters, want)
		}
		core.filters = nil
	})

	r = runCLI(t, url, "audit", "--request", "r1")
	r.want(t, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 1251 || !strings.HasPrefix(lines[0], "SEQ") || !strings.Contains(lines[1], `{"target":"prod-web"}`) {
		t.Errorf("table has %d lines; first two:\n%s", len(lines), strings.Join(lines[:min(2, len(lines))], "\n"))
	}
	core.locked(func() {
		if core.filters[0].Subject != "r1" {
			t.Errorf("filter = %+v", core.filters[0])
		}
	})

	// No events: an empty array, or just the header.
	r = runCLI(t, url, "audit", "--request", "r9", "-o", "json")
	r.want(t, exitOK)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty JSON = %q", r.stdout)
	}
}

func TestCleanTerminalOutput(t *testing.T) {
	core := newFakeCore()
	core.requests["r1"].Reason = "fix\x1b[2J\x1b[Hprod\u202e"
	url := startServer(t, core)
	r := runCLI(t, url, "show", "r1")
	r.want(t, exitOK)
	if strings.ContainsAny(r.stdout, "\x1b\u202e") {
		t.Errorf("escape sequences reach the terminal: %q", r.stdout)
	}
	if !strings.Contains(r.stdout, `fix\x1b[2J\x1b[Hprod\u202e`) {
		t.Errorf("reason not shown escaped:\n%s", r.stdout)
	}
}
