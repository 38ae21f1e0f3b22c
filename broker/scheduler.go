package broker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/backoff"
	"github.com/ajar-dev/ajar/policy"
)

// SchedulerConfig tunes the durable scheduler. Zero fields take defaults.
type SchedulerConfig struct {
	Poll              time.Duration // longest sleep between looks at the store (1s)
	Lease             time.Duration // how long a claimed request is held by one worker (30s)
	Workers           int           // provider calls in flight at once (32)
	MaxGrantAttempts  int           // grant attempts before grant_failed (5)
	MaxRevokeAttempts int           // revoke attempts before revoke_failed (8)
	BaseBackoff       time.Duration // first retry delay, doubled each attempt, jittered (1s)
	MaxBackoff        time.Duration // cap on the retry delay (1m)
	SlowRetry         time.Duration // retry interval once revoke_failed (5m)
	ProviderTimeout   time.Duration // bound on one provider call (20s)
}

func (c SchedulerConfig) withDefaults() SchedulerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Poll, time.Second)
	def(&c.Lease, 30*time.Second)
	def(&c.BaseBackoff, time.Second)
	def(&c.MaxBackoff, time.Minute)
	def(&c.SlowRetry, 5*time.Minute)
	def(&c.ProviderTimeout, 20*time.Second)
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.MaxGrantAttempts <= 0 {
		c.MaxGrantAttempts = 5
	}
	if c.MaxRevokeAttempts <= 0 {
		c.MaxRevokeAttempts = 8
	}
	if c.Lease <= c.ProviderTimeout {
		c.Lease = c.ProviderTimeout + 10*time.Second
	}
	return c
}

// backoff returns the jittered delay before retry number attempt (1-based):
// BaseBackoff doubled per attempt, capped at MaxBackoff, then a random point in its
// upper half so that many failures do not retry in lockstep.
func (c SchedulerConfig) backoff(attempt int) time.Duration {
	return backoff.Next(attempt, c.BaseBackoff, c.MaxBackoff)
}

// errStale means another worker or a user changed the request since it was claimed.
var errStale = errors.New("request changed since it was claimed")

// Run drives the scheduler until ctx ends: it claims due requests from the store
// (the truth; the timer is only a cache of the next due time) and moves them on:
// grants approved requests, revokes expired and revoked ones, times out pending ones,
// and retries provider failures with backoff.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	w := s.newWorkers()
	timer := time.NewTimer(0)
	defer timer.Stop()
	more := false // the last claim filled every free step: more may be due
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
		s.nextLook.Store(0) // looking: whatever is committed from now on kicks
		free, most := w.claimable(time.Now())
		if (free <= 0 || w.queued.Load() >= int64(cap(w.calls))) && len(w.steps) > 0 {
			// Every worker is busy in a provider, and claimed requests wait
			// for them (as many as there are workers, or, while calls are
			// slow, any): claiming more would only make them wait longer.
			// The next provider call to end kicks again.
			continue
		}
		if more && free < max(most/4, 1) && len(w.steps) > 0 {
			// A backlog (a burst of expiries): claim in batches, not one request
			// a commit as each step ends. The next step to end kicks again.
			continue
		}
		claimed, wait, at, err := s.claim(ctx, max(free, 0))
		if err != nil && ctx.Err() == nil {
			s.log.Error("scheduler: claim due requests", "err", err)
			wait = s.sched.Poll
		}
		for _, c := range claimed {
			w.steps <- struct{}{}
			w.queued.Add(1)
			wg.Go(func() {
				defer func() { <-w.steps; s.Kick() }()
				s.runClaimed(context.WithoutCancel(ctx), ctx.Done(), w, c)
			})
		}
		more = len(claimed) == free && free > 0
		if more {
			wait = 0
		}
		if err == nil && wait > 0 {
			// The claim saw everything committed before it began; what was
			// committed since, due before this look, has kicked or will.
			s.nextLook.Store(at.Add(wait).UnixNano())
		}
		timer.Reset(wait)
	}
}

