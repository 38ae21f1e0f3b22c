package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const testPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
targets:
  prod-web:
    provider: ssh-cert
    config: {principals: [ubuntu], source_address: request}
policies:
  - name: engineers-prod
    targets: [prod-web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    require_reason: true
    ticket_pattern: '^OPS-[0-9]+$'
    approval:
      timeout: 30m
      steps: [{approvers: [group:sre], count: 1}]
`

// TestBadInputNamesTheField checks that every bad input is refused with an error
// naming the field, over the API and the CLI, and that nothing is stored.
func TestBadInputNamesTheField(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, "--config", cfg, "--dev")
	good := map[string]any{"target": "prod-web", "duration": "1h", "reason": "fix", "ticket": "OPS-12",
		"params": map[string]string{"source_ip": "10.1.2.3"}}
	cases := []struct {
		name   string
		change map[string]any
		status int
		code   string
		field  string
	}{
		{"unknown target", map[string]any{"target": "nope"}, 404, "not_found", "target"},
		{"duration over max", map[string]any{"duration": "3h"}, 400, "invalid", "duration"},
		{"malformed duration", map[string]any{"duration": "ten minutes"}, 400, "invalid", "duration"},
		{"missing reason", map[string]any{"reason": ""}, 400, "invalid", "reason"},
		{"ticket not matching", map[string]any{"ticket": "JIRA-1"}, 400, "invalid", "ticket"},
		{"malformed source_ip", map[string]any{"params": map[string]string{"source_ip": "10.1.2"}}, 400, "invalid", "params.source_ip"},
		{"missing source_ip", map[string]any{"params": map[string]string{}}, 400, "invalid", "params.source_ip"},
		{"unknown field", map[string]any{"colour": "red"}, 400, "invalid", "colour"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]any{}
			for k, v := range good {
				in[k] = v
			}
			for k, v := range tc.change {
				in[k] = v
			}
			body, _ := json.Marshal(in)
			status, resp := s.httpDo(t, "alice", "POST", "/v1/requests", string(body))
			var env struct {
				Error struct{ Code, Message, Field string }
			}
			if err := json.Unmarshal(resp, &env); err != nil {
				t.Fatalf("error body %q: %v", resp, err)
			}
			if status != tc.status || env.Error.Code != tc.code || env.Error.Field != tc.field || env.Error.Message == "" {
				t.Errorf("got %d %+v, want %d %s field %s", status, env.Error, tc.status, tc.code, tc.field)
			}
		})
	}
	// The CLI shows the field too.
	r := s.ajar(t, "alice", "request", "prod-web", "--for", "1h", "--reason", "x", "--ticket", "JIRA-1", "--param", "source_ip=10.1.2.3")
	if r.Code != 1 || !strings.Contains(r.Stderr, "field: --ticket") {
		t.Errorf("CLI bad ticket: exit %d, stderr %q", r.Code, r.Stderr)
	}
	// Nothing was stored by any refused request; a good one goes through.
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "requests", "-o", "json")), &list); err != nil || len(list) != 0 {
		t.Fatalf("refused requests were stored: %v %d", err, len(list))
	}
	body, _ := json.Marshal(good)
	if status, resp := s.httpDo(t, "alice", "POST", "/v1/requests", string(body)); status != 201 {
		t.Fatalf("good request: %d %s", status, resp)
	}
	// No token, a bad token.
	if status, _ := s.httpDo(t, "", "GET", "/v1/requests", ""); status != 401 {
		t.Errorf("no token: %d", status)
	}
}

// TestPolicyFileProblemsAllReported starts ajar on a policy file with three
// mistakes: it refuses to start and names all three.
func TestPolicyFileProblemsAllReported(t *testing.T) {
	parallel(t, costLight)
	// Three mistakes that validation finds in one pass.
	bad := strings.NewReplacer(
		"count: 1", "count: 0",
		"targets: [prod-web]", "targets: [prod-db]",
		"principals: [ubuntu]", "principals: []",
	).Replace(testPolicy)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--config", cfg, "--data", dir, "--listen", "127.0.0.1:0", "--dev", "--unsafe-dev-config").CombinedOutput()
	if err == nil {
		t.Fatalf("ajar serve started on a bad policy file:\n%s", out)
	}
	for _, want := range []string{
		"policies[0].approval.steps[0].count",
		"policies[0].targets[0]",
		"targets.prod-web.config.principals",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not name %s:\n%s", want, out)
		}
	}
}
