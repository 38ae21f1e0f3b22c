package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// auditNextPage is the command line "ajar audit" prints on stderr for a search's
// next page, without "ajar", or nil when there is none.
func auditNextPage(t *testing.T, stderr string) []string {
	t.Helper()
	_, line, ok := strings.Cut(stderr, "the next page: ajar ")
	if !ok {
		return nil
	}
	line, _, _ = strings.Cut(line, "\n")
	return strings.Fields(line) // the test's values are plain words
}

// TestAuditSearch: a search flag makes "ajar audit" a search: one page newest
// first, and on stderr the command for the next page, which, followed, prints
// every match once and then stops.
func TestAuditSearch(t *testing.T) {
	core := newFakeCore()
	for i := int64(1); i <= 12; i++ {
		action := "request.created"
		if i%3 == 0 {
			action = "approval.recorded"
		}
		core.events = append(core.events, ajar.AuditEvent{Seq: i, Time: testTime, Actor: "alice@example.com", Action: action, Subject: "r1"})
	}
	url := startServer(t, core)

	var seqs []int64
	args := []string{"audit", "--action", "request.", "--user", "alice@example.com", "--limit", "3", "-o", "json"}
	for page := 0; args != nil; page++ {
		if page > 5 {
			t.Fatalf("paging does not end; last args %q", args)
		}
		r := runCLI(t, url, args...)
		r.want(t, exitOK)
		var events []ajar.AuditEvent
		if err := json.Unmarshal([]byte(r.stdout), &events); err != nil {
			t.Fatalf("page %d is not a JSON array: %v\n%s", page, err, r.stdout)
		}
		for _, e := range events {
			seqs = append(seqs, e.Seq)
		}
		args = auditNextPage(t, r.stderr)
		if page == 0 && !strings.Contains(r.stderr, "--before 8") {
			t.Errorf("first page's hint: %q", r.stderr)
		}
	}
	if want := []int64{11, 10, 8, 7, 5, 4, 2, 1}; !slices.Equal(seqs, want) {
		t.Errorf("pages printed %v, want %v (newest first, each once)", seqs, want)
	}
	core.locked(func() {
		q := core.searches[0]
		if q.Action != "request." || q.User != "alice@example.com" || q.Limit != 3 || q.Before != 0 {
			t.Errorf("first search %+v", q)
		}
		if len(core.filters) != 0 {
			t.Errorf("a search listed the log: %+v", core.filters)
		}
		core.searches = nil
	})

	// --since 24h is that long before now; the hint names it as a time.
	start := time.Now()
	r := runCLI(t, url, "audit", "--since", "24h", "--until", "2h", "--target", "prod-web", "--request", "r1", "--limit", "2")
	end := time.Now()
	r.want(t, exitOK, "the next page: ajar audit --request r1 --target prod-web --since ")
	core.locked(func() {
		q := core.searches[0]
		if q.From.Before(start.Add(-24*time.Hour).Truncate(time.Second)) || q.From.After(end.Add(-24*time.Hour)) ||
			q.To.Before(start.Add(-2*time.Hour).Truncate(time.Second)) || q.To.After(end.Add(-2*time.Hour)) {
			t.Errorf("since %v until %v, want 24h and 2h before %v", q.From, q.To, start)
		}
		if q.Target != "prod-web" || q.Request != "r1" || q.Limit != 2 {
			t.Errorf("search %+v", q)
		}
	})
	if !regexp.MustCompile(`--since \d{4}-\d\d-\d\dT[0-9:.]+Z --until \d{4}-\d\d-\d\dT[0-9:.]+Z --limit 2 --before 11\n`).MatchString(r.stderr) {
		t.Errorf("hint %q: want absolute times and the next before", r.stderr)
	}
	// The table: a header, then the newest first.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") || !strings.HasPrefix(lines[1], "12 ") || !strings.HasPrefix(lines[2], "11 ") {
		t.Errorf("table:\n%s", r.stdout)
	}
	// An RFC 3339 time is taken as it is; the last page prints no hint.
	r = runCLI(t, url, "audit", "--since", "2026-01-02T15:04:05+01:00", "--limit", "20")
	r.want(t, exitOK)
	if strings.Contains(r.stderr, "next page") {
		t.Errorf("the last page has a hint: %q", r.stderr)
	}
	core.locked(func() {
		if q := core.searches[len(core.searches)-1]; !q.From.Equal(time.Date(2026, 1, 2, 14, 4, 5, 0, time.UTC)) {
			t.Errorf("since = %v", q.From)
		}
	})
	// Without a search flag, audit lists the log in seq order as before.
	r = runCLI(t, url, "audit", "--request", "r1", "-o", "json")
	r.want(t, exitOK)
	var events []ajar.AuditEvent
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil || len(events) != 12 || events[0].Seq != 1 {
		t.Errorf("listing: %v\n%s", err, r.stdout)
	}
}

// TestAuditSearchUsage: bad search flags are usage errors naming the flag,
// and reach no server.
func TestAuditSearchUsage(t *testing.T) {
	core := newFakeCore()
	url := startServer(t, core)
	for _, tt := range []struct {
		args []string
		flag string
	}{
		{[]string{"--limit", "5"}, "--limit"},
		{[]string{"--user", ""}, "--user"},
		{[]string{"--target", " "}, "--target"},
		{[]string{"--action", ""}, "--action"},
		{[]string{"--since", "yesterday"}, "--since"},
		{[]string{"--since", "-24h"}, "--since"},
		{[]string{"--since", "0d"}, "--since"},
		{[]string{"--until", "2026-13-01T00:00:00Z"}, "--until"},
		{[]string{"--since", "1h", "--until", "2h"}, "--until"},
		{[]string{"--before", "0"}, "--before"},
		{[]string{"--user", "a", "--limit", "0"}, "--limit"},
		{[]string{"--user", "a", "--limit", "10001"}, "--limit"},
	} {
		r := runCLI(t, url, append([]string{"audit"}, tt.args...)...)
		r.want(t, exitUsage, fmt.Sprintf("(field: %s)", tt.flag))
	}
	if calls := core.Calls(); len(calls) != 0 {
		t.Errorf("usage errors reached the server: %v", calls)
	}
	// Someone who may not list the whole log is shown the search.
	core.locked(func() {
		core.err = ajar.Errorf(ajar.EFORBIDDEN, "only admins can read the whole audit log; name a request")
	})
	r := runCLI(t, url, "audit")
	if r.code == exitOK || !strings.Contains(r.stderr, "only admins") || !strings.Contains(r.stderr, "ajar audit --since 24h") {
		t.Errorf("forbidden listing: exit %d, stderr %q", r.code, r.stderr)
	}
}