// RunDue processes every request that is due now, one after the other, and
// returns how many it moved on. Run does the same continuously; RunDue is for tests
// and one-shot tools.
func (s *Service) RunDue(ctx context.Context) (int, error) {
	n := 0
	for {
		claimed, _, _, err := s.claim(ctx, 64)
		if err != nil {
			return n, err
		}
		if len(claimed) == 0 {
			return n, nil
		}
		for _, c := range claimed {
			s.step(ctx, c.r, c.clock, nil)
		}
		n += len(claimed)
	}
}

// Kick wakes the scheduler to look at the store now, and the notification
// delivery workers (events.NotifyConfig.Wake).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.notify.Wake()
}

// kickFor is Kick after a commit that made something due at at (a request's
// NextAt; nil: nothing): the scheduler is woken only if it would not look by
// then anyway. Creating requests at a high rate then costs no look at the
// store each (a write transaction).
func (s *Service) kickFor(at *time.Time) {
	if next := s.nextLook.Load(); at != nil && next != 0 && at.UnixNano() >= next {
		return // the notifications written, if any, woke their workers
	}
	s.Kick()
}

// activeNextAt is when the scheduler must look at an active request next: at
// its expiry, or before it to send the expiry reminder (events.Notifier).
func (s *Service) activeNextAt(r *ajar.Request, now time.Time) *time.Time {
	if at, ok := s.notify.ReminderAt(r); ok && now.Before(at) {
		return ptr(at)
	}
	return ptr(*r.ExpiresAt)
}

// storeClock is the store's clock as read when a request was claimed, moved on
// by the local monotonic clock. Decisions about a claimed request use it, never
// the local wall clock, so a replica with a skewed clock neither revokes early nor
// spins on a request it thinks is not due yet.
type storeClock struct {
	at    time.Time // the store's time at the claim
	local time.Time // the local time at the claim (with its monotonic reading)
}

func newStoreClock(at time.Time) storeClock { return storeClock{at: at, local: time.Now()} }

// Now is the store's current time, as well as this process can tell.
func (c storeClock) Now() time.Time { return c.at.Add(time.Since(c.local)) }

// claimed is a request claimed for one worker, with the clock of its claim.
type claimed struct {
	r     *ajar.Request
	clock storeClock
}

// claim takes up to limit due requests and returns how long to sleep afterwards
// (until the next one is due, at most Poll) and the store's time it looked at.
// When it took limit requests it does not look when the next one is due
// (Poll): more may be due now, and the caller claims again.
func (s *Service) claim(ctx context.Context, limit int) ([]claimed, time.Duration, time.Time, error) {
	var out []claimed
	var now time.Time
	wait := s.sched.Poll
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		now = tx.Now()
		if limit > 0 {
			rs, err := tx.ClaimDue(ctx, now, now.Add(s.sched.Lease), limit)
			if err != nil {
				return err
			}
			clk := newStoreClock(now)
			out = out[:0]
			for _, r := range rs {
				out = append(out, claimed{r, clk})
			}
			if len(rs) == limit {
				// More may be due: Run claims again at once, without a
				// look at when the next one is (a round trip on PostgreSQL).
				return nil
			}
		}
		next, ok, err := tx.NextDue(ctx)
		if err != nil {
			return err
		}
		if ok {
			wait = min(wait, max(next.Sub(now), 0))
		}
		return nil
	})
	return out, wait, now, err
}

// hold marks r as owned by the caller until the end of a lease: the scheduler
// will not claim it meanwhile. The caller commits r, then calls runHeld, so a user
// action (an auto-approval, the last approval, a revoke) sees its result in the
// response. If the process dies in between, the lease runs out and the scheduler
// takes over; nothing is lost.
func (s *Service) hold(r *ajar.Request, now time.Time) {
	r.NextAt = ptr(now.Add(s.sched.Lease))
}

// runHeld moves on a request committed with hold. at is the store time of that
// commit.
func (s *Service) runHeld(r *ajar.Request, at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), s.sched.ProviderTimeout+5*time.Second)
	defer cancel()
	s.step(ctx, r, newStoreClock(at), nil)
	s.Kick()
}

// stepsPerWorker bounds the requests Run has claimed and not moved on yet:
// this many per provider call in flight (SchedulerConfig.Workers). In a
// burst of expiries most of them are past their provider call, their ends
// waiting to be written together (writeBatched), so one claim and one commit
// serve many requests.
const stepsPerWorker = 8

