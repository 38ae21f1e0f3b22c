// Package sshtest is a test helper for the SSH packages above the core
// (sshaccess, sshhost): a broker over SQLite with the real ssh-cert provider
// and CA, on a settable clock. Only tests import it.
package sshtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"sync/atomic"
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

// Clock is a settable clock shared by the store and the core.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Env is the core over one store with the providers of a policy.
type Env struct {
	Svc    *broker.Service
	Store  *sqlite.Store
	Policy *policy.Policy
	Provs  *provider.Set
	Clock  *Clock
	Users  map[string]ajar.User // by the id's part before "@example.com"
	CA     *sshcert.CA
	// Counted is Store counting its write transactions (Updates): the core
	// writes through it, and so should what a test builds over the core.
	Counted *CountingStore
}

// CountingStore counts the Update calls to its Store.
type CountingStore struct {
	ajar.Store
	n atomic.Int64
}

// Update counts the call and runs it.
func (c *CountingStore) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	c.n.Add(1)
	return c.Store.Update(ctx, fn)
}

// Updates returns how many Updates ran so far.
func (c *CountingStore) Updates() int64 { return c.n.Load() }

// New returns the core enforcing the policy src, its store closed when the
// test ends.
func New(t *testing.T, src string) *Env {
	t.Helper()
	pol, err := policy.Parse([]byte(src), provider.CheckTarget)
	if err != nil {
		t.Fatal(err)
	}
	clk := &Clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := sshcert.LoadOrCreateCA(t.Context(), ajar.StoreKeys(st), MasterKey(t))
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
	counted := &CountingStore{Store: st}
	svc, err := broker.New(broker.Config{Store: counted, Policy: pol, Providers: provs, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]ajar.User{}
	for _, u := range pol.Users() {
		users[strings.TrimSuffix(u.ID, "@example.com")] = u
	}
	return &Env{Svc: svc, Store: st, Policy: pol, Provs: provs, Clock: clk, Users: users, CA: ca, Counted: counted}
}

// Advance moves the clock and runs everything that became due.
func (e *Env) Advance(t *testing.T, d time.Duration) {
	t.Helper()
	e.Clock.Add(d)
	if _, err := e.Svc.RunDue(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// MasterKey is a random master key.
func MasterKey(t *testing.T) *keys.MasterKey {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	mk, err := keys.NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// PublicKey is a fresh public key in authorized_keys format, one line.
func PublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
