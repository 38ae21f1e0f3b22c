package main

import (
	"net"
	"strings"
	"testing"
)

// completions runs cobra's hidden __complete command and returns the
// suggestions (without the directive line).
func completions(t *testing.T, args ...string) []string {
	t.Helper()
	r := runRaw(t, append([]string{"__complete"}, args...)...)
	if r.code != exitOK {
		t.Fatalf("__complete %q: exit %d\n%s", args, r.code, r.stderr)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") {
			out = append(out, l)
		}
	}
	return out
}

func TestDynamicCompletion(t *testing.T) {
	url := startServer(t, newFakeCore()) // r1 is active, on prod-web
	as := []string{"--server", url, "--token", "alice-token"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"request", ""}, "prod-web"},
		{[]string{"ssh", "prod"}, "prod-web"},
		{[]string{"explain", "x"}, ""},
		{[]string{"request", "prod-web", ""}, ""}, // only the first argument is a target
		{[]string{"show", ""}, "r1"},
		{[]string{"revoke", "r"}, "r1"},
		{[]string{"approve", ""}, ""}, // r1 is not pending
		{[]string{"audit", "--request", ""}, "r1"},
		{[]string{"audit", "--target", "prod"}, "prod-web"},
		{[]string{"audit", "--target", "db"}, ""},
		{[]string{"requests", "--state", "rev"}, "revoking revoked revoke_failed"},
		{[]string{"reviews", "--state", ""}, "open closed all"},
	} {
		got := strings.Join(completions(t, append(as, tc.args...)...), " ")
		if got != tc.want {
			t.Errorf("complete %q = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestCompletionOffline: with no server, or no token, there are no
// suggestions, at once and without a word on stderr.
func TestCompletionOffline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, args := range [][]string{
		{"--server", "http://" + addr, "--token", "t", "show", ""},
		{"--server", "http://" + addr, "request", ""},
	} {
		t.Setenv("AJAR_TOKEN", "")
		r := runRaw(t, append([]string{"__complete"}, args...)...)
		if r.code != exitOK || strings.TrimSpace(strings.Split(r.stdout, "\n")[0]) != ":4" {
			t.Errorf("offline %q: exit %d, stdout %q", args, r.code, r.stdout)
		}
		if strings.Contains(r.stderr, "error") || strings.Contains(r.stderr, "warning") {
			t.Errorf("offline %q printed %q", args, r.stderr)
		}
	}
}
