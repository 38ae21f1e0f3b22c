package reconcile_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/reconcile"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// accessFake is a provider whose access is a set of request ids, so a test can
// make access vanish or come back as a person would by hand. With share set, one
// requester's grants are one access (ajar.Sharer).
type accessFake struct {
	share bool

	mu      sync.Mutex
	access  map[string]bool // by share key
	grants  int
	revokes int
}

func (f *accessFake) key(req ajar.GrantRequest) string {
	if f.share {
		return req.Requester
	}
	return req.RequestID
}

func (f *accessFake) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grants++
	f.access[f.key(req)] = true
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req, Data: json.RawMessage(`{"n":` + string(rune('0'+f.grants%10)) + `}`)}, nil
}

func (f *accessFake) Revoke(ctx context.Context, h ajar.Handle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes++
	delete(f.access, f.key(h.Grant))
	return nil
}

func (f *accessFake) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.access[f.key(h.Grant)], nil
}

func (f *accessFake) set(key string, present bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if present {
		f.access[key] = true
	} else {
		delete(f.access, key)
	}
}

func (f *accessFake) has(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.access[key]
}

type sharingFake struct{ *accessFake }

func (f sharingFake) ShareKey(req ajar.GrantRequest) string { return f.key(req) }

type fakeSet struct{ p ajar.Provider }

func (f fakeSet) ForTarget(string) (ajar.Provider, error)      { return f.p, nil }
func (f fakeSet) ForHandle(ajar.Handle) (ajar.Provider, error) { return f.p, nil }
func (f fakeSet) Kind(string) (string, error)                  { return "fake", nil }

// testPolicy has a target granted at once (cloud) and one bob approves (db).
const testPolicy = `
users:
  - {id: alice@example.com, groups: [eng]}
  - {id: bob@example.com, groups: [eng, sre]}
  - {id: carol@example.com, groups: [sre]}
targets: {cloud: {provider: fake}, db: {provider: fake}}
policies:
  - {name: cloud, targets: [cloud], requesters: [group:eng], default_duration: 1h, max_duration: 2h, approval: {auto_approve: 'true'}}
  - {name: db, targets: [db], requesters: [group:eng], default_duration: 1h, max_duration: 2h, approval: {steps: [{approvers: [group:sre], count: 1}]}}
reconcile: {interval: 1m, lookback: 1h}
`

func parsePolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

type driftEnv struct {
	svc   *broker.Service
	check *reconcile.Checker
	reg   *prometheus.Registry
	store *sqlite.Store
	now   *clock
	pol   *policy.Policy
	fake  *accessFake
	alice ajar.User
	bob   ajar.User
}

