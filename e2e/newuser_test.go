package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What a new user trips over (issue 13), through the real binary.

// offline is a server value for commands that need no server.
var offline = &server{URL: "http://127.0.0.1:1"}

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNewUserSSHSkipsScheduled: ajar ssh does not wait on a request that is
// approved but starts tomorrow; it says so and gets access now with --for and
// --reason.
func TestNewUserSSHSkipsScheduled(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	start := time.Now().Add(20 * time.Hour).UTC().Format(time.RFC3339)
	later := s.request(t, "alice", "request", "demo-ssh", "--for", "1m", "--reason", "tomorrow",
		"--start", start, "--param", "source_ip=127.0.0.1")
	if later.State != "approved" {
		t.Fatalf("the scheduled request is %s, want approved", later.State)
	}
	fakeSSH := writeTemp(t, "ssh", "#!/bin/sh\nexit 0\n")
	if err := os.Chmod(fakeSSH, 0o755); err != nil {
		t.Fatal(err)
	}
	r := s.ajar(t, "alice", "ssh", "demo-ssh", "--for", "1m", "--reason", "now", "--source-ip", "127.0.0.1",
		"--ssh", fakeSSH, "--timeout", "10m", "--", "u@127.0.0.1")
	if r.Code != 0 {
		t.Fatalf("ajar ssh: exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "ajar: skipped your request "+later.ID+" for demo-ssh: it starts at "+start) ||
		!strings.Contains(r.Stderr, "ajar: new request ") || !strings.Contains(r.Stderr, ": active\n") ||
		strings.Contains(r.Stderr, "waiting up to") {
		t.Fatalf("ajar ssh stderr:\n%s", r.Stderr)
	}
}

// TestNewUserErrorsOneALine: cobra's suggestions and a policy file's problems
// print one a line, never a literal \t or \n.
func TestNewUserErrorsOneALine(t *testing.T) {
	parallel(t, costLight)
	r := offline.ajar(t, "", "requestz")
	if r.Code != 2 || !strings.Contains(r.Stderr, "Did you mean this?\n  request\n  requests\n") || strings.Contains(r.Stderr, `\t`) {
		t.Fatalf("exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// unapprovablePolicy has a step naming group sres, which nobody is in.
const unapprovablePolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
admins: [bob@example.com]
targets:
  demo-ssh: {provider: ssh-cert, config: {principals: [ajar-demo]}}
policies:
  - name: engineers
    targets: [demo-ssh]
    requesters: [group:engineers]
    default_duration: 15m
    max_duration: 1h
    approval: {steps: [{approvers: [group:sres], count: 1}]}
`

// TestNewUserUnapprovablePolicy: a policy whose requests could never be
// approved does not start, and ajar policy check says why, with field paths;
// one whose requests only some requesters cannot get starts with a warning
// that ajar explain lists.
func TestNewUserUnapprovablePolicy(t *testing.T) {
	parallel(t, costLight)
	cfg := writeTemp(t, "policy.yaml", unapprovablePolicy)
	r := offline.ajar(t, "", "serve", "--config", cfg, "--data", t.TempDir(), "--listen", "127.0.0.1:0")
	want := "  - policies[0].approval.steps[0].approvers[0]: no user is in group sres, so nobody can approve as group:sres\n"
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("serve: exit %d\n%s", r.Code, r.Stderr)
	}
	r = offline.ajar(t, "", "policy", "check", cfg)
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("policy check: exit %d\n%s", r.Code, r.Stderr)
	}

	// bob may request too, but he is the only approver: his requests are stuck.
	warn := strings.Replace(unapprovablePolicy, "[group:sres]", "[group:sre]", 1)
	warn = strings.Replace(warn, "requesters: [group:engineers]", "requesters: [group:engineers, group:sre]", 1)
	cfg = writeTemp(t, "warn.yaml", warn)
	s := startServer(t, t.TempDir(), "--dev", "--config", cfg)
	if !strings.Contains(s.logs(), "some requests could never be approved") || !strings.Contains(s.logs(), "requests by bob@example.com could never be approved") {
		t.Errorf("no start-up warning:\n%s", s.logs())
	}
	out := s.ok(t, "bob", "explain", "demo-ssh", "--reason", "x")
	if !strings.Contains(out, "Warning:") || !strings.Contains(out, "policies[0].approval.steps[0].count: needs 1 approver(s) but only 0 person(s)") {
		t.Errorf("explain lacks the warning:\n%s", out)
	}
	r = offline.ajar(t, "", "policy", "check", cfg)
	if r.Code != 0 || !strings.Contains(r.Stdout, "warning: policies[0].approval.steps[0].count:") {
		t.Errorf("policy check: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestNewUserPolicyTest: ajar policy test checks a file of cases against the
// demo policy, without a server, and lists the failed ones with what was
// expected and what the policy says.
func TestNewUserPolicyTest(t *testing.T) {
	parallel(t, costLight)
	cases := writeTemp(t, "cases.yaml", `
cases:
  - {user: alice@example.com, target: demo-ssh, duration: 5m, reason: x, params: {source_ip: 10.0.0.1}, expect: auto-approved}
  - {user: alice@example.com, target: demo-ssh, duration: 30m, reason: x, params: {source_ip: 10.0.0.1}, expect: needs 1 of group:sre}
  - {user: bob@example.com, target: demo-ssh, expect: no-policy}
`)
	r := offline.ajar(t, "", "policy", "test", "../policy/demo.yaml", cases)
	if r.Code != 0 || !strings.HasSuffix(r.Stdout, "3 case(s) passed\n") {
		t.Fatalf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	bad := writeTemp(t, "bad.yaml", `
cases:
  - {user: alice@example.com, target: demo-ssh, duration: 30m, reason: x, params: {source_ip: 10.0.0.1}, expect: auto-approved}
`)
	r = offline.ajar(t, "", "policy", "test", "../policy/demo.yaml", bad)
	if r.Code != 1 || !strings.Contains(r.Stdout, "expected: auto-approved\n      policy says: needs 1 of group:sre\n") ||
		!strings.Contains(r.Stderr, "1 of 1 case(s) failed") {
		t.Fatalf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestNewUserJSONLogs: with --log-format json every line on stderr is a JSON
// log record or a plain start-up line; access lines carry user, remote address
// and the request id that is also the X-Request-Id header.
func TestNewUserJSONLogs(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir(), "--log-format", "json")
	req, _ := http.NewRequest("GET", s.URL+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+s.tokens["alice"])
	req.Header.Set("X-Request-Id", "e2e-trace-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "e2e-trace-1" {
		t.Errorf("X-Request-Id = %q", got)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(s.logs(), `"request_id":"e2e-trace-1"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access line for the request:\n%s", s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	plain := []string{"ajar serving on ", "dev tokens", "try:", "  ", "ajar: "}
	for _, line := range strings.Split(strings.TrimSpace(s.logs()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			if m["request_id"] == "e2e-trace-1" && (m["user"] != "alice@example.com" || m["remote"] != "127.0.0.1") {
				t.Errorf("access line: %s", line)
			}
			continue
		}
		isPlain := false
		for _, p := range plain {
			isPlain = isPlain || strings.HasPrefix(line, p)
		}
		if !isPlain {
			t.Errorf("neither JSON nor a start-up line: %q", line)
		}
	}
}

// TestNewUserCompletion: completion asks the real server for target names and
// request ids.
func TestNewUserCompletion(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	req := s.request(t, "alice", "request", "demo-ssh", "--for", "30m", "--reason", "x", "--param", "source_ip=127.0.0.1")
	if out := s.ok(t, "alice", "__complete", "request", ""); !strings.HasPrefix(out, "demo-ssh\n") {
		t.Errorf("targets: %q", out)
	}
	if out := s.ok(t, "bob", "__complete", "approve", ""); !strings.HasPrefix(out, req.ID+"\n") {
		t.Errorf("pending ids for bob: %q", out)
	}
	if out := s.ok(t, "alice", "__complete", "revoke", ""); strings.Contains(out, req.ID) {
		t.Errorf("revoke suggests a pending request: %q", out)
	}
}

// TestNewUserPendingExtensionVisible: an extension waiting for approval is
// shown to its approver by ajar requests --awaiting-me and ajar show (and its
// JSON), and to its requester with why she cannot decide it.
func TestNewUserPendingExtensionVisible(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	// 5m is auto-approved; 5m more makes a window that needs approval.
	req := s.request(t, "alice", "request", "demo-ssh", "--for", "5m", "--reason", "x", "--param", "source_ip=127.0.0.1")
	s.waitState(t, "alice", req.ID, "active", 60*time.Second)
	s.ok(t, "alice", "extend", req.ID, "--by", "30m", "--reason", "more time")
	out := s.ok(t, "bob", "requests", "--awaiting-me")
	if !strings.Contains(out, req.ID) || !strings.Contains(out, "extension +30m") || !strings.Contains(out, "1 of 1: 0/1 from group:sre") {
		t.Fatalf("bob's awaiting-me lacks the extension:\n%s", out)
	}
	if out := s.ok(t, "alice", "requests", "--awaiting-me"); strings.Contains(out, req.ID) {
		t.Errorf("alice may not decide her own extension, yet it awaits her:\n%s", out)
	}
	out = s.ok(t, "bob", "show", req.ID)
	if !strings.Contains(out, "Extension:") || !strings.Contains(out, "+30m pending approval (extension 1, asked by alice@example.com") ||
		!strings.Contains(out, "can approve or deny it: ajar approve "+req.ID) {
		t.Fatalf("bob's show:\n%s", out)
	}
	var shown struct {
		ID               string `json:"id"`
		State            string `json:"state"`
		PendingExtension *struct {
			By         string `json:"by"`
			State      string `json:"state"`
			CanApprove bool   `json:"can_approve"`
		} `json:"pending_extension"`
	}
	if err := json.Unmarshal([]byte(s.ok(t, "bob", "show", req.ID, "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if x := shown.PendingExtension; shown.ID != req.ID || shown.State != "active" || x == nil || !strings.HasPrefix(x.By, "30m") || x.State != "pending" || !x.CanApprove {
		t.Fatalf("bob's show -o json: %+v", shown)
	}
	if out := s.ok(t, "alice", "show", req.ID); !strings.Contains(out, "You asked for this extension") {
		t.Errorf("alice's show:\n%s", out)
	}
	s.ok(t, "bob", "approve", req.ID)
	if out := s.ok(t, "bob", "requests", "--awaiting-me"); strings.Contains(out, req.ID) {
		t.Errorf("a decided extension still awaits bob:\n%s", out)
	}
	if out := s.ok(t, "bob", "show", req.ID, "-o", "json"); strings.Contains(out, "pending_extension") {
		t.Errorf("a decided extension is still shown pending:\n%s", out)
	}
}

// TestNewUserFirstTokenHint: outside dev mode the start-up lines say how to
// mint the first API token.
func TestNewUserFirstTokenHint(t *testing.T) {
	parallel(t, costLight)
	data := t.TempDir()
	cmd := exec.Command(bin, "serve", "--config", "../policy/demo.yaml", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "AJAR_MASTER_KEY="+randomMasterKey(), "AJAR_DATABASE_URL=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	want := "API tokens (the first one too) are minted on this host: ajar token create --config ../policy/demo.yaml --data " + data + " --user USER_ID"
	var seen []string
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the server ended without the hint:\n%s", strings.Join(seen, "\n"))
			}
			if l == want {
				return
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no hint in 60s:\n%s", strings.Join(seen, "\n"))
		}
	}
}
