package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// TestCrashRevokesOnRestart kills the server with SIGKILL while grants are
// active and restarts it with its clock past their expiry: every grant is
// revoked on restart from what the store holds, the access itself is removed
// (the testonly-counter provider's markers, counted outside the process), and
// the audit log holds exactly one end event per request. The windows are long
// (10m) so that no grant can expire before the kill however loaded the machine
// is; the restarted server's clock (AJAR_TEST_CLOCK_OFFSET) is what passes them.
func TestCrashRevokesOnRestart(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	counterDir := t.TempDir()
	config := replicaPolicy(t, `storage: {driver: sqlite, dsn: "`+filepath.Join(dir, "ajar.db")+`"}`, `{dir: "`+counterDir+`"}`)
	env := []string{"AJAR_MASTER_KEY=" + randomMasterKey(), "AJAR_TESTONLY_PROVIDERS=1"}
	s := startReplica(t, "before", config, env...)
	var ids []string
	var latest time.Time
	for i := range 4 {
		r := s.request(t, "alice", "request", "counted", "--for", "10m", "--reason", fmt.Sprintf("crash %d", i))
		if r.State != ajar.StateActive {
			t.Fatalf("request %d is %s, want active", i, r.State)
		}
		ids = append(ids, r.ID)
		latest = *r.ExpiresAt
	}
	s.kill()
	killedAt := time.Now()
	for _, id := range ids {
		if c := readCounter(t, counterDir)[id]; c == nil || !c.active || len(c.revokes) != 0 {
			t.Fatalf("request %s before the restart: provider counts %+v, want its access in place", id, c)
		}
	}

	// Restarted 15 minutes later by its clock: every window has closed.
	s2 := startReplica(t, "after", config, append(env, "AJAR_TEST_CLOCK_OFFSET=15m")...)
	for _, id := range ids {
		r := s2.waitState(t, "alice", id, ajar.StateExpired, 60*time.Second)
		if r.EndedAt.Before(latest) {
			t.Errorf("%s ended at %v, before the last expiry %v", id, r.EndedAt, latest)
		}
	}
	counts := readCounter(t, counterDir)
	for _, id := range ids {
		c := counts[id]
		if c == nil || c.active || len(c.revokes) != 1 {
			t.Fatalf("request %s after the restart: provider counts %+v, want its access removed once", id, c)
		}
		if c.revokes[0].Before(killedAt) {
			t.Errorf("request %s was revoked at %v, before the kill at %v", id, c.revokes[0], killedAt)
		}
	}
	ends := map[string]int{}
	for _, e := range s2.auditEvents(t) {
		if endActions[e.Action] {
			ends[e.Subject]++
		}
	}
	for _, id := range ids {
		if ends[id] != 1 {
			t.Errorf("request %s has %d end events, want 1", id, ends[id])
		}
	}
	if out := s2.ok(t, "admin", "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify after crash: %q", out)
	}
}

// TestAuditVerifyDetectsTampering edits, deletes and swaps rows of the audit table
// with the sqlite3 tool (dropping the append-only triggers first, as an attacker
// with the file would) and checks that verification names the event each time, and
// that a saved checkpoint catches a truncated log.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	parallel(t, costLight)
	sqlite3 := requireTool(t, "sqlite3")
	dir := t.TempDir()
	s := startServer(t, dir)
	for i := range 3 {
		s.request(t, "alice", "request", "demo-ssh", "--for", "1m", "--reason", fmt.Sprintf("audit %d", i),
			"--param", "source_ip=127.0.0.1")
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(cpFile, []byte(s.ok(t, "admin", "audit", "checkpoint")), 0o644); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(s.okHTTP(t, "/v1/audit/key"))
	n := len(s.auditEvents(t))
	if n < 8 {
		t.Fatalf("only %d audit events", n)
	}
	if out := s.ok(t, "admin", "audit", "verify", "--checkpoint", cpFile); out != fmt.Sprintf("ok: %d events\n", n) {
		t.Fatalf("verify of an untouched log: %q, want ok: %d events", out, n)
	}
	s.stop()
	db := filepath.Join(dir, "ajar.db")
	if out := s.ok(t, "", "audit", "verify", "--db", db, "--checkpoint", cpFile, "--key", key); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("offline verify of an untouched log: %q", out)
	}

	const unlock = "DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_events_no_delete; DROP TRIGGER IF EXISTS audit_events_in_sequence;"
	cases := []struct {
		name, sql, want string
	}{
		{"edit", "UPDATE audit_events SET actor = 'mallory@example.com' WHERE seq = 3;", "event 3"},
		{"edit details", "UPDATE audit_events SET details = CAST('{\"reason\":\"nothing to see\"}' AS BLOB) WHERE seq = 5;", "event 5"},
		{"delete", "DELETE FROM audit_events WHERE seq = 4;", "event 4"},
		{"swap", "UPDATE audit_events SET seq = -1 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = -1;", "event 2"},
		{"truncate", fmt.Sprintf("DELETE FROM audit_events WHERE seq >= %d;", n-1), "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			copyDB := filepath.Join(t.TempDir(), "ajar.db")
			copyFile(t, db, copyDB)
			if out, err := exec.Command(sqlite3, copyDB, unlock+tc.sql).CombinedOutput(); err != nil {
				t.Fatalf("sqlite3: %v\n%s", err, out)
			}
			r := s.ajar(t, "", "audit", "verify", "--db", copyDB, "--checkpoint", cpFile, "--key", key)
			if r.Code != 1 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("verify after %s: exit %d, stderr %q, want exit 1 naming %q", tc.name, r.Code, r.Stderr, tc.want)
			}
		})
	}

	// The same through the API of a server running on a tampered store.
	if out, err := exec.Command(sqlite3, db, unlock+"UPDATE audit_events SET action = 'request.nothing' WHERE seq = 6;").CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	s2 := startServer(t, dir)
	r := s2.ajar(t, "admin", "audit", "verify")
	if r.Code != 1 || !strings.Contains(r.Stderr, "event 6") {
		t.Errorf("online verify of an edited log: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

func (s *server) okHTTP(t testing.TB, path string) string {
	t.Helper()
	status, body := s.httpDo(t, "", "GET", path, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return string(body)
}

// copyFile copies a SQLite database with its WAL, if any.
func copyFile(t testing.TB, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(from + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