// workers are Run's bounds: calls holds a slot per provider call in flight
// (SchedulerConfig.Workers), steps one per claimed request not moved on yet;
// queued counts the claimed requests waiting for a slot of calls.
//
// Run claims ahead of free workers (up to the free steps) only while provider
// calls are fast: a worker's call that took longer than fast (with
// stepsPerWorker rounds of calls to wait for, a request claimed ahead could
// reach a lease too short for its own call) makes Run claim only for free
// workers for slowFor after it, so that claimed requests do not wait for one.
type workers struct {
	calls     chan struct{}
	steps     chan struct{}
	queued    atomic.Int64
	fast      time.Duration
	slowUntil atomic.Int64 // UnixNano: until then, claim only for free workers
}

// slowFor is how long a slow provider call keeps Run from claiming ahead.
const slowFor = time.Minute

func (s *Service) newWorkers() *workers {
	return &workers{
		calls: make(chan struct{}, s.sched.Workers),
		steps: make(chan struct{}, s.sched.Workers*stepsPerWorker),
		// What the lease leaves beyond one provider call, shared by the
		// rounds of calls a request claimed ahead may wait for, with a
		// margin of two.
		fast: (s.sched.Lease - s.sched.ProviderTimeout) / (2 * stepsPerWorker),
	}
}

// claimable is how many requests Run may claim now, and at most: the free
// steps (of all of them), or, while provider calls are slow, only the workers
// neither busy nor spoken for (of all the workers).
func (w *workers) claimable(now time.Time) (free, most int) {
	free, most = cap(w.steps)-len(w.steps), cap(w.steps)
	if now.UnixNano() < w.slowUntil.Load() {
		free = min(free, cap(w.calls)-len(w.calls)-int(w.queued.Load()))
		most = cap(w.calls)
	}
	return free, most
}

// called notes that a worker's provider call, begun at start, returned at now.
func (w *workers) called(start, now time.Time) {
	if now.Sub(start) > w.fast {
		w.slowUntil.Store(now.Add(slowFor).UnixNano())
	}
}

// runClaimed moves a request Run claimed on, once a worker is free for its
// provider call (or Run stops: stop is closed). A revocation gives the worker
// back as soon as the provider answered, before its end is written. A request
// whose lease would end before a provider call could (it waited for a worker
// too long) is left alone: it is due again at the end of its lease.
func (s *Service) runClaimed(ctx context.Context, stop <-chan struct{}, w *workers, c claimed) {
	select {
	case w.calls <- struct{}{}:
		w.queued.Add(-1)
	case <-stop:
		w.queued.Add(-1)
		return
	}
	start := time.Now()
	var once sync.Once
	called := func() {
		once.Do(func() {
			w.called(start, time.Now())
			<-w.calls
			s.Kick()
		})
	}
	defer called()
	if c.r.NextAt != nil && c.clock.Now().Add(s.sched.ProviderTimeout).After(*c.r.NextAt) {
		s.log.Warn("scheduler: a claimed request waited for a worker until its lease was nearly over; it is due again at the lease's end",
			"request", c.r.ID, "lease_until", *c.r.NextAt)
		return
	}
	s.step(ctx, c.r, c.clock, called)
}

// step moves one claimed request on. Errors are logged; the request stays due at
// the end of its lease, so nothing is lost. called, if not nil, is called once
// a revocation's provider call returned (Run frees its worker for another
// provider call then).
func (s *Service) step(ctx context.Context, r *ajar.Request, clk storeClock, called func()) {
	var err error
	switch r.State {
	case ajar.StatePending:
		err = s.timeOut(ctx, r)
	case ajar.StateApproved:
		err = s.grant(ctx, r, clk)
	case ajar.StateActive, ajar.StateRevoking, ajar.StateRevokeFailed:
		err = s.revoke(ctx, r, clk, called)
	default:
		err = s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
			cur.NextAt = nil
			return nil
		})
	}
	if err != nil && !errors.Is(err, errStale) {
		s.log.Error("scheduler: step", "request", r.ID, "state", r.State, "err", err)
	}
}

