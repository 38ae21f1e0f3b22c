package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/policy"
)

func TestSinksFromPolicy(t *testing.T) {
	src := `
users: [{id: a@example.com}]
targets: {t: {provider: x}}
policies:
  - {name: r, targets: [t], requesters: [a@example.com], default_duration: 1m, max_duration: 1m, approval: {auto_approve: 'true'}}
notifications:
  - {name: hook, type: webhook, url: 'https://hooks.example.com/ajar', secret_env: HOOK_SECRET, events: [breakglass.used]}
  - {name: chat, type: slack, url_env: SLACK_URL}
  - {name: log, type: log}
`
	p, err := policy.Parse([]byte(src), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOOK_SECRET": "s", "SLACK_URL": "https://hooks.slack.com/services/T/B/x"}
	sinks, err := sinksFromPolicy(p, func(k string) string { return env[k] }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(sinks) != 3 || sinks[0].Name() != "hook" || !sinks[0].Wants(policy.EventBreakglassUsed) || sinks[0].Wants(policy.EventRequestCreated) ||
		!sinks[1].Wants(policy.EventRequestCreated) {
		t.Fatalf("sinks: %+v", sinks)
	}
	if sl := sinks[1].(*notify.Slack); sl.URL != env["SLACK_URL"] {
		t.Errorf("slack URL %q", sl.URL)
	}
	for k, want := range map[string]string{"HOOK_SECRET": "HOOK_SECRET (secret_env) is not set", "SLACK_URL": "SLACK_URL (url_env) is not set"} {
		saved := env[k]
		delete(env, k)
		_, err := sinksFromPolicy(p, func(k string) string { return env[k] }, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("without %s: %v", k, err)
		}
		env[k] = saved
	}
	env["SLACK_URL"] = "ftp://x"
	if _, err := sinksFromPolicy(p, func(k string) string { return env[k] }, nil); err == nil || !strings.Contains(err.Error(), "notifications[1] (chat)") {
		t.Errorf("bad URL in the environment: %v", err)
	}
}