func newDriftEnv(t *testing.T, share bool) *driftEnv {
	t.Helper()
	pol := parsePolicy(t, testPolicy)
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fake := &accessFake{share: share, access: map[string]bool{}}
	var prov ajar.Provider = fake
	if share {
		prov = sharingFake{fake}
	}
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: fakeSet{prov}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	check, err := reconcile.New(reconcile.Config{Store: st, Policy: pol, Providers: fakeSet{prov}, Core: svc, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := pol.User("alice@example.com")
	bob, _ := pol.User("bob@example.com")
	return &driftEnv{svc: svc, check: check, reg: reg, store: st, now: clk, pol: pol, fake: fake, alice: alice, bob: bob}
}

func (e *driftEnv) request(t *testing.T, u ajar.User) *ajar.Request {
	t.Helper()
	r, err := e.svc.CreateRequest(t.Context(), u, ajar.CreateInput{Target: "cloud", Duration: "30m", Reason: "drift test"})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s, want active", r.State)
	}
	return r
}

func (e *driftEnv) events(t *testing.T, id string) []ajar.AuditEvent {
	t.Helper()
	var evs []ajar.AuditEvent
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(t.Context(), ajar.AuditFilter{Subject: id})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (e *driftEnv) actions(t *testing.T, id string) []string {
	var out []string
	for _, ev := range e.events(t, id) {
		out = append(out, ev.Action)
	}
	return out
}

func (e *driftEnv) reconcile(t *testing.T) reconcile.Result {
	t.Helper()
	res, err := e.check.Reconcile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestReconcileRepairsDrift(t *testing.T) {
	e := newDriftEnv(t, false)
	ctx := t.Context()
	active := e.request(t, e.alice)
	ended := e.request(t, e.alice)
	old := e.request(t, e.bob)
	if _, err := e.svc.Revoke(ctx, e.alice, ended.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Revoke(ctx, e.bob, old.ID); err != nil {
		t.Fatal(err)
	}

	if res := e.reconcile(t); res != (reconcile.Result{Checked: 3}) {
		t.Fatalf("no drift: %+v", res)
	}

	// By hand: the active request's access is removed, the ended one's is back.
	e.fake.set(active.ID, false)
	e.fake.set(ended.ID, true)
	res := e.reconcile(t)
	if res != (reconcile.Result{Checked: 3, Regranted: 1, Revoked: 1}) {
		t.Fatalf("drift: %+v", res)
	}
	if !e.fake.has(active.ID) || e.fake.has(ended.ID) {
		t.Fatal("drift not repaired")
	}
	if got := metricValue(t, e.reg, "ajar_drift_total"); got != 2 {
		t.Fatalf("ajar_drift_total{target=cloud} = %v, want 2", got)
	}
	if acts := e.actions(t, active.ID); !slices.Contains(acts, "drift.regranted") {
		t.Fatalf("active request's audit: %v", acts)
	}
	if acts := e.actions(t, ended.ID); !slices.Contains(acts, "drift.revoked") {
		t.Fatalf("ended request's audit: %v", acts)
	}
	// The re-grant's handle is stored.
	cur, _ := e.svc.GetRequest(ctx, e.alice, active.ID)
	if string(cur.Handle.Data) == string(active.Handle.Data) || cur.State != ajar.StateActive {
		t.Fatalf("handle after re-grant: %s (was %s), state %s", cur.Handle.Data, active.Handle.Data, cur.State)
	}

	// Past the lookback, an ended request is not looked at any more; near its
	// expiry an active one is the scheduler's.
	e.now.Add(29*time.Minute + 30*time.Second)
	e.fake.set(active.ID, false)
	if res := e.reconcile(t); res.Regranted != 0 {
		t.Fatalf("re-granted a request about to expire: %+v", res)
	}
	e.now.Add(2 * time.Hour)
	if _, err := e.svc.RunDue(ctx); err != nil {
		t.Fatal(err)
	}
	e.fake.set(old.ID, true)
	// Only the request that just expired is checked now.
	if res := e.reconcile(t); res.Revoked != 0 || res.Checked != 1 || !e.fake.has(old.ID) {
		t.Fatalf("past the lookback: %+v", res)
	}
}

func TestSharedAccessStaysUntilTheLastHolderEnds(t *testing.T) {
	e := newDriftEnv(t, true)
	ctx := t.Context()
	r1 := e.request(t, e.alice)
	r2 := e.request(t, e.alice)
	rb := e.request(t, e.bob)
	if _, err := e.svc.Revoke(ctx, e.alice, r1.ID); err != nil {
		t.Fatal(err)
	}
	if !e.fake.has("alice@example.com") {
		t.Fatal("revoking one request removed access the other holds")
	}
	if acts := e.actions(t, r1.ID); !slices.Contains(acts, "revoke.shared") || !slices.Contains(acts, "request.revoked") {
		t.Fatalf("audit of the first request: %v", acts)
	}
	// The shared access is r2's, not drift of r1.
	if res := e.reconcile(t); res.Revoked != 0 {
		t.Fatalf("reconcile took shared access: %+v", res)
	}
	if _, err := e.svc.Revoke(ctx, e.alice, r2.ID); err != nil {
		t.Fatal(err)
	}
	if e.fake.has("alice@example.com") {
		t.Fatal("access stays after the last holder ended")
	}
	if !e.fake.has("bob@example.com") {
		t.Fatal("another requester's access went too")
	}
	_ = rb
}

// clock is a settable clock shared by the store and the broker.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// metricValue is the value of the first series of the counter or gauge name in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
