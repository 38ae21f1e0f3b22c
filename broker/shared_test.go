package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// taggedRule is a provider whose one piece of access (a "rule") is shared by
// every request and counts its holders itself, like a security group rule's
// tags (ajar.SharedAccess). Grant joins the rule if it is there and creates it
// otherwise; Revoke removes the rule when its request is the last holder, else
// only its own holder mark. Each looks first and acts after, as a real target
// takes two calls. hold, when set, makes a Revoke that decided to remove the
// rule wait for it to be closed (a slow target), after closing deciding.
type taggedRule struct {
	mu       sync.Mutex
	holders  map[string]bool // nil: no rule
	hold     chan struct{}
	deciding chan struct{}
}

func (p *taggedRule) AccessKey(ajar.GrantRequest) string { return "the-rule" }

func (p *taggedRule) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holders == nil {
		p.holders = map[string]bool{}
	}
	p.holders[req.RequestID] = true
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req, Data: json.RawMessage(`{"rule":"the-rule"}`)}, nil
}

func (p *taggedRule) Revoke(ctx context.Context, h ajar.Handle) error {
	p.mu.Lock()
	last := p.holders[h.Grant.RequestID] && len(p.holders) == 1
	hold, deciding := p.hold, p.deciding
	p.mu.Unlock()
	if !last {
		p.mu.Lock()
		delete(p.holders, h.Grant.RequestID)
		p.mu.Unlock()
		return nil
	}
	if hold != nil {
		close(deciding)
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	p.holders = nil // the rule, whoever holds it by now
	p.mu.Unlock()
	return nil
}

func (p *taggedRule) held(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holders[id]
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestSharedAccessLockedAcrossServices: two Services on one store stand for
// two replicas. One revokes request X, the last holder of the shared rule, and
// its removal of the rule is slow; meanwhile the other grants request Y, which
// maps to the same rule. Without the store lease Y joined the rule X's
// revocation then removed, and Y was active without access. With it, Y's grant
// waits for the revocation and creates the rule anew.
func TestSharedAccessLockedAcrossServices(t *testing.T) {
	pol, err := policy.Parse([]byte(testPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prov := &taggedRule{}
	var logs [2]syncBuffer
	var svcs [2]*Service
	for i := range svcs {
		svcs[i], err = New(Config{
			Store: st, Policy: pol, Providers: fakeSet{prov},
			Logger:    slog.New(slog.NewTextHandler(&logs[i], nil)),
			Scheduler: SchedulerConfig{ProviderTimeout: time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var alice ajar.User
	for _, u := range pol.Users() {
		if u.ID == "alice@example.com" {
			alice = u
		}
	}
	create := func(svc *Service) (*ajar.Request, error) {
		return svc.CreateRequest(context.Background(), alice, ajar.CreateInput{Target: "web", Duration: "5m", Reason: "shared"})
	}
	x, err := create(svcs[0])
	if err != nil || x.State != ajar.StateActive || !prov.held(x.ID) {
		t.Fatalf("first request: %v, %+v", err, x)
	}

	prov.mu.Lock()
	prov.hold, prov.deciding = make(chan struct{}), make(chan struct{})
	prov.mu.Unlock()
	revoked := make(chan error, 1)
	go func() {
		_, err := svcs[0].Revoke(context.Background(), alice, x.ID)
		revoked <- err
	}()
	<-prov.deciding // the revocation found X the last holder and is removing the rule

	type created struct {
		r   *ajar.Request
		err error
	}
	second := make(chan created, 1)
	go func() {
		r, err := create(svcs[1])
		second <- created{r, err}
	}()
	// Either the grant went through at once (the race) or it waits for the lease.
	var y created
	got := false
	for deadline := time.Now().Add(time.Minute); !got && !strings.Contains(logs[1].String(), "shared access busy"); {
		select {
		case y = <-second:
			got = true
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the second grant neither finished nor waited for the lock")
		}
	}
	close(prov.hold)
	if err := <-revoked; err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !got {
		y = <-second
	}
	if y.err != nil {
		t.Fatalf("second request: %v", y.err)
	}
	// Y may be waiting for its retry if its grant gave up waiting: run it.
	for deadline := time.Now().Add(time.Minute); ; {
		cur, err := svcs[1].getRequest(t.Context(), y.r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.State == ajar.StateActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second request is %s: %s", cur.State, cur.LastError)
		}
		if _, err := svcs[1].RunDue(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !prov.held(y.r.ID) {
		t.Fatalf("request %s is active but the rule it shared is gone: the other service's revocation of %s removed it", y.r.ID, x.ID)
	}
	if prov.held(x.ID) {
		t.Fatalf("the revoked request %s still holds the rule", x.ID)
	}
}

// fakeSet serves one provider for every target and handle.
type fakeSet struct{ p ajar.Provider }

func (f fakeSet) ForTarget(string) (ajar.Provider, error)      { return f.p, nil }
func (f fakeSet) ForHandle(ajar.Handle) (ajar.Provider, error) { return f.p, nil }
func (f fakeSet) Kind(string) (string, error)                  { return "fake", nil }
