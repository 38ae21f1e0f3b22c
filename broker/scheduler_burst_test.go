package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// countingRevoker counts Revoke calls, and calls onRevoke (if set) in each.
type countingRevoker struct {
	revokes  atomic.Int64
	onRevoke func()
}

func (p *countingRevoker) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req}, nil
}

func (p *countingRevoker) Revoke(ctx context.Context, h ajar.Handle) error {
	p.revokes.Add(1)
	if p.onRevoke != nil {
		p.onRevoke()
	}
	return nil
}

type countingRevokers struct{ p *countingRevoker }

func (c countingRevokers) ForTarget(string) (ajar.Provider, error)      { return c.p, nil }
func (c countingRevokers) ForHandle(ajar.Handle) (ajar.Provider, error) { return c.p, nil }
func (c countingRevokers) Kind(string) (string, error)                  { return "fake", nil }

// holdingStore holds every Update once hold is set, until release is closed.
type holdingStore struct {
	ajar.Store
	hold    atomic.Bool
	release chan struct{}
}

func (h *holdingStore) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	if h.hold.Load() {
		<-h.release
	}
	return h.Store.Update(ctx, fn)
}

// A revocation frees its worker as soon as the provider answered: with one
// worker, the next due request's provider call runs while the first one's end
// is still being written (in a burst of expiries, the next requests are
// claimed and revoked while the ends commit, instead of every worker waiting
// for a commit).
func TestRevocationFreesItsWorkerBeforeItsEndIsWritten(t *testing.T) {
	e := newEnv(t)
	a, b := e.create(t, "alice", "web", "5m"), e.create(t, "alice", "web", "5m")
	e.clock.Add(5 * time.Minute)
	hs := &holdingStore{Store: e.store, release: make(chan struct{})}
	// From the first provider call on, every write waits: the first
	// request's end cannot be written until the test releases it.
	prov := &countingRevoker{onRevoke: func() { hs.hold.Store(true) }}
	e.svc.providers = countingRevokers{prov}
	e.svc.sched.Workers = 1
	e.svc.store = hs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	var once sync.Once
	release := func() { once.Do(func() { close(hs.release) }) }
	defer func() { release(); cancel(); <-done }()
	for deadline := time.Now().Add(time.Minute); prov.revokes.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d provider revokes while the first end waits to be written, want 2: the worker is held until the end commits", prov.revokes.Load())
		}
	}
	release()
	for _, id := range []string{a.ID, b.ID} {
		for deadline := time.Now().Add(time.Minute); e.get(t, id).State != ajar.StateExpired; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s a minute after the writes were released, want expired", id, e.get(t, id).State)
			}
		}
		if acts := e.actions(t, id); count(acts, "request.expired") != 1 {
			t.Errorf("%s audit: %v", id, acts)
		}
	}
}

// A request Run claimed ahead that waited for a worker until its lease is
// nearly over is not revoked by this worker (the lease would end during the
// provider call, and another could claim it meanwhile): it is left as it is,
// due again at the end of its lease. With the lease still long, it is revoked.
func TestClaimedRequestNearTheEndOfItsLeaseIsLeftAlone(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "web", "5m")
	e.clock.Add(5 * time.Minute)
	prov := &countingRevoker{}
	e.svc.providers = countingRevokers{prov}
	due, _, _, err := e.svc.claim(t.Context(), 1)
	if err != nil || len(due) != 1 {
		t.Fatalf("claimed %d: %v", len(due), err)
	}
	c := due[0]
	late := c
	lr := *c.r
	lr.NextAt = ptr(c.clock.Now().Add(e.svc.sched.ProviderTimeout / 2))
	late.r = &lr
	run := func(c claimed) {
		w := e.svc.newWorkers()
		w.queued.Add(1)
		e.svc.runClaimed(t.Context(), nil, w, c)
		if len(w.calls) != 0 || w.queued.Load() != 0 {
			t.Fatalf("after runClaimed: %d workers busy, %d queued; want 0, 0", len(w.calls), w.queued.Load())
		}
	}
	run(late)
	if n := prov.revokes.Load(); n != 0 {
		t.Fatalf("%d provider revokes for a request whose lease ends within a provider call, want 0", n)
	}
	if got := e.get(t, r.ID); got.State != ajar.StateActive || got.Version != c.r.Version {
		t.Fatalf("the request was written: %s, version %d (claimed at %d)", got.State, got.Version, c.r.Version)
	}
	run(c)
	if n := prov.revokes.Load(); n != 1 {
		t.Fatalf("%d provider revokes with the lease still long, want 1", n)
	}
	if got := e.get(t, r.ID); got.State != ajar.StateExpired {
		t.Fatalf("with the lease still long the request is %s, want expired", got.State)
	}
}

