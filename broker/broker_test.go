package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify/outbox"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

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

// fakeProvider records calls and fails on demand. It stands in for a real system
// only to test the scheduler's retry logic; real providers have their own suites.
type fakeProvider struct {
	mu          sync.Mutex
	grants      []ajar.GrantRequest
	revokes     []ajar.Handle
	grantFails  int // fail this many Grant calls, then succeed
	revokeFails int
	permanent   bool // Grant fails with EINVALID
	// onGrant, if set, runs inside Grant before it answers (without the lock).
	onGrant func()
}

func (p *fakeProvider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if p.onGrant != nil {
		p.onGrant()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.grants = append(p.grants, req)
	if p.permanent {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "no such group")
	}
	if p.grantFails > 0 {
		p.grantFails--
		return ajar.Handle{}, errors.New("target unavailable")
	}
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req, Data: []byte(`{"rule":"r-` + req.RequestID + `"}`)}, nil
}

func (p *fakeProvider) Revoke(ctx context.Context, h ajar.Handle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes = append(p.revokes, h)
	if p.revokeFails > 0 {
		p.revokeFails--
		return errors.New("target unavailable")
	}
	return nil
}

func (p *fakeProvider) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.grants), len(p.revokes)
}

type fakeProviders struct{ p *fakeProvider }

func (f fakeProviders) ForTarget(string) (ajar.Provider, error)      { return f.p, nil }
func (f fakeProviders) ForHandle(ajar.Handle) (ajar.Provider, error) { return f.p, nil }
func (f fakeProviders) Kind(string) (string, error)                  { return "fake", nil }

