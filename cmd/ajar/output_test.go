package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden pins the human output of the listing commands. Run with -update after
// an intended change and review the diff.
func TestGolden(t *testing.T) {
	core := newFakeCore()
	core.events = []ajar.AuditEvent{
		{Seq: 1, Time: testTime, Actor: "alice@example.com", Action: "request.created", Subject: "r1", Details: json.RawMessage(`{"target": "prod-web"}`)},
		{Seq: 2, Time: testTime.Add(time.Minute), Actor: "bob@example.com", Action: "request.approved", Subject: "r1"},
	}
	url := startServer(t, core)
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"show", []string{"show", "r1"}},
		{"show-json", []string{"show", "r1", "-o", "json"}},
		{"requests", []string{"requests"}},
		{"targets", []string{"targets"}},
		{"audit", []string{"audit"}},
		{"whoami", []string{"whoami"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			env := &cliEnv{
				stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
				getenv:       func(string) string { return "" },
				now:          func() time.Time { return testTime.Add(10 * time.Minute) },
				pollInterval: time.Millisecond,
			}
			if code := env.execute(t.Context(), append(tt.args, "--server", url, "--token", "alice-token")); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			// The server's URL changes with every run.
			got := strings.ReplaceAll(out.String(), url, "http://SERVER")
			out.Reset()
			out.WriteString(got)
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out.String() != string(want) {
				t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, out.String(), want)
			}
		})
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcödé": "plain text, ünïcödé",
		"a\tb\nc":             `a\tb\nc`,
		"\x1b[31mred":         `\x1b[31mred`,
		"evil\u202egnp.exe":   `evil\u202egnp.exe`,
		"bad\xffutf8":         `bad\ufffdutf8`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRelative(t *testing.T) {
	now := testTime
	for d, want := range map[time.Duration]string{
		0:                               "now",
		29*time.Minute + 59*time.Second: "in 29m",
		-3 * time.Minute:                "3m ago",
		2 * time.Hour:                   "in 2h",
		26*time.Hour + 5*time.Minute:    "in 26h5m",
		-50 * 24 * time.Hour:            "50d ago",
		30 * time.Second:                "in 30s",
	} {
		if got := relative(now.Add(d), now); got != want {
			t.Errorf("relative(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{30 * time.Minute: "30m", 2 * time.Hour: "2h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestOwnMultiLineErrors checks that ajar's own multi-line errors (a policy
// file's problems) keep their line breaks while control characters in them
// are still escaped.
func TestOwnMultiLineErrors(t *testing.T) {
	err := errors.New("policy file p.yaml has 2 problem(s):\n  - users[1].id: bad\n  - x: \x1b[2J")
	got := describeError(nil, err)
	if want := "policy file p.yaml has 2 problem(s):\n  - users[1].id: bad\n  - x: \\x1b[2J"; got != want {
		t.Errorf("describeError = %q, want %q", got, want)
	}
}

// TestCobraSuggestionsOneALine: cobra's "Did you mean this?" list prints one
// suggestion a line, indented, with no literal \t or \n, through the real error
// path; the mistyped word is still escaped.
func TestCobraSuggestionsOneALine(t *testing.T) {
	r := runRaw(t, "requestz")
	r.want(t, exitUsage, "error: unknown command \"requestz\" for \"ajar\"\n\nDid you mean this?\n  request\n  requests\nRun 'ajar --help' for usage.\n")
	if strings.Contains(r.stderr, `\t`) || strings.Contains(r.stderr, `\n`) {
		t.Errorf("escaped layout characters in %q", r.stderr)
	}
	r = runRaw(t, "request\x1b[2J")
	r.want(t, exitUsage, `unknown command "request\x1b[2J"`)
}

// TestPolicyProblemsOneALine: a policy file's problems print one a line through
// the real command (ajar serve refuses the file before opening anything).
func TestPolicyProblemsOneALine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	bad := "users:\n  - {id: a@example.com, groups: [g]}\ntargets:\n  t: {provider: testonly-counter}\n" +
		"policies:\n  - name: p\n    targets: [t, u]\n    requesters: [group:g]\n    default_duration: 5m\n    max_duration: 1m\n" +
		"    approval: {steps: [{approvers: [a@example.com], count: 1}]}\n"
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runRaw(t, "serve", "--config", file, "--data", t.TempDir())
	r.want(t, exitError, "has 3 problem(s):\n  - targets.t.config.dir: must be an absolute directory path\n  - policies[0].targets[1]: no target named \"u\"\n  - policies[0].default_duration: 5m is longer than max_duration 1m\n")
	if strings.Contains(r.stderr, `\n`) || strings.Contains(r.stderr, `\t`) {
		t.Errorf("escaped layout characters in %q", r.stderr)
	}
}
