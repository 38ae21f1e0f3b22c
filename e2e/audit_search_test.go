package e2e

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// Audit search from the terminal (issue 14): "ajar audit --user/--target/
// --action/--since/--until" through the real binary and server, newest first,
// paged with the printed next-page command; and the attack: someone who is not
// an admin searching for another user's events, or naming their request,
// finds nothing of them.

// auditSearchPolicy: alice and carol request; bob approves; admin reads the
// whole log.
const auditSearchPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: carol@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
targets:
  shell: {provider: ssh-cert, config: {principals: [ubuntu]}}
  db: {provider: ssh-cert, config: {principals: [postgres]}}
policies:
  - name: engineers
    targets: [shell, db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 1h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`

// auditSearch runs "ajar audit ARGS -o json" as user and returns the events
// and the next page's arguments (nil on the last page). The events must be
// newest first.
func (s *server) auditSearch(t *testing.T, user string, args ...string) ([]ajar.AuditEvent, []string) {
	t.Helper()
	r := s.ajar(t, user, append(append([]string{"audit"}, args...), "-o", "json")...)
	if r.Code != 0 {
		t.Fatalf("ajar audit %v as %s: exit %d\n%s", args, user, r.Code, r.Stderr)
	}
	var evs []ajar.AuditEvent
	if err := json.Unmarshal([]byte(r.Stdout), &evs); err != nil {
		t.Fatalf("ajar audit %v: not a JSON array: %v\n%s", args, err, r.Stdout)
	}
	if !slices.IsSortedFunc(evs, func(a, b ajar.AuditEvent) int { return int(b.Seq - a.Seq) }) {
		t.Fatalf("ajar audit %v: not newest first: %v", args, auditSearchSeqs(evs))
	}
	var next []string
	if _, line, ok := strings.Cut(r.Stderr, "the next page: ajar audit "); ok {
		line, _, _ = strings.Cut(line, "\n")
		next = strings.Fields(line)
		next = slices.DeleteFunc(next, func(s string) bool { return s == "-o" || s == "json" })
	}
	return evs, next
}

func auditSearchSeqs(evs []ajar.AuditEvent) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func auditSearchSubjects(evs []ajar.AuditEvent) map[string]bool {
	m := map[string]bool{}
	for _, e := range evs {
		m[e.Subject] = true
	}
	return m
}

// TestAuditSearchCLI: an admin asks "everything about target db", "what did
// alice do", "what did bob approve", by time, and pages; carol, who is not an
// admin, searching for alice's events by user, target, action or request id
// finds none, through the CLI and the API alike.
func TestAuditSearchCLI(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(auditSearchPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, "--config", cfg, "--dev")

	aliceShell := s.request(t, "alice", "request", "shell", "--reason", "deploy")
	aliceDB := s.request(t, "alice", "request", "db", "--reason", "migration")
	carolDB := s.request(t, "carol", "request", "db", "--reason", "report")
	s.request(t, "bob", "approve", aliceShell.ID)
	s.waitState(t, "alice", aliceShell.ID, ajar.StateActive, 60*time.Second)
	log := s.auditEvents(t)

	// Everything about target db: alice's and carol's db requests, nothing else.
	evs, _ := s.auditSearch(t, "admin", "--target", "db")
	if got := auditSearchSubjects(evs); len(got) != 2 || !got[aliceDB.ID] || !got[carolDB.ID] {
		t.Errorf("--target db found subjects %v, want %s and %s", got, aliceDB.ID, carolDB.ID)
	}
	// What alice did or was done on her requests: bob's approval included, carol's request not.
	evs, _ = s.auditSearch(t, "admin", "--user", "alice@example.com")
	if got := auditSearchSubjects(evs); !got[aliceShell.ID] || !got[aliceDB.ID] || got[carolDB.ID] {
		t.Errorf("--user alice found subjects %v", got)
	}
	want := 0
	for _, e := range log {
		if e.Subject == aliceShell.ID || e.Subject == aliceDB.ID || e.Actor == "alice@example.com" {
			want++
		}
	}
	if len(evs) != want {
		t.Errorf("--user alice found %d events, the log has %d of hers", len(evs), want)
	}
	// What bob approved.
	evs, _ = s.auditSearch(t, "admin", "--user", "bob@example.com", "--action", "request.approved")
	if len(evs) != 1 || evs[0].Subject != aliceShell.ID || evs[0].Actor != "bob@example.com" {
		t.Errorf("bob's approvals: %+v", evs)
	}
	// By time: everything is from the last hour, nothing from before it.
	if evs, _ = s.auditSearch(t, "admin", "--since", "1h", "--action", "request."); len(evs) < 4 {
		t.Errorf("--since 1h found %d request events", len(evs))
	}
	if evs, _ = s.auditSearch(t, "admin", "--until", "1h"); len(evs) != 0 {
		t.Errorf("--until 1h found %v", auditSearchSeqs(evs))
	}
	if evs, _ = s.auditSearch(t, "admin", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(evs) != 0 {
		t.Errorf("--since in an hour found %v", auditSearchSeqs(evs))
	}

	// Paging one event at a time by the printed command covers every match once.
	all, _ := s.auditSearch(t, "admin", "--user", "alice@example.com")
	var paged []ajar.AuditEvent
	args := []string{"--user", "alice@example.com", "--limit", "1"}
	for page := 0; args != nil; page++ {
		if page > len(all) {
			t.Fatalf("paging does not end: %v", args)
		}
		var evs []ajar.AuditEvent
		evs, args = s.auditSearch(t, "admin", args...)
		paged = append(paged, evs...)
	}
	if !slices.Equal(auditSearchSeqs(paged), auditSearchSeqs(all)) {
		t.Errorf("paged %v, want %v", auditSearchSeqs(paged), auditSearchSeqs(all))
	}

	// The attack: carol is no admin and can see none of alice's requests.
	for _, args := range [][]string{
		{"--user", "alice@example.com"},
		{"--target", "shell"},
		{"--action", "request."},
		{"--since", "1h"},
		{"--user", "bob@example.com"},
	} {
		evs, _ := s.auditSearch(t, "carol", args...)
		if got := auditSearchSubjects(evs); got[aliceShell.ID] || got[aliceDB.ID] || len(got) > 1 {
			t.Errorf("carol's search %v found subjects %v: events of requests she cannot see", args, got)
		}
	}
	if evs, _ := s.auditSearch(t, "carol", "--action", "request.created"); len(evs) != 1 || evs[0].Subject != carolDB.ID {
		t.Errorf("carol's search for her own request found %+v", evs)
	}
	if r := s.ajar(t, "carol", "audit", "--request", aliceDB.ID, "--action", "request."); r.Code == 0 || strings.Contains(r.Stdout, "request.created") {
		t.Errorf("carol named alice's request: exit %d\n%s", r.Code, r.Stdout)
	}
	status, body := s.httpDo(t, "carol", "GET", "/v1/audit?user="+url.QueryEscape("alice@example.com"), "")
	if status != 200 || strings.Contains(string(body), aliceShell.ID) || strings.Contains(string(body), aliceDB.ID) {
		t.Errorf("carol's API search for alice: %d %s", status, body)
	}
	// Bob approves alice's requests, so he sees them, as GET /v1/requests/ID lets him.
	if evs, _ := s.auditSearch(t, "bob", "--user", "alice@example.com"); !auditSearchSubjects(evs)[aliceShell.ID] {
		t.Errorf("bob, alice's approver, found %v", auditSearchSubjects(evs))
	}

	// Bad input is refused at the edge, naming the parameter.
	for _, tt := range []struct{ query, field string }{
		{"since=yesterday", "since"},
		{"user=alice&limit=10001", "limit"},
		{"before=0", "before"},
		{"user=alice&after=1", "after"},
	} {
		status, body := s.httpDo(t, "admin", "GET", "/v1/audit?"+tt.query, "")
		var e struct {
			Error struct {
				Field string `json:"field"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &e); status != 400 || e.Error.Field != tt.field {
			t.Errorf("GET /v1/audit?%s = %d %s, want 400 naming %s", tt.query, status, body, tt.field)
		}
	}
}