// write applies fn to the stored request if nobody changed it since r was read
// (errStale otherwise), then updates r to what was written.
func (s *Service) write(ctx context.Context, r *ajar.Request, fn func(tx ajar.Tx, cur *ajar.Request, now time.Time) error) error {
	var out *ajar.Request
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, r.ID)
		if err != nil {
			return err
		}
		if cur.Version != r.Version {
			return errStale
		}
		if err := fn(tx, cur, tx.Now()); err != nil {
			return err
		}
		if err := tx.UpdateRequest(ctx, cur); err != nil {
			if ajar.ErrorCode(err) == ajar.ECONFLICT {
				return errStale
			}
			return err
		}
		out = cur
		return nil
	})
	if err != nil {
		return err
	}
	*r = *out
	return nil
}

// maxWriteBatch bounds the requests one batched write transaction changes.
const maxWriteBatch = 256

// writeBatch gathers writes (see writeBatched) that run while another is
// committing. Its zero value is ready.
type writeBatch struct {
	mu      sync.Mutex
	pending []*batchedWrite
	running bool // a caller leads: it writes the pending writes in batches
	last    int  // writes in the last batch written
	// linger waits a moment for more writes to join (endsLinger); tests
	// replace it.
	linger func()
}

// endsLinger is how long a write that would lead a batch alone waits for
// others to join it when the batch before had several: a burst of expiries
// ends in waves (a claim's worth at a time), and the first end of a wave would
// otherwise commit alone, with the rest of its wave waiting for that commit.
const endsLinger = 2 * time.Millisecond

// batchedWrite is one write waiting in a writeBatch.
type batchedWrite struct {
	ctx  context.Context // the caller's, for its write alone
	r    *ajar.Request
	fn   func(tx ajar.Tx, cur *ajar.Request, now time.Time) error
	out  *ajar.Request
	err  error
	done chan struct{} // closed once written or failed
	lead chan struct{} // the leader hands over: write the pending batches
}

// writeBatched is write, with the same contract, for writes that come many at
// once: while one caller commits, the others' writes wait, then go together in
// one transaction (up to maxWriteBatch), each request with its audit events,
// so a batch commits or fails as a whole. fn is applied to a copy of r, not
// to the request read again: the batch's requests are written with one
// compare-and-swap (Tx.UpdateRequests), which writes none of them if any
// changed since its r was read. When that or any other error stops a batch,
// its writes run again one transaction each (write, with each caller's ctx:
// a request changed since gets errStale), so one bad or stale request never
// fails the others.
func (s *Service) writeBatched(ctx context.Context, r *ajar.Request, fn func(tx ajar.Tx, cur *ajar.Request, now time.Time) error) error {
	w := &batchedWrite{ctx: ctx, r: r, fn: fn, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	b := &s.ends
	b.mu.Lock()
	b.pending = append(b.pending, w)
	if b.running {
		b.mu.Unlock()
		select {
		case <-w.done:
		case <-w.lead:
			s.leadBatches(ctx, w)
		}
	} else {
		b.running = true
		b.mu.Unlock()
		s.leadBatches(ctx, w)
	}
	if w.err != nil {
		return w.err
	}
	*r = *w.out
	return nil
}

// leadBatches writes the pending writes, oldest first, in batches, until w
// (pending, and led by the caller) is written; then it hands the lead to the
// oldest write still pending, so no caller waits for more than the batches
// before its own. Alone after a batch of several, w first lingers for others
// (endsLinger).
func (s *Service) leadBatches(ctx context.Context, w *batchedWrite) {
	b := &s.ends
	b.mu.Lock()
	if len(b.pending) == 1 && b.last > 1 {
		b.mu.Unlock()
		if b.linger != nil {
			b.linger()
		} else {
			time.Sleep(endsLinger)
		}
		b.mu.Lock()
	}
	for written := false; !written; {
		n := min(len(b.pending), maxWriteBatch)
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		b.last = n
		b.mu.Unlock()
		s.writeBatch(ctx, batch)
		written = slices.Contains(batch, w)
		b.mu.Lock()
	}
	if len(b.pending) > 0 {
		b.pending[0].lead <- struct{}{}
	} else {
		b.running = false
	}
	b.mu.Unlock()
}

// writeBatch runs the writes of batch in one transaction, or, if that fails,
// one transaction each, and closes their done channels.
func (s *Service) writeBatch(ctx context.Context, batch []*batchedWrite) {
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	if len(batch) > 1 {
		err := s.store.Update(ctx, func(tx ajar.Tx) error {
			now := tx.Now()
			curs := make([]*ajar.Request, len(batch))
			for i, w := range batch {
				w.out, w.err = nil, nil
				// The request as its caller read it (claimed, at its
				// Version): UpdateRequests writes them all only if none
				// changed since, so it is not read again here.
				cur := *w.r
				if err := w.fn(tx, &cur, now); err != nil {
					return err
				}
				curs[i] = &cur
			}
			if err := tx.UpdateRequests(ctx, curs); err != nil {
				return err // stale (ECONFLICT) or not: each alone, below
			}
			for i, w := range batch {
				w.out = curs[i]
			}
			return nil
		})
		if err == nil {
			return
		}
	}
	for _, w := range batch {
		r := *w.r
		if w.err = s.write(w.ctx, &r, w.fn); w.err == nil {
			w.out = &r
		}
	}
}

func (s *Service) timeOut(ctx context.Context, r *ajar.Request) error {
	return s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		if now.Before(cur.ApprovalDeadline) {
			return s.escalate(ctx, tx, cur, now) // workflow.go: escalate_after, then the next look
		}
		if err := transition(cur, ajar.StateTimedOut, now); err != nil {
			return err
		}
		return s.audit(ctx, tx, ajar.ActorSystem, "request.timed_out", cur.ID,
			map[string]any{"approval_deadline": cur.ApprovalDeadline})
	})
}

