package readmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// The read model's tests run on a real broker.Service over SQLite, as
// broker's own tests do (broker/broker_test.go, from which these helpers
// are copied).

const testPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: carol@example.com, groups: [sre]}
  - {id: dave@example.com, groups: [leads]}
  - {id: erin@example.com, groups: [engineers, sre]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  web: {provider: fake}
  db: {provider: fake}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    require_reason: true
    approval:
      timeout: 10m
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("5m")'
  - name: db
    targets: [db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      timeout: 10m
      steps:
        - {approvers: [group:sre], count: 2}
        - {approvers: [group:leads], count: 1}
`

// clock is a settable clock shared by the store and the broker.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeProvider grants and revokes nothing real.
type fakeProvider struct{}

func (p *fakeProvider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req, Data: []byte(`{"rule":"r-` + req.RequestID + `"}`)}, nil
}

func (p *fakeProvider) Revoke(ctx context.Context, h ajar.Handle) error { return nil }

type fakeProviders struct{ p *fakeProvider }

func (f fakeProviders) ForTarget(string) (ajar.Provider, error)      { return f.p, nil }
func (f fakeProviders) ForHandle(ajar.Handle) (ajar.Provider, error) { return f.p, nil }
func (f fakeProviders) Kind(string) (string, error)                  { return "fake", nil }

// sshFakeProviders serves the real ssh-cert provider for target "ssh" and the
// fake one for the rest.
type sshFakeProviders struct {
	fake *fakeProvider
	ssh  *sshcert.Provider
}

func (p sshFakeProviders) ForTarget(t string) (ajar.Provider, error) {
	if t == "ssh" {
		return p.ssh, nil
	}
	return p.fake, nil
}

func (p sshFakeProviders) ForHandle(h ajar.Handle) (ajar.Provider, error) {
	if h.Provider == sshcert.Name {
		return p.ssh, nil
	}
	return p.fake, nil
}

func (p sshFakeProviders) Kind(t string) (string, error) {
	if t == "ssh" {
		return sshcert.Name, nil
	}
	return "fake", nil
}

// testSigner signs checkpoints with a fixed, readable text, so golden output
// does not depend on a random key.
type testSigner struct{}

func (testSigner) Sign(size int64, head []byte) ([]byte, error) {
	return fmt.Appendf(nil, "ajar-test-log\n%d\n%x\n\n— test-signer SIGNATURE\n", size, head), nil
}

func (testSigner) VerifierKey() string { return "test-signer+00000000+KEY" }

type env struct {
	svc    *broker.Service
	provs  broker.Providers
	rm     *Reader
	store  *sqlite.Store
	clock  *clock
	pol    *policy.Policy
	signer CheckpointSigner
	users  map[string]ajar.User
}

func mustParse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newEnv is a service enforcing testPolicy over fake providers.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, testPolicy, nil, func(*sqlite.Store) broker.Providers { return fakeProviders{&fakeProvider{}} })
}

// newWorkflowEnv is a service enforcing src, signing checkpoints, with the real ssh-cert provider
// for target "ssh" and a checkpoint signer.
func newWorkflowEnv(t *testing.T, src string) *env {
	t.Helper()
	return newEnvWith(t, src, testSigner{}, func(st *sqlite.Store) broker.Providers {
		mk, err := keys.NewMasterKey(make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		ca, err := sshcert.LoadOrCreateCA(t.Context(), ajar.StoreKeys(st), mk)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := sshcert.New("ssh", json.RawMessage(`{"principals":["ubuntu"]}`), ca)
		if err != nil {
			t.Fatal(err)
		}
		return sshFakeProviders{&fakeProvider{}, sp}
	})
}

func newEnvWith(t *testing.T, src string, signer CheckpointSigner, providers func(*sqlite.Store) broker.Providers) *env {
	t.Helper()
	pol := mustParse(t, src)
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{store: st, clock: clk, pol: pol, signer: signer, users: map[string]ajar.User{}}
	e.setProviders(t, providers(st))
	for _, u := range pol.Users() {
		e.users[u.ID[:len(u.ID)-len("@example.com")]] = u
	}
	return e
}

// setProviders replaces e's service with one over provs (same store, policy
// and clock).
func (e *env) setProviders(t *testing.T, provs broker.Providers) {
	t.Helper()
	svc, err := broker.New(broker.Config{
		Store: e.store, Policy: e.pol, Providers: provs, Now: e.clock.Now,
		Scheduler: broker.SchedulerConfig{MaxGrantAttempts: 3, MaxRevokeAttempts: 3, BaseBackoff: time.Second, MaxBackoff: 4 * time.Second, SlowRetry: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, e.provs, e.rm = svc, provs, New(Config{Core: svc, Store: e.store, Policy: e.pol, Providers: provs, Now: e.clock.Now, Signer: e.signer})
}

func (e *env) create(t *testing.T, user, target, dur string) *ajar.Request {
	t.Helper()
	return e.createIn(t, user, ajar.CreateInput{Target: target, Duration: dur, Reason: "test"})
}

func (e *env) createIn(t *testing.T, user string, in ajar.CreateInput) *ajar.Request {
	t.Helper()
	r, err := e.svc.CreateRequest(t.Context(), e.users[user], in)
	if err != nil {
		t.Fatalf("create %+v: %v", in, err)
	}
	return r
}

func (e *env) get(t *testing.T, id string) *ajar.Request {
	t.Helper()
	var r *ajar.Request
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		r, err = tx.GetRequest(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// advance moves the clock and runs everything that became due.
func (e *env) advance(t *testing.T, d time.Duration) {
	t.Helper()
	e.clock.Add(d)
	if _, err := e.svc.RunDue(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if ajar.ErrorCode(err) != code {
		t.Fatalf("error %v: code %q, want %q", err, ajar.ErrorCode(err), code)
	}
}
