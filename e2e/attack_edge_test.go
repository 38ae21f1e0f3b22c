package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// Attacks on ajar's edges (issue 10, items 6, 7 and 14): what people type
// reaching Slack, terminals and Markdown raw; user ids that differ only in
// case; users removed from the policy; bodies that are not what they say;
// dev mode on a real policy.

// edgePolicy needs one approval from sre for the shell target; SLACK_URL is
// replaced by the test's fake Slack webhook (or the notification dropped).
const edgePolicy = `
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
    default_duration: 30m
    max_duration: 1h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`

// startEdgeServer writes policy to DIR/policy.yaml and starts ajar on it, with
// env added to its environment.
func startEdgeServer(t *testing.T, dir, policy string, env ...string) *server {
	t.Helper()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServerEnv(t, dir, env, "--config", cfg, "--dev")
}

// slackHook is a fake Slack incoming webhook keeping every payload.
type slackHook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []map[string]any
	raws []string
}

func newSlackHook(t *testing.T) *slackHook {
	h := &slackHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, m)
		h.raws = append(h.raws, string(body))
		h.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// waitText waits for a payload whose top-level text contains s.
func (h *slackHook) waitText(t *testing.T, s string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		for _, m := range h.got {
			if text, _ := m["text"].(string); strings.Contains(text, s) {
				h.mu.Unlock()
				return m
			}
		}
		n := len(h.got)
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no Slack message with %q in 60s (%d received)", s, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// slackTexts returns every "text" string in a Slack payload.
func slackTexts(v any, key string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			slackTexts(x, k, out)
		}
	case []any:
		for _, x := range v {
			slackTexts(x, key, out)
		}
	case string:
		if key == "text" {
			*out = append(*out, v)
		}
	}
}

// TestAttackSlackInjection: alice's reason and bob's denial reason carry a
// <!channel> mention and a link whose label lies about its target. Slack
// formats the top-level text (the notification itself) as well as the
// blocks; neither may carry them raw.
func TestAttackSlackInjection(t *testing.T) {
	parallel(t, costLight)
	hook := newSlackHook(t)
	const envName = "AJAR_E2E_EDGE_SLACK_URL"
	s := startEdgeServer(t, t.TempDir(), edgePolicy+`notifications:
  - {name: chat, type: slack, url_env: `+envName+`}
`, envName+"="+hook.srv.URL)
	inject := "<!channel> approved, see <https://evil.example/steal|the change ticket>"
	r := s.request(t, "alice", "request", "shell", "--for", "30m", "--reason", "deploy "+inject)
	s.ok(t, "bob", "deny", r.ID, "--reason", "no "+inject)
	denied := hook.waitText(t, "denied") // its summary holds bob's reason
	if top, _ := denied["text"].(string); !strings.Contains(top, "&lt;!channel&gt;") {
		t.Errorf("the top-level text does not escape the mention: %q", top)
	}
	for _, m := range []map[string]any{hook.waitText(t, "requests shell"), denied} {
		var texts []string
		slackTexts(m, "", &texts)
		for _, text := range texts {
			if strings.Contains(text, "<!channel>") || strings.Contains(text, "<https://evil") {
				t.Errorf("Slack text carries a raw mention or link: %q", text)
			}
		}
	}
}

