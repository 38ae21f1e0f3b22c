package sshaccess

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/store/sqlite"
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

// clock is a settable clock shared by the store and the broker.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

type sshEnv struct {
	svc   *broker.Service
	ssh   *Service
	store *sqlite.Store
	clock *clock
	users map[string]ajar.User
}

// newSSHEnv is a broker with the real ssh-cert provider and CA, and
// SSHAccess over it.
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
	mk, err := keys.NewMasterKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sshcert.LoadOrCreateCA(t.Context(), ajar.StoreKeys(st), mk)
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
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: provs, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]ajar.User{}
	for _, u := range pol.Users() {
		users[strings.TrimSuffix(u.ID, "@example.com")] = u
	}
	return &sshEnv{svc: svc, ssh: New(svc, st, pol, provs), store: st, clock: clk, users: users}
}

// advance moves the clock and runs everything that became due.
func (e *sshEnv) advance(t *testing.T, d time.Duration) {
	t.Helper()
	e.clock.mu.Lock()
	e.clock.t = e.clock.t.Add(d)
	e.clock.mu.Unlock()
	if _, err := e.svc.RunDue(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// requests counts user's requests in the store.
func (e *sshEnv) requests(t *testing.T, user string) int {
	t.Helper()
	n := 0
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		n, err = tx.CountRequests(t.Context(), ajar.RequestFilter{Requester: user + "@example.com", Limit: 1 << 20})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
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
func (e *sshEnv) access(t *testing.T, user, target, dur string, params map[string]string) *Output {
	t.Helper()
	out, err := e.ssh.SSHAccess(t.Context(), e.users[user], Input{
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
	before := e.requests(t, "alice")
	_, err := e.ssh.SSHAccess(ctx, e.users["alice"], Input{Target: "db", Duration: "5m", PublicKey: "ssh-ed25519 nope"})
	if ajar.ErrorField(err) != "public_key" {
		t.Fatalf("bad key: %v", err)
	}
	if _, err = e.ssh.SSHAccess(ctx, e.users["alice"], Input{Target: "nope"}); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Fatalf("unknown target: %v", err)
	}
	if _, err = e.ssh.SSHAccess(ctx, e.users["node-1"], Input{Target: "web"}); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("not a requester: %v", err)
	}
	if after := e.requests(t, "alice"); after != before {
		t.Fatalf("refused access stored %d requests", after-before)
	}
}

// TestSSHAccessAtTheCertificateLimit: SSHAccess certifies through the core's
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
	_, err := e.ssh.SSHAccess(t.Context(), e.users["alice"], Input{Target: "db", Duration: "5m", PublicKey: newPublicKey(t)})
	if ajar.ErrorCode(err) != ajar.ETOOMANY {
		t.Fatalf("the 21st certificate: %v", err)
	}
}
