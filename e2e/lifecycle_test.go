package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// TestLifecycle is the core acceptance run: auto-approval, approval by another
// user (never by oneself), a certificate with the right fields, expiry on time, and
// early revocation.
func TestLifecycle(t *testing.T) {
	parallel(t, costLong)
	keygen := requireTool(t, "ssh-keygen")
	s := startServer(t, t.TempDir())

	// A short request is auto-approved and active at once.
	short := s.request(t, "alice", "request", "demo-ssh", "--for", "10s", "--reason", "check the deploy",
		"--param", "source_ip=127.0.0.1")
	if short.State != ajar.StateActive {
		t.Fatalf("10s request is %s, want active (auto-approved)", short.State)
	}
	if short.ExpiresAt == nil {
		t.Fatal("active request has no expires_at")
	}

	// A long one waits for bob; alice cannot approve her own.
	long := s.request(t, "alice", "request", "demo-ssh", "--for", "30m", "--reason", "debug prod",
		"--param", "source_ip=127.0.0.1")
	if long.State != ajar.StatePending {
		t.Fatalf("30m request is %s, want pending", long.State)
	}
	status, body := s.httpDo(t, "alice", "POST", "/v1/requests/"+long.ID+"/approve", `{}`)
	if status != 403 {
		t.Fatalf("alice approving her own request: status %d, want 403 (%s)", status, body)
	}
	if r := s.ajar(t, "alice", "approve", long.ID); r.Code == 0 || !strings.Contains(r.Stderr, "own request") {
		t.Fatalf("CLI self-approval: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if st := s.request(t, "alice", "show", long.ID).State; st != ajar.StatePending {
		t.Fatalf("after self-approval attempts the request is %s", st)
	}
	approved := s.request(t, "bob", "approve", long.ID, "--comment", "ok")
	if approved.State != ajar.StateActive {
		t.Fatalf("after bob's approval the request is %s, want active", approved.State)
	}
	if len(approved.Approvals) != 1 || approved.Approvals[0].Approver != "bob@example.com" {
		t.Fatalf("approvals = %+v", approved.Approvals)
	}

	// A certificate for the long request carries the fields the issue names.
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	certFile := filepath.Join(dir, "id_ed25519-cert.pub")
	before := time.Now()
	s.ok(t, "alice", "ssh-cert", long.ID, "--public-key", keyFile+".pub", "--out", certFile)
	certBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certBytes)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		t.Fatalf("not a certificate: %T", pub)
	}
	caLine := strings.TrimSpace(s.ok(t, "", "ssh", "ca"))
	caKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(caLine))
	if err != nil {
		t.Fatalf("parse CA: %v", err)
	}
	full := s.request(t, "alice", "show", long.ID)
	switch {
	case cert.CertType != ssh.UserCert:
		t.Errorf("cert type %d, want user", cert.CertType)
	case cert.Serial == 0:
		t.Errorf("serial is zero")
	case !strings.Contains(cert.KeyId, long.ID) || !strings.Contains(cert.KeyId, "alice@example.com"):
		t.Errorf("key id %q does not name the request and user", cert.KeyId)
	case strings.Join(cert.ValidPrincipals, ",") != "ajar-target:demo-ssh:ajar-demo":
		t.Errorf("principals %v, want [ajar-target:demo-ssh:ajar-demo]", cert.ValidPrincipals)
	case cert.CriticalOptions["source-address"] != "127.0.0.1":
		t.Errorf("source-address %q, want 127.0.0.1", cert.CriticalOptions["source-address"])
	case int64(cert.ValidBefore) != full.ExpiresAt.Unix():
		t.Errorf("valid-before %d, want the request's expiry %d", cert.ValidBefore, full.ExpiresAt.Unix())
	case absDiff(before.Add(-time.Minute).Unix(), int64(cert.ValidAfter)) > 2:
		t.Errorf("valid-after %d is not now-1m (%d)", cert.ValidAfter, before.Add(-time.Minute).Unix())
	case string(cert.SignatureKey.Marshal()) != string(caKey.Marshal()):
		t.Errorf("certificate is not signed by the served CA")
	}
	out, err := exec.Command(keygen, "-L", "-f", certFile).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Serial: " + strconv.FormatUint(cert.Serial, 10),
		`Key ID: "` + cert.KeyId + `"`,
		"ajar-demo",
		"source-address 127.0.0.1",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, out)
		}
	}
	// bob cannot get a certificate for alice's request.
	if status, _ := s.httpDo(t, "bob", "POST", "/v1/requests/"+long.ID+"/ssh-cert",
		`{"public_key":`+strconv.Quote(strings.TrimSpace(readFile(t, keyFile+".pub")))+`}`); status != 403 {
		t.Errorf("bob getting a cert for alice's request: status %d, want 403", status)
	}

	// The 10s request expires by itself.
	ended := s.waitState(t, "alice", short.ID, ajar.StateExpired, 60*time.Second)
	// On time: never before the expiry, and soon after (the scheduler's poll is
	// 1s; the bound is loose so that a loaded machine passes too).
	if ended.EndedAt == nil || ended.EndedAt.Sub(*short.ExpiresAt) > 15*time.Second || ended.EndedAt.Before(*short.ExpiresAt) {
		t.Errorf("expired at %v, expiry %v: want within 15s after", ended.EndedAt, short.ExpiresAt)
	}
	// No certificate for an expired request.
	if r := s.ajar(t, "alice", "ssh-cert", short.ID, "--public-key", keyFile+".pub"); r.Code == 0 {
		t.Errorf("certificate issued for an expired request")
	}

	// alice revokes the long one early.
	s.ok(t, "alice", "revoke", long.ID)
	revoked := s.waitState(t, "alice", long.ID, ajar.StateRevoked, 60*time.Second)
	if revoked.EndedAt == nil || !revoked.EndedAt.Before(*revoked.ExpiresAt) {
		t.Errorf("revoked request ended at %v, expiry %v", revoked.EndedAt, revoked.ExpiresAt)
	}

	// The audit log tells the story and verifies.
	ends := map[string][]string{}
	for _, e := range s.auditEvents(t) {
		switch e.Action {
		case "request.expired", "request.revoked":
			ends[e.Subject] = append(ends[e.Subject], e.Action)
		case "approval.refused":
			if e.Subject != long.ID || e.Actor != "alice@example.com" {
				t.Errorf("refusal audited as %+v", e)
			}
		}
	}
	if strings.Join(ends[short.ID], ",") != "request.expired" || strings.Join(ends[long.ID], ",") != "request.revoked" {
		t.Errorf("end events: %v", ends)
	}
	if out := s.ok(t, "admin", "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: %q", out)
	}
	// Non-admins cannot read the whole log.
	if r := s.ajar(t, "alice", "audit"); r.Code == 0 {
		t.Errorf("alice read the whole audit log")
	}

	// Metrics count the states.
	status, metrics := s.httpDo(t, "", "GET", "/metrics", "")
	if status != 200 || !strings.Contains(string(metrics), `ajar_requests{state="revoked"} 1`) ||
		!strings.Contains(string(metrics), `ajar_requests{state="expired"} 1`) {
		t.Errorf("metrics (%d) lack request counts:\n%.2000s", status, metrics)
	}
	var list []ajar.Request
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "requests", "--mine", "-o", "json")), &list); err != nil || len(list) != 2 {
		t.Errorf("requests --mine: %v, %d requests", err, len(list))
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}