// grant makes an approved request active: first it commits the grant intent (the
// expiry and a handle naming what will be created), then it calls the provider, then
// it records the provider's handle. A crash at any point leaves a request whose
// revocation the store already knows about.
func (s *Service) grant(ctx context.Context, r *ajar.Request, clk storeClock) error {
	if r.Handle == nil {
		err := s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
			if refused, err := s.refuseAtGrant(ctx, tx, cur, now); refused || err != nil {
				return err
			}
			return s.startGrant(ctx, tx, cur, now)
		})
		var kindErr *noProviderError
		if errors.As(err, &kindErr) {
			return s.failGrant(ctx, r, clk, kindErr.err, true)
		}
		if err != nil || r.Handle == nil {
			return err
		}
	}
	if !clk.Now().Before(*r.ExpiresAt) {
		// Approved (or recovered) after its window closed: never grant, clean up
		// whatever a crashed earlier attempt may have created.
		if err := s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
			return s.beginRevoke(ctx, tx, cur, now, ajar.EndExpired)
		}); err != nil {
			return err
		}
		return s.revoke(ctx, r, clk, nil)
	}
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return s.failGrant(ctx, r, clk, err, true)
	}
	h, err := s.ProviderGrant(ctx, prov, *r.Handle) // shared.go: under the lock of shared access
	if errors.Is(err, errShareBusy) {
		return s.shareBusy(ctx, r)
	}
	if err != nil {
		s.metrics.providerErrors.WithLabelValues(r.Handle.Provider, "grant").Inc()
		return s.failGrant(ctx, r, clk, err, ajar.ErrorCode(err) == ajar.EINVALID)
	}
	err = s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		if err := transition(cur, ajar.StateActive, now); err != nil {
			return err
		}
		cur.Handle = &h
		cur.NextAt = s.activeNextAt(cur, now) // expiry, or the expiry reminder before it
		cur.Attempts, cur.LastError = 0, ""
		return s.audit(ctx, tx, ajar.ActorSystem, "request.activated", cur.ID,
			map[string]any{"expires_at": cur.ExpiresAt, "handle": h.Data})
	})
	if errors.Is(err, errStale) {
		// Someone revoked it while the provider was granting: give the revocation
		// the real handle and let it run now.
		return s.lateHandle(ctx, r.ID, h)
	}
	return err
}

// noProviderError means the target's provider cannot be found: a permanent grant failure.
type noProviderError struct{ err error }