type env struct {
	svc    *Service
	store  *sqlite.Store
	clock  *clock
	prov   *fakeProvider
	users  map[string]ajar.User
	outbox *outbox.Outbox // notification delivery (newWorkflowEnv)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pol, err := policy.Parse([]byte(testPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prov := &fakeProvider{}
	svc, err := New(Config{
		Store: st, Policy: pol, Providers: fakeProviders{prov}, Now: clk.Now,
		Scheduler: SchedulerConfig{MaxGrantAttempts: 3, MaxRevokeAttempts: 3, BaseBackoff: time.Second, MaxBackoff: 4 * time.Second, SlowRetry: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]ajar.User{}
	for _, u := range pol.Users() {
		users[u.ID[:len(u.ID)-len("@example.com")]] = u
	}
	return &env{svc: svc, store: st, clock: clk, prov: prov, users: users}
}

func (e *env) create(t *testing.T, user, target, dur string) *ajar.Request {
	t.Helper()
	r, err := e.svc.CreateRequest(t.Context(), e.users[user], ajar.CreateInput{Target: target, Duration: dur, Reason: "test"})
	if err != nil {
		t.Fatalf("create %s %s: %v", target, dur, err)
	}
	return r
}

func (e *env) get(t *testing.T, id string) *ajar.Request {
	t.Helper()
	r, err := e.svc.getRequest(t.Context(), id)
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

func (e *env) actions(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{Subject: id})
		for _, ev := range evs {
			out = append(out, ev.Action)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if ajar.ErrorCode(err) != code {
		t.Fatalf("error %v: code %q, want %q", err, ajar.ErrorCode(err), code)
	}
}

func TestAutoApprovedGrantsAtOnceAndExpires(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "web", "5m")
	if r.State != ajar.StateActive || r.ExpiresAt == nil || !r.ExpiresAt.Equal(e.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("auto-approved request: %s, expires %v", r.State, r.ExpiresAt)
	}
	if string(r.Handle.Data) == "" {
		t.Fatal("handle not recorded")
	}
	e.advance(t, 5*time.Minute-time.Second)
	if st := e.get(t, r.ID).State; st != ajar.StateActive {
		t.Fatalf("before expiry: %s", st)
	}
	e.advance(t, time.Second)
	got := e.get(t, r.ID)
	if got.State != ajar.StateExpired || got.EndedAt == nil {
		t.Fatalf("at expiry: %s", got.State)
	}
	if g, v := e.prov.counts(); g != 1 || v != 1 {
		t.Fatalf("provider saw %d grants, %d revokes", g, v)
	}
	if string(e.prov.revokes[0].Data) != string(r.Handle.Data) {
		t.Errorf("revoked with handle %s, granted %s", e.prov.revokes[0].Data, r.Handle.Data)
	}
	acts := e.actions(t, r.ID)
	if count(acts, "request.expired") != 1 || count(acts, "grant.started") != 1 || count(acts, "request.activated") != 1 {
		t.Errorf("audit: %v", acts)
	}
}

func TestApprovalRules(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	r := e.create(t, "erin", "web", "1h") // erin is an engineer and in sre
	if r.State != ajar.StatePending {
		t.Fatalf("1h request is %s", r.State)
	}
	_, err := e.svc.Approve(ctx, e.users["erin"], r.ID, "")
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.svc.Approve(ctx, e.users["dave"], r.ID, "")
	wantCode(t, err, ajar.ENOTFOUND) // dave cannot even see it
	_, err = e.svc.Deny(ctx, e.users["erin"], r.ID, "no")
	wantCode(t, err, ajar.EFORBIDDEN)
	if acts := e.actions(t, r.ID); count(acts, "approval.refused") != 2 {
		t.Errorf("self-approval and self-denial not audited: %v", acts)
	}
	if st := e.get(t, r.ID).State; st != ajar.StatePending {
		t.Fatalf("after refusals: %s", st)
	}
	got, err := e.svc.Approve(ctx, e.users["bob"], r.ID, "fine")
	if err != nil || got.State != ajar.StateActive {
		t.Fatalf("bob's approval: %v, %v", got, err)
	}
	_, err = e.svc.Approve(ctx, e.users["carol"], r.ID, "")
	wantCode(t, err, ajar.ECONFLICT)
}

func TestMultiStepApproval(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	r := e.create(t, "alice", "db", "1h")
	steps := []struct {
		user  string
		code  string
		state ajar.State
	}{
		{"dave", ajar.EFORBIDDEN, ajar.StatePending}, // leads approve step 2, not step 1
		{"bob", "", ajar.StatePending},
		{"bob", ajar.ECONFLICT, ajar.StatePending},   // counts once
		{"carol", "", ajar.StatePending},             // step 1 done
		{"erin", ajar.EFORBIDDEN, ajar.StatePending}, // sre, but step 2 needs leads
		{"dave", "", ajar.StateActive},
	}
	for i, s := range steps {
		_, err := e.svc.Approve(ctx, e.users[s.user], r.ID, "")
		if ajar.ErrorCode(err) != s.code {
			t.Fatalf("step %d (%s): error %v, want code %q", i, s.user, err, s.code)
		}
		if st := e.get(t, r.ID).State; st != s.state {
			t.Fatalf("step %d (%s): state %s, want %s", i, s.user, st, s.state)
		}
	}
	if n := len(e.get(t, r.ID).Approvals); n != 3 {
		t.Errorf("%d approvals recorded, want 3", n)
	}
}

func TestDenyCancelRevokePermissions(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	r := e.create(t, "alice", "web", "1h")
	_, err := e.svc.Deny(ctx, e.users["bob"], r.ID, "")
	wantCode(t, err, ajar.EINVALID)
	_, err = e.svc.Cancel(ctx, e.users["bob"], r.ID)
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.svc.Revoke(ctx, e.users["alice"], r.ID)
	wantCode(t, err, ajar.ECONFLICT) // pending holds no access
	got, err := e.svc.Deny(ctx, e.users["bob"], r.ID, "not today")
	if err != nil || got.State != ajar.StateDenied {
		t.Fatalf("deny: %v %v", got, err)
	}
	_, err = e.svc.Approve(ctx, e.users["carol"], r.ID, "")
	wantCode(t, err, ajar.ECONFLICT)

	c := e.create(t, "alice", "web", "1h")
	if got, err := e.svc.Cancel(ctx, e.users["alice"], c.ID); err != nil || got.State != ajar.StateCancelled {
		t.Fatalf("cancel: %v %v", got, err)
	}

	a := e.create(t, "alice", "web", "5m")
	_, err = e.svc.Revoke(ctx, e.users["bob"], a.ID)
	wantCode(t, err, ajar.EFORBIDDEN) // an approver is not an admin
	_, err = e.svc.Cancel(ctx, e.users["alice"], a.ID)
	wantCode(t, err, ajar.ECONFLICT) // active: revoke, not cancel
	got, err = e.svc.Revoke(ctx, e.users["root"], a.ID)
	if err != nil || got.State != ajar.StateRevoked {
		t.Fatalf("admin revoke: %v %v", got, err)
	}
	if acts := e.actions(t, a.ID); count(acts, "request.revoked") != 1 {
		t.Errorf("audit: %v", acts)
	}
}

func TestPendingTimesOut(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "web", "1h")
	e.advance(t, 10*time.Minute-time.Second)
	if st := e.get(t, r.ID).State; st != ajar.StatePending {
		t.Fatalf("before the timeout: %s", st)
	}
	e.advance(t, time.Second)
	if st := e.get(t, r.ID).State; st != ajar.StateTimedOut {
		t.Fatalf("after the timeout: %s", st)
	}
	_, err := e.svc.Approve(t.Context(), e.users["bob"], r.ID, "")
	wantCode(t, err, ajar.ECONFLICT)
}

func TestGrantRetriesThenSucceeds(t *testing.T) {
	e := newEnv(t)
	e.prov.grantFails = 2
	r := e.create(t, "alice", "web", "5m")
	if r.State != ajar.StateApproved || r.Attempts != 1 || r.LastError == "" {
		t.Fatalf("after a failed grant: %s attempts=%d err=%q", r.State, r.Attempts, r.LastError)
	}
	e.advance(t, 5*time.Second)
	e.advance(t, 5*time.Second)
	got := e.get(t, r.ID)
	if got.State != ajar.StateActive || got.Attempts != 0 {
		t.Fatalf("after retries: %s attempts=%d", got.State, got.Attempts)
	}
	// The window was fixed when the intent was committed, before the first call.
	if !got.ExpiresAt.Equal(*r.ExpiresAt) {
		t.Errorf("expiry moved from %v to %v", r.ExpiresAt, got.ExpiresAt)
	}
}

func TestGrantFailsAndCleansUp(t *testing.T) {
	e := newEnv(t)
	e.prov.grantFails = 100
	r := e.create(t, "alice", "web", "5m")
	for range 5 {
		e.advance(t, 10*time.Second)
	}
	got := e.get(t, r.ID)
	if got.State != ajar.StateGrantFailed {
		t.Fatalf("state %s, want grant_failed", got.State)
	}
	g, v := e.prov.counts()
	if g != 3 || v != 1 {
		t.Errorf("provider saw %d grants (want 3) and %d revokes (want 1: the cleanup)", g, v)
	}
	if len(e.prov.revokes[0].Data) != 0 || e.prov.revokes[0].Grant.RequestID != r.ID {
		t.Errorf("cleanup revoked %+v, want the intent handle", e.prov.revokes[0])
	}
	e2 := newEnv(t)
	e2.prov.permanent = true
	r2 := e2.create(t, "alice", "web", "5m")
	if r2.State != ajar.StateGrantFailed {
		t.Errorf("permanent error: %s, want grant_failed at once", r2.State)
	}
}

func TestRevokeRetriesThenRevokeFailedThenRecovers(t *testing.T) {
	e := newEnv(t)
	e.prov.revokeFails = 4
	r := e.create(t, "alice", "web", "5m")
	e.advance(t, 5*time.Minute) // attempt 1 fails
	got := e.get(t, r.ID)
	if got.State != ajar.StateRevoking || got.Attempts != 1 {
		t.Fatalf("after one failure: %s attempts=%d", got.State, got.Attempts)
	}
	e.advance(t, 5*time.Second) // attempt 2
	e.advance(t, 5*time.Second) // attempt 3: out of fast retries
	got = e.get(t, r.ID)
	if got.State != ajar.StateRevokeFailed {
		t.Fatalf("after 3 failures: %s, want revoke_failed", got.State)
	}
	e.advance(t, 30*time.Second) // the slow timer has not fired
	if _, v := e.prov.counts(); v != 3 {
		t.Fatalf("%d revoke calls before the slow retry, want 3", v)
	}
	e.advance(t, 31*time.Second) // attempt 4 fails, stays revoke_failed
	if st := e.get(t, r.ID).State; st != ajar.StateRevokeFailed {
		t.Fatalf("state %s", st)
	}
	e.advance(t, time.Minute+time.Second) // attempt 5 succeeds
	got = e.get(t, r.ID)
	if got.State != ajar.StateExpired || got.NextAt != nil {
		t.Fatalf("after recovery: %s next=%v", got.State, got.NextAt)
	}
	acts := e.actions(t, r.ID)
	if count(acts, "request.expired") != 1 || count(acts, "request.revoke_failed") != 1 || count(acts, "revoke.error") != 4 {
		t.Errorf("audit: %v", acts)
	}
}

// TestIntentWithoutGrantIsRevokedAfterCrash models a crash between committing the
// grant intent and the provider's answer: the store knows the expiry, so the
// restarted scheduler revokes by the intent handle and ends the request once.
func TestIntentWithoutGrantIsRevokedAfterCrash(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "web", "1h")
	ctx := t.Context()
	// bob approves, the intent is committed, and the process dies before Grant.
	err := e.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, r.ID)
		if err != nil {
			return err
		}
		now := tx.Now()
		cur.State = ajar.StateApproved
		cur.ExpiresAt = ptr(now.Add(time.Hour))
		cur.Handle = &ajar.Handle{Provider: "fake", Version: 1, Grant: ajar.GrantRequest{RequestID: cur.ID, Target: "web", ExpiresAt: *cur.ExpiresAt}}
		cur.NextAt = ptr(now.Add(30 * time.Second)) // the dead worker's lease
		return tx.UpdateRequest(ctx, cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.advance(t, 2*time.Hour) // restart long after expiry
	got := e.get(t, r.ID)
	if got.State != ajar.StateExpired {
		t.Fatalf("state %s, want expired", got.State)
	}
	g, v := e.prov.counts()
	if g != 0 || v != 1 {
		t.Errorf("provider saw %d grants (want none after expiry) and %d revokes", g, v)
	}
	if acts := e.actions(t, r.ID); count(acts, "request.expired") != 1 {
		t.Errorf("audit: %v", acts)
	}
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	c := SchedulerConfig{BaseBackoff: time.Second, MaxBackoff: 8 * time.Second}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 10: 8 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := c.backoff(attempt)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("backoff(%d) is not jittered", attempt)
		}
	}
}

