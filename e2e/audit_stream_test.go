package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar/audit"
)

// TestAuditStreamAdminsOnly: the whole log in one stream (GET
// /v1/audit/stream) is for admins: a requester, or no token, gets an error and
// not one event; the admin's stream verifies, as `ajar audit verify` does.
func TestAuditStreamAdminsOnly(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	for i := range 2 {
		s.request(t, "alice", "request", "demo-ssh", "--for", "1m", "--reason", fmt.Sprintf("stream %d", i),
			"--param", "source_ip=127.0.0.1")
	}
	for _, user := range []string{"alice", ""} {
		status, body := s.httpDo(t, user, "GET", "/v1/audit/stream", "")
		if status == 200 || bytes.Contains(body, []byte("request.created")) || !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("%q: GET /v1/audit/stream = %d %s, want an error", user, status, body)
		}
	}
	status, body := s.httpDo(t, "admin", "GET", "/v1/audit/stream", "")
	if status != 200 {
		t.Fatalf("admin: %d %s", status, body)
	}
	res, err := audit.Verify(t.Context(), audit.StreamPages(bytes.NewReader(body), 0))
	n := len(s.auditEvents(t))
	if err != nil || res.Events < 4 || res.Events > int64(n) {
		t.Fatalf("the admin's stream: %+v, %v (log has %d events)", res, err, n)
	}
	if out := s.ok(t, "admin", "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: %q", out)
	}
}
