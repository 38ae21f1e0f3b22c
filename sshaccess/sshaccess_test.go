package sshaccess_test

import (
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/sshtest"
	"github.com/ajar-dev/ajar/sshaccess"
)

// sshTestPolicy: web pins the source address, db does not; up to 10m is
// approved by the policy; node-1 is a host, no requester.
const sshTestPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: erin@example.com, groups: [engineers]}
  - {id: node-1@example.com, groups: [web-hosts]}
targets:
  web: {provider: ssh-cert, config: {principals: [ubuntu], source_address: request, nodes: [group:web-hosts]}}
  db: {provider: ssh-cert, config: {principals: [postgres]}}
policies:
  - name: ssh
    targets: [web, db]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 2h
    approval:
      steps: [{approvers: [group:engineers], count: 1}]
      auto_approve: 'request.duration <= duration("10m")'
`

type sshEnv struct {
	*sshtest.Env
	ssh *sshaccess.Service
}

// newSSHEnv is a broker with the real ssh-cert provider and CA, and
// SSHAccess over it.
func newSSHEnv(t *testing.T) *sshEnv {
	t.Helper()
	e := sshtest.New(t, sshTestPolicy)
	return &sshEnv{Env: e, ssh: sshaccess.New(e.Svc, e.Counted, e.Policy, e.Provs, e.CA.AuthorizedKey)}
}

// requests counts user's requests in the store.
func (e *sshEnv) requests(t *testing.T, user string) int {
	t.Helper()
	n := 0
	err := e.Store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		n, err = tx.CountRequests(t.Context(), ajar.RequestFilter{Requester: user + "@example.com", Limit: 1 << 20})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// access asks for SSH access to target as user with a new key.
func (e *sshEnv) access(t *testing.T, user, target, dur string, params map[string]string) *sshaccess.Output {
	t.Helper()
	out, err := e.ssh.SSHAccess(t.Context(), e.Users[user], sshaccess.Input{
		Target: target, Duration: dur, Reason: "test", Params: params, PublicKey: sshtest.PublicKey(t),
	})
	if err != nil {
		t.Fatalf("SSHAccess %s %s: %v", target, dur, err)
	}
	return out
}

var src = map[string]string{"source_ip": "127.0.0.1"}

func TestSSHAccessReuse(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	first := e.access(t, "alice", "web", "5m", src)
	if first.Reused || first.Request.State != ajar.StateActive || first.Cert == nil {
		t.Fatalf("first access: %+v", first)
	}
	// Within the window: the same request, a new certificate for the new key.
	second := e.access(t, "alice", "web", "5m", src)
	if !second.Reused || second.Request.ID != first.Request.ID || second.Cert == nil ||
		second.Cert.Info.Serial == first.Cert.Info.Serial {
		t.Fatalf("second access: reused %t, %s (first %s)", second.Reused, second.Request.ID, first.Request.ID)
	}
	// Another source address, another user, or too little time left: a new request.
	other := e.access(t, "alice", "web", "5m", map[string]string{"source_ip": "127.0.0.2"})
	erin := e.access(t, "erin", "web", "5m", src)
	if other.Reused || erin.Reused || erin.Request.ID == first.Request.ID {
		t.Fatalf("reused across params or users: %+v %+v", other, erin)
	}
	e.Advance(t, 5*time.Minute-sshaccess.MinReuseLeft+time.Second)
	late := e.access(t, "alice", "web", "5m", src)
	if late.Reused || late.Request.ID == first.Request.ID {
		t.Fatalf("reused a request with less than %s left", sshaccess.MinReuseLeft)
	}

	// A pending request is found again rather than duplicated, without a certificate.
	p1 := e.access(t, "alice", "db", "1h", nil)
	p2 := e.access(t, "alice", "db", "1h", nil)
	if p1.Request.State != ajar.StatePending || p1.Cert != nil || !p2.Reused || p2.Request.ID != p1.Request.ID {
		t.Fatalf("pending: %+v then %+v", p1, p2)
	}

	// Bad input stores nothing.
	before := e.requests(t, "alice")
	_, err := e.ssh.SSHAccess(ctx, e.Users["alice"], sshaccess.Input{Target: "db", Duration: "5m", PublicKey: "ssh-ed25519 nope"})
	if ajar.ErrorField(err) != "public_key" {
		t.Fatalf("bad key: %v", err)
	}
	if _, err = e.ssh.SSHAccess(ctx, e.Users["alice"], sshaccess.Input{Target: "nope"}); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Fatalf("unknown target: %v", err)
	}
	if _, err = e.ssh.SSHAccess(ctx, e.Users["node-1"], sshaccess.Input{Target: "web"}); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("not a requester: %v", err)
	}
	if after := e.requests(t, "alice"); after != before {
		t.Fatalf("refused access stored %d requests", after-before)
	}
}

// TestSSHAccessAtTheCertificateLimit: SSHAccess certifies through
// IssueSSHCert, so the policy's certificates_per_request (20 by default)
// refuses the 21st key for one request.
func TestSSHAccessAtTheCertificateLimit(t *testing.T) {
	e := newSSHEnv(t)
	first := e.access(t, "alice", "db", "5m", nil)
	for range 19 {
		if out := e.access(t, "alice", "db", "5m", nil); out.Request.ID != first.Request.ID {
			t.Fatalf("a new request %s", out.Request.ID)
		}
	}
	_, err := e.ssh.SSHAccess(t.Context(), e.Users["alice"], sshaccess.Input{Target: "db", Duration: "5m", PublicKey: sshtest.PublicKey(t)})
	if ajar.ErrorCode(err) != ajar.ETOOMANY {
		t.Fatalf("the 21st certificate: %v", err)
	}
}

// TestSSHAccessSkipsScheduled: a request approved (or pending) for a start later
// is not reused, since waiting on it would wait until it starts; a new request is
// made with the caller's duration and reason, and the skipped one is named.
func TestSSHAccessSkipsScheduled(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	start := e.Clock.Now().Add(20 * time.Hour)
	later, err := e.Svc.CreateRequest(ctx, e.Users["alice"], ajar.CreateInput{
		Target: "web", Duration: "5m", Reason: "tomorrow", Params: src, Start: &start,
	})
	if err != nil {
		t.Fatal(err)
	}
	if later.State != ajar.StateApproved {
		t.Fatalf("scheduled auto-approved request is %s, want approved", later.State)
	}
	now := e.access(t, "alice", "web", "5m", src)
	if now.Reused || now.Request.ID == later.ID || now.Request.State != ajar.StateActive || now.Cert == nil {
		t.Fatalf("access reused the scheduled request or is not active: %+v", now)
	}
	if len(now.Scheduled) != 1 || now.Scheduled[0].ID != later.ID {
		t.Fatalf("Scheduled = %v, want [%s]", now.Scheduled, later.ID)
	}
	// Once a usable request exists, it is reused and nothing is reported skipped.
	again := e.access(t, "alice", "web", "5m", src)
	if !again.Reused || again.Request.ID != now.Request.ID || len(again.Scheduled) != 0 {
		t.Fatalf("second access: %+v", again)
	}
}