// txCounter counts the request reads and writes of the transactions it wraps.
type txCounter struct {
	ajar.Store
	gets, updates, batches, nextDues atomic.Int64
}

type countedTx struct {
	ajar.Tx
	c *txCounter
}

func (c *txCounter) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	return c.Store.Update(ctx, func(tx ajar.Tx) error { return fn(countedTx{tx, c}) })
}

func (t countedTx) GetRequest(ctx context.Context, id string) (*ajar.Request, error) {
	t.c.gets.Add(1)
	return t.Tx.GetRequest(ctx, id)
}

func (t countedTx) NextDue(ctx context.Context) (time.Time, bool, error) {
	t.c.nextDues.Add(1)
	return t.Tx.NextDue(ctx)
}

func (t countedTx) UpdateRequest(ctx context.Context, r *ajar.Request) error {
	t.c.updates.Add(1)
	return t.Tx.UpdateRequest(ctx, r)
}

func (t countedTx) UpdateRequests(ctx context.Context, rs []*ajar.Request) error {
	t.c.batches.Add(1)
	return t.Tx.UpdateRequests(ctx, rs)
}

// A batch of ends is written with one compare-and-swap of all its requests
// (Tx.UpdateRequests), as their workers read them, without reading each again:
// on PostgreSQL each read and each update was a round trip.
func TestBatchedEndsAreOneCompareAndSwap(t *testing.T) {
	const n = 5
	e := newEnv(t)
	var ids []string
	for range n {
		ids = append(ids, e.create(t, "alice", "web", "5m").ID)
	}
	e.clock.Add(5 * time.Minute)
	claimed, _, _, err := e.svc.claim(t.Context(), n)
	if err != nil || len(claimed) != n {
		t.Fatalf("claimed %d of %d: %v", len(claimed), n, err)
	}
	tc := &txCounter{Store: e.store}
	e.svc.store = tc
	end := func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		if err := e.svc.beginRevoke(t.Context(), tx, cur, now, ajar.EndExpired); err != nil {
			return err
		}
		if err := transition(cur, ajar.StateExpired, now); err != nil {
			return err
		}
		return e.svc.audit(t.Context(), tx, ajar.ActorSystem, "request.expired", cur.ID, nil)
	}
	var batch []*batchedWrite
	for _, c := range claimed {
		batch = append(batch, &batchedWrite{ctx: t.Context(), r: c.r, fn: end, done: make(chan struct{})})
	}
	e.svc.writeBatch(t.Context(), batch)
	for _, w := range batch {
		if w.err != nil || w.out == nil || w.out.State != ajar.StateExpired {
			t.Fatalf("%s: %v", w.r.ID, w.err)
		}
	}
	if g, u, b := tc.gets.Load(), tc.updates.Load(), tc.batches.Load(); g != 0 || u != 0 || b != 1 {
		t.Errorf("a batch of %d ends: %d reads, %d single updates, %d UpdateRequests; want 0, 0, 1", n, g, u, b)
	}
	for _, id := range ids {
		if got := e.get(t, id); got.State != ajar.StateExpired {
			t.Errorf("%s is %s, want expired", id, got.State)
		}
		if acts := e.actions(t, id); count(acts, "request.expired") != 1 || count(acts, "request.revoking") != 1 {
			t.Errorf("%s audit: %v", id, acts)
		}
	}
}

