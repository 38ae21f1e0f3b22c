package broker

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/store/sqlite"
)

const sshTestPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: erin@example.com, groups: [engineers]}
  - {id: node-1@example.com, groups: [web-hosts]}
  - {id: node-2@example.com, groups: [db-hosts]}
admins: [alice@example.com]
targets:
  web:
    provider: ssh-cert
    config: {principals: [ubuntu], source_address: request, nodes: [group:web-hosts]}
  db:
    provider: ssh-cert
    config: {principals: [postgres], nodes: [group:db-hosts]}
  keys:
    provider: ssh-cert
    config: {principals: [deploy], mode: authorized-keys, nodes: [group:web-hosts]}
  web-admin:
    provider: ssh-cert
    config: {principals: [root], nodes: [node-1@example.com]}
policies:
  - name: ssh
    targets: [web, db, keys, web-admin]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 2h
    approval:
      timeout: 10m
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("10m")'
`

type sshEnv struct {
	*env
	ca *sshcert.CA
}

// newSSHEnv is a broker with the real ssh-cert provider and CA.
func newSSHEnv(t *testing.T) *sshEnv {
	t.Helper()
	pol, err := policy.Parse([]byte(sshTestPolicy), provider.CheckTarget)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := sshcert.LoadOrCreateCA(t.Context(), ajar.StoreKeys(st), mustMasterKey(t))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]provider.Target{}
	for _, name := range pol.TargetNames() {
		tg, _ := pol.Target(name)
		targets[name] = provider.Target{Provider: tg.Provider, Config: tg.Config}
	}
	provs, err := provider.NewSet(targets, provider.Deps{SSHCA: ca})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, Policy: pol, Providers: provs, Now: clk.Now, SSHCA: ca.AuthorizedKey})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]ajar.User{}
	for _, u := range pol.Users() {
		users[u.ID[:len(u.ID)-len("@example.com")]] = u
	}
	return &sshEnv{env: &env{svc: svc, store: st, clock: clk, users: users}, ca: ca}
}

func newPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// access asks for SSH access to target as user with a new key.
func (e *sshEnv) access(t *testing.T, user, target, dur string, params map[string]string) *SSHAccessOutput {
	t.Helper()
	out, err := e.svc.SSHAccess(t.Context(), e.users[user], SSHAccessInput{
		Target: target, Duration: dur, Reason: "test", Params: params, PublicKey: newPublicKey(t),
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
	e.advance(t, 5*time.Minute-minReuseLeft+time.Second)
	late := e.access(t, "alice", "web", "5m", src)
	if late.Reused || late.Request.ID == first.Request.ID {
		t.Fatalf("reused a request with less than %s left", minReuseLeft)
	}

	// A pending request is found again rather than duplicated, without a certificate.
	p1 := e.access(t, "alice", "db", "1h", nil)
	p2 := e.access(t, "alice", "db", "1h", nil)
	if p1.Request.State != ajar.StatePending || p1.Cert != nil || !p2.Reused || p2.Request.ID != p1.Request.ID {
		t.Fatalf("pending: %+v then %+v", p1, p2)
	}

	// Bad input stores nothing.
	before, _ := e.svc.ListRequests(ctx, e.users["alice"], ListInput{Mine: true})
	_, err := e.svc.SSHAccess(ctx, e.users["alice"], SSHAccessInput{Target: "db", Duration: "5m", PublicKey: "ssh-ed25519 nope"})
	if ajar.ErrorField(err) != "public_key" {
		t.Fatalf("bad key: %v", err)
	}
	_, err = e.svc.SSHAccess(ctx, e.users["alice"], SSHAccessInput{Target: "nope"})
	wantCode(t, err, ajar.ENOTFOUND)
	_, err = e.svc.SSHAccess(ctx, e.users["node-1"], SSHAccessInput{Target: "web"})
	wantCode(t, err, ajar.EFORBIDDEN)
	after, _ := e.svc.ListRequests(ctx, e.users["alice"], ListInput{Mine: true})
	if len(after.Requests) != len(before.Requests) {
		t.Fatalf("refused access stored %d requests", len(after.Requests)-len(before.Requests))
	}
}

func mustMasterKey(t *testing.T) *keys.MasterKey {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	mk, err := keys.NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// TestSSHAccessSkipsScheduled: a request approved (or pending) for a start later
// is not reused, since waiting on it would wait until it starts; a new request is
// made with the caller's duration and reason, and the skipped one is named.
func TestSSHAccessSkipsScheduled(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	start := e.clock.Now().Add(20 * time.Hour)
	later, err := e.svc.CreateRequest(ctx, e.users["alice"], CreateInput{
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
