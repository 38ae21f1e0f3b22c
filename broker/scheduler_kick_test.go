package broker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// A request created while the scheduler plans to look at the store before the
// request is due does not wake it: at a high rate of creates, each kick was a
// write transaction of the scheduler's. One due sooner, or any while there is no
// plan (the scheduler is looking), does.
func TestCreateKicksTheSchedulerOnlyWhenDueBeforeItsNextLook(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	kicked := func() bool {
		select {
		case <-e.svc.kick:
			return true
		default:
			return false
		}
	}
	// Each request needs approval: it is due at its approval timeout, in 10m.
	for _, c := range []struct {
		name     string
		nextLook time.Time // zero: no plan
		wantKick bool
	}{
		{"no plan", time.Time{}, true},
		{"look after it is due", now.Add(time.Hour), true},
		{"look before it is due", now.Add(5 * time.Minute), false},
		{"look when it is due", now.Add(10 * time.Minute), false},
		{"look a nanosecond late", now.Add(10*time.Minute + 1), true},
	} {
		var next int64
		if !c.nextLook.IsZero() {
			next = c.nextLook.UnixNano()
		}
		e.svc.nextLook.Store(next)
		r := e.create(t, "alice", "web", "30m")
		if r.NextAt == nil || !r.NextAt.Equal(now.Add(10*time.Minute)) {
			t.Fatalf("%s: due at %v, want %v", c.name, r.NextAt, now.Add(10*time.Minute))
		}
		if got := kicked(); got != c.wantKick {
			t.Errorf("%s: kicked %v, want %v", c.name, got, c.wantKick)
		}
	}
}

// Run plans its next look from what the store says is due next (at most Poll
// away), and a kick makes it plan again.
func TestSchedulerPlansItsNextLook(t *testing.T) {
	e := newEnv(t)
	e.svc.sched.Poll = time.Hour
	now := e.clock.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitPlan(t, e.svc, now.Add(time.Hour)) // nothing due: Poll
	e.create(t, "alice", "web", "30m")
	waitPlan(t, e.svc, now.Add(10*time.Minute)) // woken: its approval timeout
}

// waitPlan waits until s's scheduler plans its next look at want.
func waitPlan(t *testing.T, s *Service, want time.Time) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); s.nextLook.Load() != want.UnixNano(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("next look at %v, want %v", time.Unix(0, s.nextLook.Load()).UTC(), want)
		}
	}
}

// afterUpdateGate holds the next Update after it is armed, once its
// transaction has committed, until release is closed.
type afterUpdateGate struct {
	ajar.Store
	armed   atomic.Bool
	hit     chan struct{}
	release chan struct{}
}

func (g *afterUpdateGate) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	err := g.Store.Update(ctx, fn)
	if g.armed.CompareAndSwap(true, false) {
		close(g.hit)
		<-g.release
	}
	return err
}

// A request committed while the scheduler looks (after its claim, before it
// plans again from what the claim saw) kicks it, whatever the plan before:
// otherwise the new plan, made without the request, could sleep past it.
func TestCreateWhileTheSchedulerLooksKicksIt(t *testing.T) {
	e := newEnv(t)
	e.svc.sched.Poll = time.Hour
	gate := &afterUpdateGate{Store: e.store, hit: make(chan struct{}), release: make(chan struct{})}
	e.svc.store = gate
	start := e.clock.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.svc.Run(ctx); close(done) }()
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
		cancel()
		<-done
	}()
	waitPlan(t, e.svc, start.Add(time.Hour)) // nothing due: Poll
	// The old plan is now in the past; the scheduler looks again and is
	// held after its claim, which saw nothing due.
	e.clock.Add(2 * time.Hour)
	gate.armed.Store(true)
	e.svc.Kick()
	<-gate.hit
	r := e.create(t, "alice", "web", "30m") // due at its approval timeout, in 10m
	close(gate.release)
	released = true
	waitPlan(t, e.svc, *r.NextAt)
}