// TestGrantFinishingAfterTheEndIsRemoved models a worker that stalls inside the
// provider's Grant past its lease while another replica ends the request: the
// access it creates afterwards belongs to nobody and must be removed at once.
func TestGrantFinishingAfterTheEndIsRemoved(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	r := e.create(t, "alice", "web", "1h")
	inGrant, release := make(chan struct{}), make(chan struct{})
	e.prov.onGrant = func() { close(inGrant); <-release }
	done := make(chan error, 1)
	go func() {
		_, err := e.svc.Approve(ctx, e.users["bob"], r.ID, "")
		done <- err
	}()
	<-inGrant
	// Meanwhile the request is ended elsewhere (its lease ran out, another
	// replica revoked it by the intent handle).
	err := e.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, r.ID)
		if err != nil {
			return err
		}
		cur.State, cur.EndReason, cur.EndedAt, cur.NextAt = ajar.StateRevoked, ajar.EndRevoked, ptr(tx.Now()), nil
		return tx.UpdateRequest(ctx, cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("approve: %v", err)
	}
	g, v := e.prov.counts()
	if g != 1 || v != 1 {
		t.Fatalf("provider saw %d grants and %d revokes, want 1 and 1", g, v)
	}
	if len(e.prov.revokes[0].Data) == 0 {
		t.Errorf("revoked the intent, not the handle the late grant returned")
	}
	acts := e.actions(t, r.ID)
	if count(acts, "grant.orphan_revoked") != 1 {
		t.Errorf("audit: %v", acts)
	}
	if st := e.get(t, r.ID).State; st != ajar.StateRevoked {
		t.Errorf("state %s", st)
	}
}