func (e *noProviderError) Error() string { return e.err.Error() }

// startGrant commits the grant intent on an approved request that is due: the
// expiry (from the start time, not the approval) and a handle naming the
// provider and the config it is granted with. Everything revocation needs is then
// in the store before any provider is called. A request whose start is still ahead
// is only rescheduled.
func (s *Service) startGrant(ctx context.Context, tx ajar.Tx, cur *ajar.Request, now time.Time) error {
	details, err := s.prepareGrant(cur, now)
	if err != nil || details == nil {
		return err
	}
	return s.audit(ctx, tx, ajar.ActorSystem, "grant.started", cur.ID, details)
}

// prepareGrant is startGrant without its audit event: it sets cur's grant
// intent and returns the details of the grant.started event to append, or
// nil details when cur's start is still ahead (only rescheduled).
func (s *Service) prepareGrant(cur *ajar.Request, now time.Time) (map[string]any, error) {
	start := now
	if cur.StartAt != nil {
		if cur.StartAt.After(now) {
			cur.NextAt = cur.StartAt
			return nil, nil
		}
		start = *cur.StartAt
	}
	kind, err := s.providers.Kind(cur.Target)
	if err != nil {
		return nil, &noProviderError{err}
	}
	w, err := ajar.NewWindow(start, cur.Duration)
	if err != nil {
		return nil, &noProviderError{err} // a stored duration no policy allows: never grant it
	}
	// The latest the access may ever reach, extensions included, goes with the
	// grant: extensions, certificates and providers never pass it.
	var maxTotal time.Duration
	if rule, ok := s.pol.Rule(cur.Policy); ok && rule.Extend != nil {
		maxTotal = rule.Extend.MaxTotal
	}
	exp, notAfter := w.End, w.NotAfter(maxTotal)
	cur.ActivatedAt, cur.ExpiresAt = ptr(now), ptr(exp)
	target, _ := s.pol.Target(cur.Target)
	cur.Handle = &ajar.Handle{Provider: kind, Version: 1, Grant: ajar.GrantRequest{
		RequestID: cur.ID, Target: cur.Target, Requester: cur.Requester,
		Params: cur.Params, ExpiresAt: exp, NotAfter: notAfter, Config: target.Config,
	}}
	cur.Attempts, cur.LastError = 0, ""
	return map[string]any{"expires_at": exp, "not_after": notAfter, "provider": kind}, nil
}

// refuseAtGrant checks the rule's deny and require conditions again when an
// approved request's grant comes due (policy.CheckGrant: the real time, the
// real window), because they were evaluated when it was made, maybe hours
// before its start or its last approval. When they refuse now, or the
// requester is no longer configured, the request is denied (audited with why,
// in tx) and refused is true; no access is created. A request whose start is
// still ahead is left to startGrant. See docs/security.md, "Time windows".
func (s *Service) refuseAtGrant(ctx context.Context, tx ajar.Tx, cur *ajar.Request, now time.Time) (refused bool, err error) {
	start := now
	if cur.StartAt != nil {
		if cur.StartAt.After(now) {
			return false, nil
		}
		start = *cur.StartAt
	}
	w, werr := ajar.NewWindow(start, cur.Duration)
	if werr != nil {
		return false, nil // startGrant fails the grant
	}
	var cerr error
	var conds []policy.ConditionResult
	if u, ok := s.user(ctx, cur.Requester); !ok {
		cerr = ajar.Errorf(ajar.EFORBIDDEN, "%s is no longer a configured user", cur.Requester)
	} else {
		var dec *policy.Decision
		dec, cerr = s.pol.CheckGrant(u, policy.GrantInput{
			Policy: cur.Policy, Target: cur.Target, Reason: cur.Reason, Ticket: cur.Ticket, Params: cur.Params,
			Window: w, Now: now,
		})
		if dec != nil {
			conds = dec.Conditions
		}
	}
	if cerr == nil {
		return false, nil
	}
	if err := transition(cur, ajar.StateDenied, now); err != nil {
		return false, err
	}
	why := "refused when the grant came due: " + ajar.ErrorMessage(cerr)
	cur.LastError = why
	return true, s.audit(ctx, tx, ajar.ActorSystem, "request.denied", cur.ID,
		map[string]any{"reason": why, "at_grant": true, "conditions": conds})
}

