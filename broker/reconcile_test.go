package broker

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// accessFake is a provider whose access is a set of request ids, so a test can
// make access vanish or come back as a person would by hand. With share set, one
// requester's grants are one access (ajar.Sharer); it vends credentials too.
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

func (f *accessFake) IssueCredentials(ctx context.Context, h ajar.Handle, now time.Time) (ajar.Credentials, error) {
	return ajar.Credentials{AccessKeyID: "ASIAFAKE" + h.Grant.RequestID, SecretAccessKey: "s3cret", SessionToken: "t0ken", Expiration: h.Grant.ExpiresAt}, nil
}

type sharingFake struct{ *accessFake }

func (f sharingFake) ShareKey(req ajar.GrantRequest) string { return f.key(req) }

type fakeSet struct{ p ajar.Provider }

func (f fakeSet) ForTarget(string) (ajar.Provider, error)      { return f.p, nil }
func (f fakeSet) ForHandle(ajar.Handle) (ajar.Provider, error) { return f.p, nil }
func (f fakeSet) Kind(string) (string, error)                  { return "fake", nil }

type driftEnv struct {
	svc   *Service
	store *sqlite.Store
	now   *clock
	fake  *accessFake
	alice ajar.User
	bob   ajar.User
}

func newDriftEnv(t *testing.T, share bool) *driftEnv {
	t.Helper()
	pol, err := policy.Parse([]byte(`
users: [{id: alice@example.com}, {id: bob@example.com}]
targets: {cloud: {provider: fake}}
policies:
  - {name: cloud, targets: [cloud], requesters: [alice@example.com, bob@example.com], default_duration: 1h, max_duration: 2h, approval: {auto_approve: 'true'}}
reconcile: {interval: 1m, lookback: 1h}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
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
	svc, err := New(Config{Store: st, Policy: pol, Providers: fakeSet{prov}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := pol.User("alice@example.com")
	bob, _ := pol.User("bob@example.com")
	return &driftEnv{svc: svc, store: st, now: clk, fake: fake, alice: alice, bob: bob}
}

func (e *driftEnv) request(t *testing.T, u ajar.User) *ajar.Request {
	t.Helper()
	r, err := e.svc.CreateRequest(t.Context(), u, CreateInput{Target: "cloud", Duration: "30m", Reason: "drift test"})
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

func (e *driftEnv) reconcile(t *testing.T) ReconcileResult {
	t.Helper()
	res, err := e.svc.Reconcile(t.Context())
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

	if res := e.reconcile(t); res != (ReconcileResult{Checked: 3}) {
		t.Fatalf("no drift: %+v", res)
	}

	// By hand: the active request's access is removed, the ended one's is back.
	e.fake.set(active.ID, false)
	e.fake.set(ended.ID, true)
	res := e.reconcile(t)
	if res != (ReconcileResult{Checked: 3, Regranted: 1, Revoked: 1}) {
		t.Fatalf("drift: %+v", res)
	}
	if !e.fake.has(active.ID) || e.fake.has(ended.ID) {
		t.Fatal("drift not repaired")
	}
	var m dto.Metric
	if err := e.svc.metrics.drift.WithLabelValues("cloud").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 2 {
		t.Fatalf("ajar_drift_total{target=cloud} = %v, want 2", got)
	}
	if acts := e.actions(t, active.ID); !slices.Contains(acts, "drift.regranted") {
		t.Fatalf("active request's audit: %v", acts)
	}
	if acts := e.actions(t, ended.ID); !slices.Contains(acts, "drift.revoked") {
		t.Fatalf("ended request's audit: %v", acts)
	}
	// The re-grant's handle is stored.
	cur, _ := e.svc.getRequest(ctx, active.ID)
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

func TestIssueCredentials(t *testing.T) {
	e := newDriftEnv(t, false)
	ctx := t.Context()
	r := e.request(t, e.alice)
	out, err := e.svc.IssueCredentials(ctx, e.alice, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out.AccessKeyID != "ASIAFAKE"+r.ID || out.SecretAccessKey != "s3cret" || out.RequestID != r.ID || out.Target != "cloud" {
		t.Fatalf("credentials = %+v", out)
	}
	evs := e.events(t, r.ID)
	last := evs[len(evs)-1]
	if last.Action != "credentials.issued" || last.Actor != "alice@example.com" || !strings.Contains(string(last.Details), out.AccessKeyID) {
		t.Fatalf("last audit event %s %s %s", last.Action, last.Actor, last.Details)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Details), "s3cret") || strings.Contains(string(ev.Details), "t0ken") {
			t.Fatalf("a secret is in the audit log: %s %s", ev.Action, ev.Details)
		}
	}
	if _, err := e.svc.IssueCredentials(ctx, e.bob, r.ID); ajar.ErrorCode(err) != ajar.ENOTFOUND && ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("bob gets alice's credentials: %v", err)
	}
	if _, err := e.svc.Revoke(ctx, e.alice, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.IssueCredentials(ctx, e.alice, r.ID); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("credentials for a revoked request: %v", err)
	}
}