// A claim that took as many requests as it could does not look when the next
// one is due (a round trip on PostgreSQL, per claim of a burst): the
// scheduler claims again at once. One that took fewer does.
func TestFullClaimSkipsNextDue(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		e.create(t, "alice", "web", "5m")
	}
	e.clock.Add(5 * time.Minute)
	tc := &txCounter{Store: e.store}
	e.svc.store = tc
	if got, _, _, err := e.svc.claim(t.Context(), 2); err != nil || len(got) != 2 {
		t.Fatalf("claimed %d of 2: %v", len(got), err)
	}
	if n := tc.nextDues.Load(); n != 0 {
		t.Errorf("a full claim looked for the next due request %d times, want 0", n)
	}
	if got, _, _, err := e.svc.claim(t.Context(), 2); err != nil || len(got) != 1 {
		t.Fatalf("claimed %d of the last 1: %v", len(got), err)
	}
	if n := tc.nextDues.Load(); n != 1 {
		t.Errorf("a claim short of its limit looked for the next due request %d times, want 1", n)
	}
}

// An end that would be written alone right after a batch of several (the
// first of the next wave of a burst) waits for others to join it: the wave
// commits together, not its first end alone with the rest waiting for it.
func TestLoneEndAfterABatchWaitsForItsWave(t *testing.T) {
	e := newEnv(t)
	a, b := e.create(t, "alice", "web", "5m"), e.create(t, "alice", "web", "5m")
	e.clock.Add(5 * time.Minute)
	due, _, _, err := e.svc.claim(t.Context(), 2)
	if err != nil || len(due) != 2 {
		t.Fatalf("claimed %d of 2: %v", len(due), err)
	}
	cs := &countingStore{Store: e.store}
	e.svc.store = cs
	e.svc.ends.last = 5 // the wave before had five
	e.svc.ends.linger = func() {
		// The linger lasts until the second end has joined.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			e.svc.ends.mu.Lock()
			n := len(e.svc.ends.pending)
			e.svc.ends.mu.Unlock()
			if n == 2 || time.Now().After(deadline) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { e.svc.step(context.Background(), due[0].r, due[0].clock, nil) })
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		e.svc.ends.mu.Lock()
		running := e.svc.ends.running
		e.svc.ends.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first end never started to lead")
		}
	}
	wg.Go(func() { e.svc.step(context.Background(), due[1].r, due[1].clock, nil) })
	wg.Wait()
	if n := cs.updates.Load(); n != 1 {
		t.Errorf("%d write transactions for a wave of 2 ends after a batch of 5, want 1", n)
	}
	for _, id := range []string{a.ID, b.ID} {
		if st := e.get(t, id).State; st != ajar.StateExpired {
			t.Errorf("%s is %s, want expired", id, st)
		}
	}
}

// Run claims ahead of its free workers only while provider calls are fast:
// after a call slower than what a lease leaves for the requests claimed ahead
// to wait, it claims only for the workers neither busy nor spoken for, so a
// slow provider does not leave claimed requests waiting until their leases run
// short (and are left alone) instead of being claimed when a worker is free.
func TestRunClaimsAheadOnlyWhileProviderCallsAreFast(t *testing.T) {
	e := newEnv(t)
	e.svc.sched.Workers = 4
	w := e.svc.newWorkers()
	now := time.Now()
	w.calls <- struct{}{} // one call in flight
	w.steps <- struct{}{}
	for range 2 { // two claimed requests wait for a worker
		w.queued.Add(1)
		w.steps <- struct{}{}
	}
	fast := func(when string, at time.Time) {
		t.Helper()
		if free, most := w.claimable(at); free != 4*stepsPerWorker-3 || most != 4*stepsPerWorker {
			t.Fatalf("%s: %d of %d claimable, want the free steps, %d of %d", when, free, most, 4*stepsPerWorker-3, 4*stepsPerWorker)
		}
	}
	fast("with fast calls", now)
	w.called(now, now.Add(w.fast/2))
	fast("after a fast call", now)
	w.called(now, now.Add(w.fast+time.Millisecond))
	if free, most := w.claimable(now); free != 1 || most != 4 {
		t.Fatalf("after a slow call: %d of %d claimable, want 1 of 4 (4 workers, 1 busy, 2 spoken for)", free, most)
	}
	fast("long after the slow call", now.Add(slowFor+time.Second))
}