// lateHandle stores a handle that arrived after the request moved to revoking.
func (s *Service) lateHandle(ctx context.Context, id string, h ajar.Handle) error {
	var ended bool
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		if cur.State.Terminal() {
			// This worker stalled past its lease and another one already ended
			// the request: the access it just created belongs to nobody. Remove it
			// now (below); the event says so whatever the outcome.
			ended = true
			return s.audit(ctx, tx, ajar.ActorSystem, "grant.completed_after_end", id, map[string]any{"handle": h.Data})
		}
		if cur.State != ajar.StateRevoking && cur.State != ajar.StateRevokeFailed {
			return nil // active: another worker granted it; providers are idempotent
		}
		cur.Handle = &h
		cur.NextAt = ptr(tx.Now())
		if err := tx.UpdateRequest(ctx, cur); err != nil {
			return err
		}
		return s.audit(ctx, tx, ajar.ActorSystem, "grant.completed_late", id, map[string]any{"handle": h.Data})
	})
	s.Kick()
	if err != nil || !ended {
		return err
	}
	return s.revokeOrphan(ctx, id, h)
}

// revokeOrphan removes access created for a request that had already ended,
// retrying with backoff for as long as a lease would have allowed, and audits the
// outcome. A failure is logged as an error and counted in the provider error metric.
func (s *Service) revokeOrphan(ctx context.Context, id string, h ajar.Handle) error {
	prov, err := s.providers.ForHandle(h)
	orphan := &ajar.Request{ID: id, Requester: h.Grant.Requester, Handle: &h}
	for attempt := 1; err == nil && attempt <= s.sched.MaxRevokeAttempts; attempt++ {
		err = s.ProviderRevoke(ctx, prov, orphan) // shared.go: keeps access other requests share
		if err == nil {
			break
		}
		s.metrics.providerErrors.WithLabelValues(h.Provider, "revoke").Inc()
		if attempt < s.sched.MaxRevokeAttempts {
			time.Sleep(s.sched.backoff(attempt))
			err = nil
			continue
		}
	}
	outcome := map[string]any{"handle": h.Data, "removed": err == nil}
	if err != nil {
		outcome["error"] = safeError(err)
		s.log.Error("access created after its request ended could not be removed", "request", id, "err", err)
	}
	if aerr := s.store.Update(ctx, func(tx ajar.Tx) error {
		return s.audit(ctx, tx, ajar.ActorSystem, "grant.orphan_revoked", id, outcome)
	}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// failGrant records a failed grant attempt: retried with backoff, and after the
// last attempt (or at once when permanent) the request goes to revoking so that any
// partial access is removed, and then to grant_failed.
func (s *Service) failGrant(ctx context.Context, r *ajar.Request, clk storeClock, gerr error, permanent bool) error {
	msg := safeError(gerr)
	s.log.Warn("grant failed", "request", r.ID, "target", r.Target, "attempt", r.Attempts+1, "err", gerr)
	var giveUp bool
	err := s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		cur.Attempts++
		cur.LastError = msg
		if err := s.audit(ctx, tx, ajar.ActorSystem, "grant.error", cur.ID,
			map[string]any{"attempt": cur.Attempts, "error": msg}); err != nil {
			return err
		}
		if permanent || cur.Attempts >= s.sched.MaxGrantAttempts {
			giveUp = true
			return s.beginRevoke(ctx, tx, cur, now, ajar.EndGrantFailed)
		}
		cur.NextAt = ptr(now.Add(s.sched.backoff(cur.Attempts)))
		return nil
	})
	if err != nil || !giveUp {
		return err
	}
	return s.revoke(ctx, r, clk, nil)
}

// beginRevoke moves cur to revoking for the given reason, due now.
func (s *Service) beginRevoke(ctx context.Context, tx ajar.Tx, cur *ajar.Request, now time.Time, why ajar.EndReason) error {
	if err := transition(cur, ajar.StateRevoking, now); err != nil {
		return err
	}
	cur.EndReason = why
	cur.Attempts = 0
	cur.NextAt = ptr(now)
	return s.audit(ctx, tx, ajar.ActorSystem, "request.revoking", cur.ID, map[string]any{"end_reason": why})
}

