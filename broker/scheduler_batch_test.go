package broker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// gatedStore counts write transactions and holds the first one until release
// is closed.
type gatedStore struct {
	ajar.Store
	updates atomic.Int64
	release chan struct{}
}

func (g *gatedStore) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	if g.updates.Add(1) == 1 {
		<-g.release
	}
	return g.Store.Update(ctx, fn)
}

// Many revocations ending at once (a burst of expiries) end in shared
// transactions, each request with its own end audited, instead of queueing
// for one commit each.
func TestRevocationEndsShareTransactions(t *testing.T) {
	const n = 6
	e := newEnv(t)
	var ids []string
	for range n {
		ids = append(ids, e.create(t, "alice", "web", "5m").ID)
	}
	e.clock.Add(5 * time.Minute)
	claimed, _, _, err := e.svc.claim(t.Context(), 64)
	if err != nil || len(claimed) != n {
		t.Fatalf("claimed %d of %d: %v", len(claimed), n, err)
	}
	gate := &gatedStore{Store: e.store, release: make(chan struct{})}
	e.svc.store = gate
	var wg sync.WaitGroup
	for _, c := range claimed {
		wg.Go(func() { e.svc.step(context.Background(), c.r, c.clock, nil) })
	}
	// The first end to commit holds its transaction open until every other
	// one waits for it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		e.svc.ends.mu.Lock()
		waiting := len(e.svc.ends.pending)
		e.svc.ends.mu.Unlock()
		if waiting == n-1 {
			break
		}
		if time.Now().After(deadline) {
			close(gate.release)
			wg.Wait()
			t.Fatalf("%d revocation ends wait for the one committing, want %d (%d write transactions)", waiting, n-1, gate.updates.Load())
		}
	}
	close(gate.release)
	wg.Wait()
	if got := gate.updates.Load(); got != 2 {
		t.Errorf("%d write transactions for %d revocation ends, want 2 (the first alone, then the rest together)", got, n)
	}
	for _, id := range ids {
		if st := e.get(t, id).State; st != ajar.StateExpired {
			t.Errorf("%s is %s, want expired", id, st)
		}
		if acts := e.actions(t, id); count(acts, "request.expired") != 1 || count(acts, "request.revoking") != 1 {
			t.Errorf("%s audit: %v", id, acts)
		}
	}
}

// A batch in which one write fails is written again one transaction each: the
// failing write returns its error and leaves nothing, the others commit, and a
// request changed since it was read gets errStale and is not written.
func TestBatchedWriteIsolatesFailures(t *testing.T) {
	e := newEnv(t)
	good, bad, stale := e.create(t, "alice", "web", "5m"), e.create(t, "alice", "web", "5m"), e.create(t, "alice", "web", "5m")
	staleCopy := *stale
	staleCopy.Version--
	boom := errors.New("boom")
	mark := func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		cur.LastError = "marked"
		return e.svc.audit(t.Context(), tx, ajar.ActorSystem, "test.marked", cur.ID, nil)
	}
	fail := func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		if err := mark(tx, cur, now); err != nil {
			return err
		}
		return boom
	}
	batch := []*batchedWrite{
		{ctx: t.Context(), r: good, fn: mark, done: make(chan struct{})},
		{ctx: t.Context(), r: bad, fn: fail, done: make(chan struct{})},
		{ctx: t.Context(), r: &staleCopy, fn: mark, done: make(chan struct{})},
	}
	e.svc.writeBatch(t.Context(), batch)
	if batch[0].err != nil || batch[0].out == nil || batch[0].out.LastError != "marked" {
		t.Errorf("good write: %v", batch[0].err)
	}
	if !errors.Is(batch[1].err, boom) {
		t.Errorf("failing write: %v, want boom", batch[1].err)
	}
	if !errors.Is(batch[2].err, errStale) {
		t.Errorf("stale write: %v, want errStale", batch[2].err)
	}
	for _, c := range []struct {
		r    *ajar.Request
		want int
	}{{good, 1}, {bad, 0}, {stale, 0}} {
		if got := count(e.actions(t, c.r.ID), "test.marked"); got != c.want {
			t.Errorf("%s: %d test.marked events, want %d", c.r.ID, got, c.want)
		}
		if marked := e.get(t, c.r.ID).LastError == "marked"; marked != (c.want == 1) {
			t.Errorf("%s: written %v, want %v", c.r.ID, marked, c.want == 1)
		}
	}
}

// countingStore counts write transactions.
type countingStore struct {
	ajar.Store
	updates atomic.Int64
}

func (c *countingStore) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, fn)
}

// blockingProvider's Revoke waits until release is closed.
type blockingProvider struct {
	inFlight atomic.Int64
	release  chan struct{}
}

func (p *blockingProvider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	return ajar.Handle{}, errors.New("not in this test")
}

func (p *blockingProvider) Revoke(ctx context.Context, h ajar.Handle) error {
	p.inFlight.Add(1)
	<-p.release
	return nil
}

type blockingProviders struct{ p *blockingProvider }

func (b blockingProviders) ForTarget(string) (ajar.Provider, error)      { return b.p, nil }
func (b blockingProviders) ForHandle(ajar.Handle) (ajar.Provider, error) { return b.p, nil }
func (b blockingProviders) Kind(string) (string, error)                  { return "fake", nil }

// With a backlog of due requests and every worker busy, the scheduler waits
// for a worker to end instead of looking at the store again and again (a
// write transaction each time: a burst of 10,000 expiries on PostgreSQL made
// about 30,000 of them).
func TestSchedulerWaitsForFreeWorkersUnderABacklog(t *testing.T) {
	const n, workers = 12, 4
	e := newEnv(t)
	var ids []string
	for range n {
		ids = append(ids, e.create(t, "alice", "web", "5m").ID)
	}
	e.clock.Add(5 * time.Minute)
	bp := &blockingProvider{release: make(chan struct{})}
	e.svc.providers = blockingProviders{bp}
	e.svc.sched.Workers = workers
	cs := &countingStore{Store: e.store}
	e.svc.store = cs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	released := false
	defer func() {
		if !released {
			close(bp.release)
		}
		cancel()
		<-done
	}()
	for deadline := time.Now().Add(time.Minute); bp.inFlight.Load() < workers; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d revokes in flight, want %d", bp.inFlight.Load(), workers)
		}
	}
	// Every worker is held in the provider: from now on nothing may happen
	// until one ends, whatever the time it takes.
	before := cs.updates.Load()
	time.Sleep(300 * time.Millisecond)
	if got := cs.updates.Load() - before; got != 0 {
		t.Errorf("%d write transactions while every worker was busy, want 0", got)
	}
	close(bp.release)
	released = true
	for _, id := range ids {
		for deadline := time.Now().Add(time.Minute); e.get(t, id).State != ajar.StateExpired; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s a minute after the provider answered, want expired", id, e.get(t, id).State)
			}
		}
	}
}