// TestAttackEvidenceControlChars: reasons, tickets and comments holding
// terminal escapes or bidirectional controls are refused at the API with the
// field named, by the CLI too; text that is only Markdown or HTML is kept, and
// the evidence report escapes it.
func TestAttackEvidenceControlChars(t *testing.T) {
	parallel(t, costLight)
	s := startEdgeServer(t, t.TempDir(), edgePolicy)
	for _, tt := range []struct{ body, field string }{
		{`{"target":"shell","duration":"30m","reason":"fix \u001b[2J\u001b[Happroved by admin"}`, "reason"},
		{`{"target":"shell","duration":"30m","reason":"invoice \u202efdp.exe"}`, "reason"},
		{`{"target":"shell","duration":"30m","reason":"ok","ticket":"OPS-\u20667\u2069"}`, "ticket"},
		{`{"target":"shell","duration":"30m","reason":"c1 \u009b31m red"}`, "reason"},
	} {
		status, body := s.httpDo(t, "alice", "POST", "/v1/requests", tt.body)
		var env struct {
			Error struct{ Code, Field, Message string }
		}
		json.Unmarshal(body, &env)
		if status != http.StatusBadRequest || env.Error.Code != ajar.EINVALID || env.Error.Field != tt.field {
			t.Errorf("%s: %d %s, want 400 invalid on %s", tt.body, status, body, tt.field)
		}
	}
	if res := s.ajar(t, "alice", "request", "shell", "--reason", "fix \x1b]8;;https://evil.example\x07here"); res.Code != 1 || !strings.Contains(res.Stderr, "(field: --reason)") {
		t.Errorf("CLI request with an escape: exit %d\n%s", res.Code, res.Stderr)
	}

	md := "see [the runbook](https://evil.example) <img src=x onerror=alert(1)> **urgent**"
	r := s.request(t, "alice", "request", "shell", "--for", "30m", "--reason", md)
	if res := s.ajar(t, "bob", "deny", r.ID, "--reason", "no \u202e"); res.Code != 1 || !strings.Contains(res.Stderr, "(field: --reason)") {
		t.Errorf("deny with a bidi control: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := s.ajar(t, "bob", "approve", r.ID, "--comment", "ok\x1b[1A"); res.Code != 1 || !strings.Contains(res.Stderr, "(field: --comment)") {
		t.Errorf("approve with an escape: exit %d\n%s", res.Code, res.Stderr)
	}
	out := s.ok(t, "admin", "evidence", r.ID)
	if !strings.Contains(out, `\[the runbook\](https://evil.example) \<img src=x onerror=alert(1)\> \*\*urgent\*\*`) {
		t.Errorf("evidence does not escape the reason's Markdown and HTML:\n%s", out)
	}
}

// TestAttackUserIDCase: two spellings of one person in the policy are two
// identities unless ids are compared without case. A policy naming both is
// refused; with one spelling, a token minted for another spelling is the
// same person, who cannot approve her own request.
func TestAttackUserIDCase(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	twice := strings.Replace(edgePolicy, "  - {id: bob@example.com, groups: [sre]}\n",
		"  - {id: bob@example.com, groups: [sre]}\n  - {id: Alice@Example.com, groups: [sre]}\n", 1)
	cfg := filepath.Join(dir, "twice.yaml")
	if err := os.WriteFile(cfg, []byte(twice), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	serve := exec.CommandContext(ctx, bin, "serve", "--config", cfg, "--data", filepath.Join(dir, "twice"), "--listen", "127.0.0.1:0")
	serve.Env = append(os.Environ(), "AJAR_MASTER_KEY=", "AJAR_DATABASE_URL=")
	out, err := serve.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "users[2].id") || !strings.Contains(string(out), "without case") {
		t.Errorf("a policy naming alice twice: err %v\n%s", err, out)
	}

	// One spelling, with capitals; alice is an approver too.
	one := strings.Replace(edgePolicy, "{id: alice@example.com, groups: [engineers]}", "{id: Alice@Example.com, groups: [engineers, sre]}", 1)
	s := startEdgeServer(t, dir, one)
	tok := exec.Command(bin, "token", "create", "--config", filepath.Join(dir, "policy.yaml"), "--data", dir, "--user", "ALICE@EXAMPLE.COM")
	tok.Env = append(os.Environ(), "AJAR_DATABASE_URL=")
	b, err := tok.CombinedOutput()
	if err != nil {
		t.Fatalf("token create --user ALICE@EXAMPLE.COM: %v\n%s", err, b)
	}
	s.tokens["shouting"] = strings.TrimSpace(string(b))
	if who := s.ok(t, "shouting", "whoami"); !strings.Contains(who, "alice@example.com") {
		t.Errorf("whoami with the second token:\n%s", who)
	}
	r := s.request(t, "alice", "request", "shell", "--for", "30m", "--reason", "deploy")
	for _, user := range []string{"alice", "shouting"} {
		if res := s.ajar(t, user, "approve", r.ID); res.Code != 1 || !strings.Contains(res.Stderr, "your own request") {
			t.Errorf("%s approving alice's request: exit %d\n%s", user, res.Code, res.Stderr)
		}
	}
	if got := s.request(t, "bob", "show", r.ID); got.State != ajar.StatePending || len(got.Approvals) != 0 {
		t.Errorf("after self-approval attempts: %s with %d approvals", got.State, len(got.Approvals))
	}
}

// TestAttackOrphanedGrants: alice is removed from the policy while her grant
// is active. Her token stops working at once; on the restart her grant is
// named in the log and counted by ajar_grants_orphaned, until it is revoked.
func TestAttackOrphanedGrants(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	s := startEdgeServer(t, dir, edgePolicy)
	r := s.request(t, "alice", "request", "shell", "--for", "1h", "--reason", "deploy")
	s.ok(t, "bob", "approve", r.ID)
	s.waitState(t, "bob", r.ID, ajar.StateActive, 60*time.Second)
	tokens := s.tokens
	s.stop()

	gone := strings.Replace(edgePolicy, "  - {id: alice@example.com, groups: [engineers]}\n", "", 1)
	s = startEdgeServer(t, dir, gone)
	s.tokens = tokens
	logs := s.logs()
	if !strings.Contains(logs, "open request of a requester who may no longer have it") || !strings.Contains(logs, "request="+r.ID) ||
		!strings.Contains(logs, "requester=alice@example.com") {
		t.Errorf("the log does not name alice's grant %s:\n%s", r.ID, logs)
	}
	metric := func() string {
		status, body := s.httpDo(t, "", "GET", "/metrics", "")
		if status != http.StatusOK {
			t.Fatalf("metrics: %d", status)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "ajar_grants_orphaned ") {
				return line
			}
		}
		t.Fatalf("no ajar_grants_orphaned in the metrics")
		return ""
	}
	if got := metric(); got != "ajar_grants_orphaned 1" {
		t.Errorf("metric %q, want ajar_grants_orphaned 1", got)
	}
	if res := s.ajar(t, "alice", "whoami"); res.Code == 0 {
		t.Errorf("alice's token still works after her removal:\n%s", res.Stdout)
	}
	s.ok(t, "admin", "revoke", r.ID)
	s.waitState(t, "admin", r.ID, ajar.StateRevoked, 60*time.Second)
	if got := metric(); got != "ajar_grants_orphaned 0" {
		t.Errorf("metric after the revoke %q, want ajar_grants_orphaned 0", got)
	}
}

// TestAttackContentTypeAndDuplicateKeys: a body sent as a form or as text is
// refused with 415 naming Content-Type, and a body naming a key twice (one
// value for whoever reads first, another for whoever reads last) is refused
// naming the key; neither creates anything.
func TestAttackContentTypeAndDuplicateKeys(t *testing.T) {
	parallel(t, costLight)
	s := startEdgeServer(t, t.TempDir(), edgePolicy)
	post := func(ct, body string) (int, string, string) {
		req, err := http.NewRequest("POST", s.URL+"/v1/requests", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.tokens["alice"])
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var env struct{ Error struct{ Field string } }
		json.Unmarshal(b, &env)
		return resp.StatusCode, env.Error.Field, string(b)
	}
	good := `{"target":"shell","duration":"30m","reason":"deploy"}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded"} {
		if status, field, body := post(ct, good); status != http.StatusUnsupportedMediaType || field != "Content-Type" {
			t.Errorf("Content-Type %q: %d %s, want 415 on Content-Type", ct, status, body)
		}
	}
	for body, field := range map[string]string{
		`{"target":"shell","duration":"30m","reason":"deploy","duration":"1h"}`:             "duration",
		`{"target":"shell","duration":"30m","reason":"a","params":{"x":"1","x":"2"}}`:       "params.x",
		`{"target":"shell","duration":"30m","reason":"deploy","reas\u006fn":"overwritten"}`: "reason",
	} {
		if status, got, b := post("application/json", body); status != http.StatusBadRequest || got != field {
			t.Errorf("%s: %d %s, want 400 on %s", body, status, b, field)
		}
	}
	if out := s.ok(t, "alice", "requests", "--mine", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("refused bodies created requests:\n%s", out)
	}
	if status, _, body := post("application/json; charset=utf-8", good); status != http.StatusCreated {
		t.Errorf("a proper body: %d %s", status, body)
	}
}

// TestAttackDevWithConfig: --dev on a real policy would write a token for
// every user, admins included, to a file and accept test-only switches. It is
// refused, writing nothing, unless --unsafe-dev-config says it is meant, and
// then it warns.
func TestAttackDevWithConfig(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(edgePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "AJAR_MASTER_KEY=", "AJAR_DATABASE_URL=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--unsafe-dev-config") || !strings.Contains(string(out), "admins included") {
		t.Errorf("--dev with --config: err %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data, "dev-tokens.env")); !os.IsNotExist(err) {
		t.Errorf("the refused start wrote tokens (%v)", err)
	}
	s := startServer(t, data, "--config", cfg, "--dev", "--unsafe-dev-config")
	if !strings.Contains(s.logs(), "WARNING: DEV MODE ON POLICY") {
		t.Errorf("no warning for dev mode on a policy file:\n%s", s.logs())
	}
}