// revoke removes the access of an active (expired), revoking or revoke_failed
// request and records the end only once the provider confirmed it. called, if
// not nil, is called once the provider call returned (see step).
func (s *Service) revoke(ctx context.Context, r *ajar.Request, clk storeClock, called func()) error {
	if r.State == ajar.StateActive && r.ExpiresAt != nil && clk.Now().Before(*r.ExpiresAt) {
		// Claimed early (a lease ran out, or clocks): come back at expiry.
		return s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
			if cur.ExpiresAt.After(now) {
				if err := s.notify.RemindExpiring(ctx, tx, cur, now); err != nil {
					return err
				}
				cur.NextAt = s.activeNextAt(cur, now)
				return nil
			}
			cur.NextAt = ptr(now)
			return nil
		})
	}
	why := r.EndReason
	if r.State == ajar.StateActive {
		why = ajar.EndExpired
	}
	var rerr error
	if r.Handle != nil {
		if why == ajar.EndExpired && r.ExpiresAt != nil {
			s.metrics.revocationLag.Observe(max(clk.Now().Sub(*r.ExpiresAt), 0).Seconds())
		}
		prov, err := s.providers.ForHandle(*r.Handle)
		if err == nil {
			err = s.ProviderRevoke(ctx, prov, r) // shared.go: keeps access other requests share
		}
		if err != nil && !errors.Is(err, errShareBusy) {
			s.metrics.providerErrors.WithLabelValues(r.Handle.Provider, "revoke").Inc()
		}
		rerr = err
	}
	if called != nil {
		called()
	}
	if errors.Is(rerr, errShareBusy) {
		return s.shareBusy(ctx, r)
	}
	if rerr != nil {
		s.log.Warn("revoke failed", "request", r.ID, "target", r.Target, "attempt", r.Attempts+1, "err", rerr)
		msg := safeError(rerr)
		return s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
			if cur.State == ajar.StateActive {
				if err := s.beginRevoke(ctx, tx, cur, now, why); err != nil {
					return err
				}
			}
			cur.Attempts++
			cur.LastError = msg
			if err := s.audit(ctx, tx, ajar.ActorSystem, "revoke.error", cur.ID,
				map[string]any{"attempt": cur.Attempts, "error": msg}); err != nil {
				return err
			}
			switch {
			case cur.State == ajar.StateRevokeFailed:
				cur.NextAt = ptr(now.Add(s.sched.SlowRetry))
			case cur.Attempts >= s.sched.MaxRevokeAttempts:
				if err := transition(cur, ajar.StateRevokeFailed, now); err != nil {
					return err
				}
				cur.NextAt = ptr(now.Add(s.sched.SlowRetry))
				return s.audit(ctx, tx, ajar.ActorSystem, "request.revoke_failed", cur.ID,
					map[string]any{"attempts": cur.Attempts, "error": msg})
			default:
				cur.NextAt = ptr(now.Add(s.sched.backoff(cur.Attempts)))
			}
			return nil
		})
	}
	// Many revocations end at once (a burst of expiries): their final writes
	// share transactions, so that they do not queue for one commit each.
	return s.writeBatched(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		if cur.State == ajar.StateActive {
			if err := s.beginRevoke(ctx, tx, cur, now, why); err != nil {
				return err
			}
		}
		final := cur.EndReason.FinalState()
		if err := transition(cur, final, now); err != nil {
			return err
		}
		if final != ajar.StateGrantFailed {
			cur.LastError = "" // a grant failure keeps its reason for ajar show
		}
		details := map[string]any{"end_reason": cur.EndReason, "attempts": cur.Attempts + 1}
		if cur.ExpiresAt != nil {
			details["expires_at"] = cur.ExpiresAt
		}
		return s.audit(ctx, tx, ajar.ActorSystem, "request."+string(final), cur.ID, details)
	})
}

// safeError is the text of a provider error that may be shown and stored: an
// *ajar.Error's message, or the error text truncated (providers must not put
// secrets in errors).
func safeError(err error) string { return ajar.SafeMessage(err) }
