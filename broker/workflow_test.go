package broker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/notify/outbox"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// workflowPolicy exercises multi-step approval, escalation, conditions,
// extension (with and without approval), break-glass and an SSH target.
const workflowPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: carol@example.com, groups: [sre]}
  - {id: dave@example.com, groups: [leads]}
  - {id: erin@example.com, groups: [sre, leads]}
  - {id: frank@example.com, groups: [engineers, sre, leads]}
  - {id: root@example.com, groups: [secops, sre]}
admins: [group:secops]
targets:
  web: {provider: fake}
  db: {provider: fake}
  ssh: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    require_reason: true
    deny:
      - {expr: 'request.kind != "breakglass" && request.reason.contains("friday")', message: no changes on a friday}
    require:
      - {expr: 'request.duration <= duration("1h") || request.ticket != ""', message: a ticket for more than an hour, field: ticket}
    approval:
      timeout: 1h
      steps: [{approvers: [group:sre], count: 1, escalate_after: 10m, escalate_to: [group:leads]}]
      auto_approve: 'request.duration <= duration("5m")'
    extend: {max_extensions: 2, max_total: 3h}
    breakglass: {allowed: [group:sre]}
  - name: db
    targets: [db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      timeout: 1h
      steps:
        - {approvers: [group:sre], count: 2}
        - {approvers: [group:leads], count: 1}
  - name: ssh
    targets: [ssh]
    requesters: [group:engineers]
    default_duration: 1h
    max_duration: 1h
    approval:
      auto_approve: 'true'
    extend: {max_extensions: 2, max_total: 2h, approval: none}
`

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

// newWorkflowEnv is newEnv with workflowPolicy (or src), the real ssh-cert
// provider for target "ssh", and notifications to sinks.
func newWorkflowEnv(t *testing.T, src string, ncfg events.NotifyConfig) *env {
	t.Helper()
	return newWorkflowEnvDelivery(t, src, ncfg, outbox.Config{})
}

// newWorkflowEnvDelivery is newWorkflowEnv with notifications delivered to
// ncfg.Sinks as dcfg says.
func newWorkflowEnvDelivery(t *testing.T, src string, ncfg events.NotifyConfig, dcfg outbox.Config) *env {
	t.Helper()
	if src == "" {
		src = workflowPolicy
	}
	pol, err := policy.Parse([]byte(src), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
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
	reg := prometheus.NewRegistry()
	dcfg.Store, dcfg.Sinks, dcfg.Registerer = st, ncfg.Sinks, reg
	ob, err := outbox.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	ncfg.Wake = ob.Kick
	prov := &fakeProvider{}
	svc, err := New(Config{
		Store: st, Policy: pol, Providers: sshFakeProviders{prov, sp}, Now: clk.Now, Metrics: NewMetrics(reg),
		Scheduler: SchedulerConfig{MaxGrantAttempts: 3, MaxRevokeAttempts: 3, BaseBackoff: time.Second, MaxBackoff: 4 * time.Second, SlowRetry: time.Minute},
		Notify:    ncfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]ajar.User{}
	for _, u := range pol.Users() {
		users[u.ID[:len(u.ID)-len("@example.com")]] = u
	}
	return &env{svc: svc, store: st, clock: clk, prov: prov, users: users, outbox: ob}
}

// recordSink keeps what it is sent, and fails while down.
type recordSink struct {
	name   string
	events []string // nil: all
	mu     sync.Mutex
	got    []notify.Event
	raw    [][]byte
	down   bool
	calls  int
}

func (s *recordSink) Name() string { return s.name }
func (s *recordSink) Wants(t string) bool {
	return s.events == nil || slices.Contains(s.events, t)
}

func (s *recordSink) Send(ctx context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return errors.New("connection refused")
	}
	var e notify.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return err
	}
	s.got = append(s.got, e)
	s.raw = append(s.raw, b)
	return nil
}

func (s *recordSink) setDown(v bool) { s.mu.Lock(); s.down = v; s.mu.Unlock() }

func (s *recordSink) received() []notify.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// types lists "TYPE REQUEST" for each event received.
func types(evs []notify.Event) []string {
	var out []string
	for _, e := range evs {
		id := ""
		if e.Request != nil {
			id = e.Request.ID
		}
		out = append(out, e.Type+" "+id)
	}
	return out
}

func (e *env) deliver(t *testing.T) int {
	t.Helper()
	n, err := e.outbox.DeliverDue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) createIn(t *testing.T, user string, in ajar.CreateInput) *ajar.Request {
	t.Helper()
	r, err := e.svc.CreateRequest(t.Context(), e.users[user], in)
	if err != nil {
		t.Fatalf("create %+v: %v", in, err)
	}
	return r
}

// TestMultiStepApprovalTable: counts, distinct approvers, an approver in two
// steps counting once, deny ending the request, and self-approval refused in
// every step.
func TestMultiStepApprovalTable(t *testing.T) {
	type act struct {
		user, verb string // "approve" or "deny"
		code       string // "" for success
		state      ajar.State
	}
	tests := []struct {
		name      string
		requester string
		acts      []act
		refusals  int // approval.refused audit events
	}{
		{"counts per step", "alice", []act{
			{"bob", "approve", "", ajar.StatePending},
			{"dave", "approve", ajar.EFORBIDDEN, ajar.StatePending}, // step 1 needs sre
			{"carol", "approve", "", ajar.StatePending},             // step 1 has its 2
			{"dave", "approve", "", ajar.StateActive},
		}, 1},
		{"distinct approvers", "alice", []act{
			{"bob", "approve", "", ajar.StatePending},
			{"bob", "approve", ajar.ECONFLICT, ajar.StatePending},
			{"carol", "approve", "", ajar.StatePending},
			{"erin", "approve", "", ajar.StateActive},
		}, 0},
		{"an approver of two steps counts once", "alice", []act{
			{"erin", "approve", "", ajar.StatePending},             // erin (sre) in step 1
			{"bob", "approve", "", ajar.StatePending},              // step 1 done
			{"erin", "approve", ajar.ECONFLICT, ajar.StatePending}, // erin (leads) again in step 2: no
			{"dave", "approve", "", ajar.StateActive},
		}, 0},
		{"deny ends the request", "alice", []act{
			{"bob", "approve", "", ajar.StatePending},
			{"dave", "deny", ajar.EFORBIDDEN, ajar.StatePending}, // a later step's approver decides only that step
			{"carol", "deny", "", ajar.StateDenied},
			{"dave", "approve", ajar.ECONFLICT, ajar.StateDenied},
		}, 1},
		{"self-approval refused in every step", "frank", []act{
			{"frank", "approve", ajar.EFORBIDDEN, ajar.StatePending},
			{"bob", "approve", "", ajar.StatePending},
			{"carol", "approve", "", ajar.StatePending},
			{"frank", "approve", ajar.EFORBIDDEN, ajar.StatePending}, // frank leads step 2 too
			{"frank", "deny", ajar.EFORBIDDEN, ajar.StatePending},
			{"dave", "approve", "", ajar.StateActive},
		}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newWorkflowEnv(t, "", events.NotifyConfig{})
			r := e.create(t, tc.requester, "db", "1h")
			for i, a := range tc.acts {
				var err error
				if a.verb == "approve" {
					_, err = e.svc.Approve(t.Context(), e.users[a.user], r.ID, "")
				} else {
					_, err = e.svc.Deny(t.Context(), e.users[a.user], r.ID, "no")
				}
				if ajar.ErrorCode(err) != a.code {
					t.Fatalf("%d: %s %s: %v, want code %q", i, a.user, a.verb, err, a.code)
				}
				if st := e.get(t, r.ID).State; st != a.state {
					t.Fatalf("%d: %s %s: state %s, want %s", i, a.user, a.verb, st, a.state)
				}
			}
			if n := count(e.actions(t, r.ID), "approval.refused"); n != tc.refusals {
				t.Errorf("%d approval.refused events, want %d", n, tc.refusals)
			}
		})
	}
}

// TestConditionsAtCreate: deny and require decide before anything is stored.
func TestConditionsAtCreate(t *testing.T) {
	e := newWorkflowEnv(t, "", events.NotifyConfig{})
	ctx := t.Context()
	_, err := e.svc.CreateRequest(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Duration: "5m", Reason: "friday deploy"})
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN || !strings.Contains(ajar.ErrorMessage(err), "no changes on a friday") {
		t.Fatalf("deny: %v", err)
	}
	_, err = e.svc.CreateRequest(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Duration: "2h", Reason: "long"})
	if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "ticket" {
		t.Fatalf("require: %v", err)
	}
	if r := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Duration: "2h", Reason: "long", Ticket: "OPS-1"}); r.State != ajar.StatePending {
		t.Fatalf("with a ticket: %s", r.State)
	}
	var n int
	e.store.View(ctx, func(tx ajar.ReadTx) error {
		rs, err := tx.ListRequests(ctx, ajar.RequestFilter{})
		n = len(rs)
		return err
	})
	if n != 1 {
		t.Errorf("%d requests stored, want only the accepted one", n)
	}
}

// TestScheduledRequest: a start 10s ahead is approved at once, becomes active
// at the start (not before) and expires at start + duration.
func TestScheduledRequest(t *testing.T) {
	e := newWorkflowEnv(t, "", events.NotifyConfig{})
	start := e.clock.Now().Add(10 * time.Second)
	r := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Duration: "5m", Reason: "later", Start: &start})
	if r.State != ajar.StateApproved || r.Handle != nil {
		t.Fatalf("at once: %s (handle %v), want approved and not granted", r.State, r.Handle)
	}
	e.advance(t, 9*time.Second)
	if got := e.get(t, r.ID); got.State != ajar.StateApproved {
		t.Fatalf("1s before the start: %s", got.State)
	}
	if g, _ := e.prov.counts(); g != 0 {
		t.Fatalf("granted %d times before the start", g)
	}
	e.advance(t, time.Second)
	got := e.get(t, r.ID)
	if got.State != ajar.StateActive || !got.ExpiresAt.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("at the start: %s, expires %v, want active until %v", got.State, got.ExpiresAt, start.Add(5*time.Minute))
	}
	e.advance(t, 5*time.Minute-time.Second)
	if st := e.get(t, r.ID).State; st != ajar.StateActive {
		t.Fatalf("1s before start + duration: %s", st)
	}
	e.advance(t, time.Second)
	if st := e.get(t, r.ID).State; st != ajar.StateExpired {
		t.Fatalf("at start + duration: %s", st)
	}
}

// newAuthorizedKey is a fresh public key in authorized_keys format.
func newAuthorizedKey(t *testing.T) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(sp)
}

// issueCert certifies a fresh key for u's active request with its provider
// (package sshaccess issues certificates the same way) and returns the
// certificate: what the request's handle lets the signer put in it.
func (e *env) issueCert(t *testing.T, user, id string) *ssh.Certificate {
	t.Helper()
	r, err := e.svc.GetRequest(t.Context(), e.users[user], id)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != ajar.StateActive || r.Handle == nil {
		t.Fatalf("request %s is %s, not active", id, r.State)
	}
	prov, err := e.svc.providers.ForHandle(*r.Handle)
	if err != nil {
		t.Fatal(err)
	}
	line, _, err := prov.(ajar.SSHCertIssuer).SignCert(*r.Handle, newAuthorizedKey(t), 1, e.clock.Now())
	if err != nil {
		t.Fatalf("SignCert: %v", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ssh.Certificate)
}

// TestExtendSSH: extending before expiry keeps the access active with no gap,
// and the new certificate has the new valid-before; past max_total is refused
// naming the limit.
func TestExtendSSH(t *testing.T) {
	e := newWorkflowEnv(t, "", events.NotifyConfig{})
	ctx := t.Context()
	r := e.create(t, "alice", "ssh", "1h")
	if r.State != ajar.StateActive {
		t.Fatalf("ssh request: %s", r.State)
	}
	exp1 := *r.ExpiresAt
	if c := e.issueCert(t, "alice", r.ID); time.Unix(int64(c.ValidBefore), 0).UTC() != exp1 {
		t.Fatalf("first certificate valid before %v, want %v", time.Unix(int64(c.ValidBefore), 0), exp1)
	}
	e.advance(t, 50*time.Minute)
	_, err := e.svc.Extend(ctx, e.users["bob"], r.ID, ajar.ExtendInput{By: "30m"})
	wantCode(t, err, ajar.ENOTFOUND) // bob cannot even see it
	out, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m", Reason: "not done"})
	if err != nil {
		t.Fatal(err)
	}
	exp2 := exp1.Add(30 * time.Minute)
	if out.Extension.State != ajar.ExtensionApplied || out.Request.State != ajar.StateActive || !out.Request.ExpiresAt.Equal(exp2) ||
		!out.Request.Handle.Grant.ExpiresAt.Equal(exp2) || out.Request.Duration != 90*time.Minute {
		t.Fatalf("after extending: %+v %+v", out.Extension, out.Request)
	}
	if c := e.issueCert(t, "alice", r.ID); time.Unix(int64(c.ValidBefore), 0).UTC() != exp2 {
		t.Fatalf("new certificate valid before %v, want %v", time.Unix(int64(c.ValidBefore), 0).UTC(), exp2)
	}
	// Past the first expiry: still active, never revoked in between.
	e.advance(t, 15*time.Minute)
	if got := e.get(t, r.ID); got.State != ajar.StateActive {
		t.Fatalf("after the first expiry: %s", got.State)
	}
	e.issueCert(t, "alice", r.ID)
	_, err = e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "31m"})
	if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "by" || !strings.Contains(ajar.ErrorMessage(err), "extend.max_total 2h") {
		t.Fatalf("past max_total: %v", err)
	}
	if _, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "1m"})
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN || !strings.Contains(ajar.ErrorMessage(err), "extend.max_extensions") {
		t.Fatalf("a third extension: %v", err)
	}
	e.advance(t, 55*time.Minute-time.Second) // 2h in all since the start
	if st := e.get(t, r.ID).State; st != ajar.StateActive {
		t.Fatalf("just before the extended expiry: %s", st)
	}
	e.advance(t, time.Second)
	if st := e.get(t, r.ID).State; st != ajar.StateExpired {
		t.Fatalf("at the extended expiry: %s", st)
	}
	acts := e.actions(t, r.ID)
	if count(acts, "request.extended") != 2 || count(acts, "revoke.error") != 0 || count(acts, "request.expired") != 1 {
		t.Errorf("audit: %v", acts)
	}
	_, err = e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "1m"})
	wantCode(t, err, ajar.ECONFLICT)
}

// TestExtendWithApproval: an extension needs the same approval as the request
// unless the policy says otherwise; approvers decide with Approve and Deny on
// the request, which stays active meanwhile.
func TestExtendWithApproval(t *testing.T) {
	sink := &recordSink{name: "chat"}
	e := newWorkflowEnv(t, "", events.NotifyConfig{Sinks: []notify.Sink{sink}})
	ctx := t.Context()
	// The ticket: the require condition sees the whole window, 1h30m once extended.
	r := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Duration: "1h", Reason: "deploy", Ticket: "OPS-1"})
	if _, err := e.svc.Approve(ctx, e.users["bob"], r.ID, ""); err != nil {
		t.Fatal(err)
	}
	exp := *e.get(t, r.ID).ExpiresAt
	out, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m", Reason: "more"})
	if err != nil || out.Extension.State != ajar.ExtensionPending || !out.Request.ExpiresAt.Equal(exp) {
		t.Fatalf("extension needing approval: %+v, %v", out, err)
	}
	_, err = e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m"})
	wantCode(t, err, ajar.ECONFLICT) // one at a time
	_, err = e.svc.Approve(ctx, e.users["alice"], r.ID, "")
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.svc.Approve(ctx, e.users["dave"], r.ID, "")
	wantCode(t, err, ajar.EFORBIDDEN) // escalation is for pending requests only
	got, err := e.svc.Approve(ctx, e.users["carol"], r.ID, "ok")
	if err != nil || got.State != ajar.StateActive || !got.ExpiresAt.Equal(exp.Add(30*time.Minute)) {
		t.Fatalf("carol approves the extension: %+v, %v", got, err)
	}
	if _, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	got, err = e.svc.Deny(ctx, e.users["bob"], r.ID, "enough")
	if err != nil || got.State != ajar.StateActive || !got.ExpiresAt.Equal(exp.Add(30*time.Minute)) {
		t.Fatalf("bob denies the second: %+v, %v", got, err)
	}
	var exts []ajar.Extension
	e.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		exts, err = tx.ListExtensions(ctx, r.ID)
		return err
	})
	if len(exts) != 2 || exts[0].State != ajar.ExtensionApplied || exts[1].State != ajar.ExtensionDenied || exts[0].Approvals[0].Approver != "carol@example.com" {
		t.Fatalf("extensions: %+v", exts)
	}
	e.deliver(t)
	want := []string{"request.created " + r.ID, "request.approved " + r.ID, "extension.requested " + r.ID,
		"request.extended " + r.ID, "extension.requested " + r.ID, "extension.denied " + r.ID}
	if got := types(sink.received()); !slices.Equal(got, want) {
		t.Errorf("notifications:\n got %v\nwant %v", got, want)
	}
	for _, ev := range sink.received() {
		if ev.Type == policy.EventExtensionRequested && !slices.ContainsFunc(ev.Actions, func(a notify.Action) bool { return a.Command == "ajar approve "+r.ID }) {
			t.Errorf("extension.requested without the command to approve: %+v", ev.Actions)
		}
	}
}

// webhookReceiver is a test webhook endpoint that checks the HMAC signature
// and can be taken down.
type webhookReceiver struct {
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	down   bool
	got    []notify.Event
	bad    int // requests with a bad signature
}

func newWebhookReceiver(t *testing.T, secret string) *webhookReceiver {
	w := &webhookReceiver{secret: []byte(secret)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.down {
			http.Error(rw, "down", http.StatusServiceUnavailable)
			return
		}
		if !notify.Verify(w.secret, body, r.Header.Get(notify.HeaderSignature)) {
			w.bad++
			http.Error(rw, "bad signature", http.StatusUnauthorized)
			return
		}
		var e notify.Event
		if err := json.Unmarshal(body, &e); err != nil || r.Header.Get(notify.HeaderEventID) != e.ID || r.Header.Get(notify.HeaderEvent) != e.Type {
			http.Error(rw, "bad event", http.StatusBadRequest)
			return
		}
		w.got = append(w.got, e)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) badCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

func (w *webhookReceiver) received() []notify.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// TestBreakglass: works with no approver present, notifies at once (the
// receiver checks the HMAC), and leaves a review listed until an admin other
// than the user closes it.
func TestBreakglass(t *testing.T) {
	recv := newWebhookReceiver(t, "s3cret")
	sinks := []notify.Sink{notify.NewWebhook("hook", []string{policy.EventBreakglassUsed, policy.EventReviewClosed}, recv.srv.URL, []byte("s3cret"), notify.NewHTTPClient())}
	e := newWorkflowEnv(t, "", events.NotifyConfig{Sinks: sinks})
	ctx := t.Context()

	_, err := e.svc.Breakglass(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "x"})
	wantCode(t, err, ajar.EFORBIDDEN) // engineers may not
	_, err = e.svc.Breakglass(ctx, e.users["bob"], ajar.CreateInput{Target: "web", Duration: "30m"})
	if ajar.ErrorField(err) != "reason" {
		t.Fatalf("no reason: %v", err)
	}
	// bob is no requester of web, the request is on a friday (deny skips
	// break-glass), and nobody approves anything.
	r, err := e.svc.Breakglass(ctx, e.users["bob"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "site down, friday night"})
	if err != nil || r.State != ajar.StateActive || len(r.Approvals) != 0 {
		t.Fatalf("break-glass: %+v, %v", r, err)
	}
	if n := e.deliver(t); n != 1 {
		t.Fatalf("delivered %d notifications, want 1", n)
	}
	got := recv.received()
	if len(got) != 1 || got[0].Type != policy.EventBreakglassUsed || got[0].Request.ID != r.ID || got[0].Actor != "bob@example.com" ||
		!slices.ContainsFunc(got[0].Actions, func(a notify.Action) bool { return strings.HasPrefix(a.Command, "ajar review "+r.ID) }) {
		t.Fatalf("received %+v", got)
	}
	if recv.badCount() != 0 {
		t.Errorf("%d webhook calls with a bad signature", recv.badCount())
	}

	open, err := e.reviews(t, true)
	if err != nil || len(open) != 1 || open[0].RequestID != r.ID || open[0].Requester != "bob@example.com" || open[0].ClosedAt != nil {
		t.Fatalf("open reviews: %+v, %v", open, err)
	}
	_, err = e.svc.CloseReview(ctx, e.users["bob"], r.ID, "fine")
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.svc.CloseReview(ctx, e.users["root"], r.ID, " ")
	wantCode(t, err, ajar.EINVALID)
	rv, err := e.svc.CloseReview(ctx, e.users["root"], r.ID, "checked the incident timeline")
	if err != nil || rv.ClosedBy != "root@example.com" || rv.ClosedAt == nil {
		t.Fatalf("close: %+v, %v", rv, err)
	}
	_, err = e.svc.CloseReview(ctx, e.users["root"], r.ID, "again")
	wantCode(t, err, ajar.ECONFLICT)
	if open, _ := e.reviews(t, true); len(open) != 0 {
		t.Errorf("open reviews after closing: %+v", open)
	}
	if all, _ := e.reviews(t, false); len(all) != 1 || all[0].ClosedAt == nil {
		t.Errorf("reviews: %+v", all)
	}
	// An admin who used break-glass cannot close their own review.
	r2, err := e.svc.Breakglass(ctx, e.users["root"], ajar.CreateInput{Target: "web", Reason: "me"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CloseReview(ctx, e.users["root"], r2.ID, "all good")
	wantCode(t, err, ajar.EFORBIDDEN)
	e.deliver(t)
	if got := types(recv.received()); !slices.Equal(got, []string{"breakglass.used " + r.ID, "review.closed " + r.ID, "breakglass.used " + r2.ID}) {
		t.Errorf("notifications: %v", got)
	}
	acts := e.actions(t, r.ID)
	if count(acts, "breakglass.used") != 1 || count(acts, "review.closed") != 1 || count(acts, "request.activated") != 1 {
		t.Errorf("audit: %v", acts)
	}
}

func mustParse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNotificationsSurviveAnOutage: with the receiver down for 30s, events
// are delivered after it returns, in order, each once per sink; grants and
// revokes go on meanwhile, and a sink that stays dead holds back no other.
func TestNotificationsSurviveAnOutage(t *testing.T) {
	flaky := &recordSink{name: "flaky"}
	dead := &recordSink{name: "dead", down: true}
	e := newWorkflowEnvDelivery(t, "", events.NotifyConfig{Sinks: []notify.Sink{flaky, dead}}, outbox.Config{RetryBase: time.Second, RetryMax: 4 * time.Second})
	ctx := t.Context()
	flaky.setDown(true)

	// While the receiver is down: requests are granted and revoked at once.
	var want []string
	for i := range 3 {
		r := e.create(t, "alice", "web", "5m")
		if r.State != ajar.StateActive {
			t.Fatalf("request %d: %s, want active at once", i, r.State)
		}
		if _, err := e.svc.Revoke(ctx, e.users["alice"], r.ID); err != nil {
			t.Fatal(err)
		}
		if st := e.get(t, r.ID).State; st != ajar.StateRevoked {
			t.Fatalf("request %d after revoke: %s", i, st)
		}
		want = append(want, "request.created "+r.ID, "request.approved "+r.ID, "request.ended "+r.ID)
		e.deliver(t)
	}
	for range 30 { // 30 seconds of outage, the workers retrying with backoff
		e.clock.Add(time.Second)
		if n := e.deliver(t); n != 0 {
			t.Fatalf("delivered %d while down", n)
		}
	}
	flaky.mu.Lock()
	attempts := flaky.calls
	flaky.mu.Unlock()
	if len(flaky.received()) != 0 || attempts < 5 {
		t.Fatalf("while down: %d received, %d attempts", len(flaky.received()), attempts)
	}
	flaky.setDown(false)
	e.clock.Add(4 * time.Second) // the longest backoff
	e.deliver(t)
	e.clock.Add(4 * time.Second)
	e.deliver(t)
	got := flaky.received()
	if !slices.Equal(types(got), want) {
		t.Fatalf("after the outage:\n got %v\nwant %v", types(got), want)
	}
	ids := map[string]bool{}
	for _, ev := range got {
		if ids[ev.ID] {
			t.Errorf("event %s delivered twice", ev.ID)
		}
		ids[ev.ID] = true
	}
	if len(dead.received()) != 0 {
		t.Errorf("the dead sink received something")
	}
	var counts map[string]int
	e.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		counts, err = tx.CountPendingNotifications(ctx)
		return err
	})
	if counts["flaky"] != 0 || counts["dead"] != 9 {
		t.Errorf("pending: %v", counts)
	}
}

// TestNotificationGivesUp: a notification that cannot be delivered for
// GiveUp is dropped, audited, and the sink's next events go.
func TestNotificationGivesUp(t *testing.T) {
	sink := &recordSink{name: "hook", events: []string{policy.EventRequestCreated}, down: true}
	e := newWorkflowEnvDelivery(t, "", events.NotifyConfig{Sinks: []notify.Sink{sink}}, outbox.Config{RetryBase: time.Second, RetryMax: time.Minute, GiveUp: 10 * time.Minute})
	r1 := e.create(t, "alice", "web", "1h")
	e.deliver(t)
	for range 11 {
		e.clock.Add(time.Minute)
		e.deliver(t)
	}
	sink.setDown(false)
	r2 := e.create(t, "alice", "web", "1h")
	e.deliver(t)
	if got := types(sink.received()); !slices.Equal(got, []string{"request.created " + r2.ID}) {
		t.Fatalf("received %v", got)
	}
	if acts := e.actions(t, r1.ID); count(acts, "notification.dropped") != 1 {
		t.Errorf("audit: %v", acts)
	}
}

// TestEscalation: a step that waits past escalate_after notifies escalate_to
// once, and they may then decide.
func TestEscalation(t *testing.T) {
	sink := &recordSink{name: "chat", events: []string{policy.EventRequestEscalated}}
	e := newWorkflowEnv(t, "", events.NotifyConfig{Sinks: []notify.Sink{sink}})
	ctx := t.Context()
	r := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Duration: "1h", Reason: "deploy"})
	if !e.get(t, r.ID).NextAt.Equal(r.CreatedAt.Add(10 * time.Minute)) {
		t.Errorf("next look at %v, want the escalation", e.get(t, r.ID).NextAt)
	}
	e.advance(t, 10*time.Minute-time.Second)
	_, err := e.svc.Approve(ctx, e.users["dave"], r.ID, "")
	wantCode(t, err, ajar.EFORBIDDEN)
	e.advance(t, time.Second)
	e.advance(t, time.Minute)
	e.deliver(t)
	got := sink.received()
	if len(got) != 1 || got[0].Type != policy.EventRequestEscalated || !strings.Contains(got[0].Summary, "group:leads") ||
		!slices.ContainsFunc(got[0].Actions, func(a notify.Action) bool { return a.Command == "ajar approve "+r.ID }) {
		t.Fatalf("escalation notifications: %+v", got)
	}
	if n := count(e.actions(t, r.ID), "request.escalated"); n != 1 {
		t.Errorf("%d request.escalated events", n)
	}
	if next := e.get(t, r.ID).NextAt; !next.Equal(r.ApprovalDeadline) {
		t.Errorf("next look at %v, want the deadline %v", next, r.ApprovalDeadline)
	}
	if _, err := e.svc.GetRequest(ctx, e.users["dave"], r.ID); err != nil {
		t.Errorf("dave cannot see it: %v", err)
	}
	got2, err := e.svc.Approve(ctx, e.users["dave"], r.ID, "on behalf of sre")
	if err != nil || got2.State != ajar.StateActive {
		t.Fatalf("dave after escalation: %+v, %v", got2, err)
	}
}

// TestExpiryReminder: request.expiring goes out once, ExpiryReminder before the
// expiry, and again for an extended window.
func TestExpiryReminder(t *testing.T) {
	sink := &recordSink{name: "chat", events: []string{policy.EventRequestExpiring}}
	e := newWorkflowEnv(t, "", events.NotifyConfig{Sinks: []notify.Sink{sink}, ExpiryReminder: 10 * time.Minute})
	ctx := t.Context()
	r := e.create(t, "alice", "ssh", "30m")
	short := e.create(t, "alice", "ssh", "5m") // shorter than the reminder: none
	e.advance(t, 20*time.Minute-time.Second)
	e.deliver(t)
	if n := len(sink.received()); n != 0 {
		t.Fatalf("%d reminders before time", n)
	}
	e.advance(t, time.Second)
	e.advance(t, time.Minute)
	e.deliver(t)
	got := sink.received()
	if len(got) != 1 || got[0].Request.ID != r.ID || !slices.ContainsFunc(got[0].Actions, func(a notify.Action) bool { return a.Command == "ajar extend "+r.ID+" --by 30m" }) {
		t.Fatalf("reminders: %+v", got)
	}
	if _, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m"}); err != nil {
		t.Fatal(err)
	}
	e.advance(t, 29*time.Minute)
	e.deliver(t)
	if got := types(sink.received()); !slices.Equal(got, []string{"request.expiring " + r.ID, "request.expiring " + r.ID}) {
		t.Fatalf("after the extension: %v", got)
	}
	if st := e.get(t, short.ID).State; st != ajar.StateExpired {
		t.Errorf("short request: %s", st)
	}
}

// TestDriftNotifies: the drift check's audit events go out as drift.detected.
func TestDriftNotifies(t *testing.T) {
	sink := &recordSink{name: "sec", events: []string{policy.EventDriftDetected}}
	e := newWorkflowEnv(t, "", events.NotifyConfig{Sinks: []notify.Sink{sink}})
	ctx := t.Context()
	r := e.create(t, "alice", "web", "5m")
	err := e.store.Update(ctx, func(tx ajar.Tx) error {
		return e.svc.audit(ctx, tx, ajar.ActorSystem, "drift.revoked", r.ID, map[string]any{
			"target": "web", "drift": "access present after the request ended", "repair": "revoked again",
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	e.deliver(t)
	got := sink.received()
	if len(got) != 1 || got[0].Type != policy.EventDriftDetected || got[0].Summary != "drift on web (alice@example.com's request): access present after the request ended; revoked again" {
		t.Fatalf("received %+v", got)
	}
}

// reviews lists the review tasks in the store, only the open ones if onlyOpen.
func (e *env) reviews(t *testing.T, onlyOpen bool) ([]ajar.ReviewTask, error) {
	t.Helper()
	var out []ajar.ReviewTask
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		out, err = tx.ListReviews(t.Context(), ajar.ReviewFilter{OnlyOpen: onlyOpen, Limit: 100})
		return err
	})
	return out, err
}
