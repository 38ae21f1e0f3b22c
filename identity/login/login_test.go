package login

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// memFlows is an in-memory Flows with the store's one-use, expiring semantics.
type memFlows struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]ajar.AuthFlow
}

func (f *memFlows) key(kind string, h []byte) string { return kind + "/" + string(h) }

func (f *memFlows) Put(_ context.Context, fl ajar.AuthFlow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[f.key(fl.Kind, fl.KeyHash)] = fl
	return nil
}

func (f *memFlows) Update(_ context.Context, kind string, key []byte, fn func(*ajar.AuthFlow) (*ajar.AuthFlow, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.key(kind, key)
	fl, ok := f.m[k]
	if !ok || !f.now().Before(fl.ExpiresAt) {
		return ajar.Errorf(ajar.ENOTFOUND, "no such flow")
	}
	cp := fl
	cp.Data = bytes.Clone(fl.Data)
	next, err := fn(&cp)
	if err != nil {
		return err
	}
	delete(f.m, k)
	if next != nil {
		f.m[k] = *next
	}
	return nil
}

// fakeIdP answers Exchange with what the test sets, after checking the verifier
// and nonce the flow recorded came back.
type fakeIdP struct {
	mu       sync.Mutex
	states   map[string][2]string // state -> nonce, verifier
	stepUps  []bool
	identity *Identity
	err      error
}

func (p *fakeIdP) AuthURL(state, nonce, verifier string, stepUp bool) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.states[state] = [2]string{nonce, verifier}
	p.stepUps = append(p.stepUps, stepUp)
	return "https://idp.test/authorize?state=" + url.QueryEscape(state)
}

// codeFor makes the "code" the IdP would send for state: it encodes the
// nonce and verifier so Exchange can check they came back unchanged.
func (p *fakeIdP) codeFor(state string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	nv := p.states[state]
	return nv[0] + "." + nv[1]
}

func (p *fakeIdP) Exchange(_ context.Context, code, verifier, nonce string) (*Identity, error) {
	if code != nonce+"."+verifier {
		return nil, ajar.Errorf(ajar.EUNAUTH, "the ID token's nonce does not match")
	}
	if p.err != nil {
		return nil, p.err
	}
	id := *p.identity
	return &id, nil
}

func (p *fakeIdP) HasSecondFactor(amr []string) bool { return slices.Contains(amr, "hwk") }

type fakeSessions struct {
	mu      sync.Mutex
	signins []string // kind:user
	mfaIn   []bool   // the mfa flag of each sign-in
	refused []string
	mfa     []string
}

func (s *fakeSessions) SignIn(_ context.Context, kind, _ string, id *Identity, mfa bool) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signins = append(s.signins, kind+":"+id.UserID)
	s.mfaIn = append(s.mfaIn, mfa)
	return "secret-" + kind + "-" + id.UserID, time.Unix(1e9, 0), nil
}

func (s *fakeSessions) Refused(_ context.Context, user, reason string, _ map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = append(s.refused, reason)
	return nil
}

func (s *fakeSessions) MarkMFA(_ context.Context, sid, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mfa = append(s.mfa, sid+":"+user)
	return nil
}

type fixture struct {
	svc   *Service
	idp   *fakeIdP
	sess  *fakeSessions
	flows *memFlows
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{
		idp:  &fakeIdP{states: map[string][2]string{}, identity: &Identity{UserID: "alice@example.com", Groups: []string{"sre"}}},
		sess: &fakeSessions{},
		now:  time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC),
	}
	clock := func() time.Time { return fx.now }
	fx.flows = &memFlows{now: clock, m: map[string]ajar.AuthFlow{}}
	svc, err := New(Config{IdP: fx.idp, Sessions: fx.sess, Flows: fx.flows, PublicURL: "https://ajar.test/", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	fx.svc = svc
	return fx
}

const binding = "binding-binding-binding-binding-binding-01"

// begin starts a flow and returns the state the IdP was given.
func (fx *fixture) begin(t *testing.T, b Begin) string {
	t.Helper()
	if b.Binding == "" {
		b.Binding = binding
	}
	u, err := fx.svc.Start(t.Context(), b)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Query().Get("state")
}

func TestWebSignInAndReplayedState(t *testing.T) {
	fx := newFixture(t)
	prev := ajar.User{ID: "bob@example.com", Session: "ses_previous"}
	state := fx.begin(t, Begin{Purpose: ForWeb, Next: "/inbox", Previous: prev})
	cb := Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding}
	done, err := fx.svc.Finish(t.Context(), cb)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if done.Secret != "secret-web-alice@example.com" || done.Redirect != "/inbox" || done.Previous.ID != prev.ID || done.Previous.Session != prev.Session {
		t.Fatalf("done = %+v", done)
	}
	// The same state again (a replayed callback) is refused and audited.
	if _, err := fx.svc.Finish(t.Context(), cb); ajar.ErrorCode(err) != ajar.EUNAUTH || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("replayed state: %v", err)
	}
	if len(fx.sess.signins) != 1 || len(fx.sess.refused) != 1 {
		t.Fatalf("signins %v refused %v", fx.sess.signins, fx.sess.refused)
	}
}

func TestRefusalsStartNothing(t *testing.T) {
	cases := []struct {
		name string
		cb   func(fx *fixture, state string) Callback
		idp  error
		want string
	}{
		{"other browser", func(fx *fixture, s string) Callback {
			return Callback{State: s, Code: fx.idp.codeFor(s), Binding: "another-browser-binding-value-xxxxxxxxxx"}
		}, nil, "another browser"},
		{"no binding cookie", func(fx *fixture, s string) Callback {
			return Callback{State: s, Code: fx.idp.codeFor(s)}
		}, nil, "another browser"},
		{"idp error", func(fx *fixture, s string) Callback {
			return Callback{State: s, Error: "access_denied", ErrorDescription: "user cancelled", Binding: binding}
		}, nil, "access_denied"},
		{"no code", func(fx *fixture, s string) Callback { return Callback{State: s, Binding: binding} }, nil, "no code"},
		{"bad token", func(fx *fixture, s string) Callback {
			return Callback{State: s, Code: fx.idp.codeFor(s), Binding: binding}
		}, ajar.Errorf(ajar.EUNAUTH, "the ID token's audience is not this client"), "audience"},
		{"unknown state", func(fx *fixture, s string) Callback {
			return Callback{State: "forged-state-forged-state", Code: "x", Binding: binding}
		}, nil, "already used or has expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t)
			fx.idp.err = c.idp
			state := fx.begin(t, Begin{Purpose: ForWeb, Next: "/"})
			_, err := fx.svc.Finish(t.Context(), c.cb(fx, state))
			if ajar.ErrorCode(err) != ajar.EUNAUTH || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want EUNAUTH with %q", err, c.want)
			}
			if len(fx.sess.signins) != 0 || len(fx.sess.refused) != 1 {
				t.Fatalf("signins %v refused %v: want none and one audited refusal", fx.sess.signins, fx.sess.refused)
			}
		})
	}
}

func TestStateExpires(t *testing.T) {
	fx := newFixture(t)
	state := fx.begin(t, Begin{Purpose: ForWeb})
	fx.now = fx.now.Add(flowTTL)
	_, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding})
	if ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("expired state: %v", err)
	}
}

func TestCLILogin(t *testing.T) {
	fx := newFixture(t)
	verifier := NewVerifier()
	for _, bad := range []Begin{
		{Purpose: ForCLI, CLIPort: 80, CLIChallenge: Challenge(verifier), CLIState: "cli-state-cli-state"},
		{Purpose: ForCLI, CLIPort: 40000, CLIChallenge: "plain", CLIState: "cli-state-cli-state"},
		{Purpose: ForCLI, CLIPort: 40000, CLIChallenge: Challenge(verifier), CLIState: "<script>"},
	} {
		bad.Binding = binding
		if _, err := fx.svc.Start(t.Context(), bad); ajar.ErrorCode(err) != ajar.EINVALID {
			t.Errorf("Start(%+v) = %v, want EINVALID", bad, err)
		}
	}
	state := fx.begin(t, Begin{Purpose: ForCLI, CLIPort: 40000, CLIChallenge: Challenge(verifier), CLIState: "cli-state-cli-state"})
	done, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(done.Redirect)
	if err != nil || u.Scheme != "http" || u.Host != "127.0.0.1:40000" || u.Path != "/callback" || u.Query().Get("state") != "cli-state-cli-state" {
		t.Fatalf("redirect %q", done.Redirect)
	}
	code := u.Query().Get("code")
	if len(fx.sess.signins) != 0 {
		t.Fatal("a session was started before the CLI redeemed its code")
	}
	// Someone who saw the redirect but not the verifier gets nothing, and burns the code.
	if _, err := fx.svc.CLIToken(t.Context(), code, NewVerifier()); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("wrong verifier: %v", err)
	}
	if _, err := fx.svc.CLIToken(t.Context(), code, verifier); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("code after a wrong try: %v", err)
	}
	// A new flow, redeemed properly.
	state = fx.begin(t, Begin{Purpose: ForCLI, CLIPort: 40001, CLIChallenge: Challenge(verifier), CLIState: "cli-state-cli-state"})
	done, err = fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding})
	if err != nil {
		t.Fatal(err)
	}
	u, _ = url.Parse(done.Redirect)
	tok, err := fx.svc.CLIToken(t.Context(), u.Query().Get("code"), verifier)
	if err != nil || tok.Token != "secret-cli-alice@example.com" || tok.User != "alice@example.com" {
		t.Fatalf("CLIToken = %+v, %v", tok, err)
	}
	if _, err := fx.svc.CLIToken(t.Context(), u.Query().Get("code"), verifier); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("code used twice: %v", err)
	}
}

func TestDeviceLogin(t *testing.T) {
	fx := newFixture(t)
	d, err := fx.svc.StartDevice(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.VerificationURIComplete, "https://ajar.test/auth/device?code=") || len(d.UserCode) != 9 {
		t.Fatalf("device = %+v", d)
	}
	if _, err := fx.svc.DevicePoll(t.Context(), d.DeviceCode); !errors.Is(err, ErrPending) {
		t.Fatalf("poll before approval: %v", err)
	}
	if _, err := fx.svc.Start(t.Context(), Begin{Purpose: ForDevice, UserCode: "BCDF-GHJK", Binding: binding}); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("unknown user code: %v", err)
	}
	state := fx.begin(t, Begin{Purpose: ForDevice, UserCode: strings.ToLower(d.UserCode)})
	done, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding})
	if err != nil || done.Redirect != "/auth/device/done" {
		t.Fatalf("Finish = %+v, %v", done, err)
	}
	tok, err := fx.svc.DevicePoll(t.Context(), d.DeviceCode)
	if err != nil || tok.User != "alice@example.com" {
		t.Fatalf("poll after approval = %+v, %v", tok, err)
	}
	if _, err := fx.svc.DevicePoll(t.Context(), d.DeviceCode); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("second poll: %v", err)
	}
	if len(fx.sess.signins) != 1 {
		t.Fatalf("signins = %v", fx.sess.signins)
	}
}

func TestStepUp(t *testing.T) {
	fx := newFixture(t)
	state := fx.begin(t, Begin{Purpose: ForStepUp, SessionID: "ses_1", UserID: "alice@example.com", Next: "/requests/R1"})
	if !fx.idp.stepUps[len(fx.idp.stepUps)-1] {
		t.Fatal("a step-up did not ask the IdP for a fresh authentication")
	}
	// No second factor in amr: refused.
	_, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding})
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("no second factor: %v", err)
	}
	// Another person at the IdP: refused.
	fx.idp.identity = &Identity{UserID: "mallory@example.com", AMR: []string{"hwk"}}
	state = fx.begin(t, Begin{Purpose: ForStepUp, SessionID: "ses_1", UserID: "alice@example.com", Next: "/"})
	if _, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding}); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("step-up as another person: %v", err)
	}
	// A second factor the IdP remembers from hours ago (it ignored max_age=0),
	// or with no auth_time at all: refused, nothing marked.
	for _, at := range []time.Time{fx.now.Add(-3 * time.Hour), {}} {
		fx.idp.identity = &Identity{UserID: "alice@example.com", AMR: []string{"pwd", "hwk"}, AuthTime: at}
		state = fx.begin(t, Begin{Purpose: ForStepUp, SessionID: "ses_1", UserID: "alice@example.com", Next: "/"})
		if _, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding}); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
			t.Fatalf("step-up with auth_time %v: %v, want forbidden", at, err)
		}
	}
	if len(fx.sess.mfa) != 0 {
		t.Fatalf("a stale second factor was recorded: %v", fx.sess.mfa)
	}
	fx.idp.identity = &Identity{UserID: "Alice@Example.com", AMR: []string{"pwd", "hwk"}, AuthTime: fx.now.Add(-10 * time.Second)}
	state = fx.begin(t, Begin{Purpose: ForStepUp, SessionID: "ses_1", UserID: "alice@example.com", Next: "/requests/R1"})
	done, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding})
	if err != nil || done.Redirect != "/requests/R1" {
		t.Fatalf("step-up = %+v, %v", done, err)
	}
	if !slices.Equal(fx.sess.mfa, []string{"ses_1:alice@example.com"}) || len(fx.sess.signins) != 0 {
		t.Fatalf("mfa %v signins %v", fx.sess.mfa, fx.sess.signins)
	}
}

// TestSignInSecondFactorIsFresh: a sign-in (web, CLI, device) counts as a
// second factor (break-glass with require_mfa) only when the IdP authenticated
// the person with one just now, not when it reuses the amr of its own
// session opened hours ago.
func TestSignInSecondFactorIsFresh(t *testing.T) {
	fx := newFixture(t)
	for _, c := range []struct {
		at   time.Time
		want bool
	}{{fx.now.Add(-time.Minute), true}, {fx.now.Add(-3 * time.Hour), false}, {time.Time{}, false}} {
		fx.idp.identity = &Identity{UserID: "alice@example.com", AMR: []string{"pwd", "hwk"}, AuthTime: c.at}
		state := fx.begin(t, Begin{Purpose: ForWeb, Next: "/"})
		if _, err := fx.svc.Finish(t.Context(), Callback{State: state, Code: fx.idp.codeFor(state), Binding: binding}); err != nil {
			t.Fatal(err)
		}
		if got := fx.sess.mfaIn[len(fx.sess.mfaIn)-1]; got != c.want {
			t.Errorf("sign-in with hwk and auth_time %v: mfa %v, want %v", c.at, got, c.want)
		}
	}
}

func TestUserCode(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c := userCode()
		if n, ok := normalizeUserCode(strings.ToLower(c[:4] + "-" + c[4:])); !ok || n != c {
			t.Fatalf("userCode %q does not normalize back (%q)", c, n)
		}
		seen[c] = true
	}
	if len(seen) < 199 {
		t.Fatalf("only %d distinct codes in 200", len(seen))
	}
	for _, bad := range []string{"", "BCDF-GHJ", "AEIO-UAEI", "BCDF-GHJKL", "BCDF_GHJK"} {
		if _, ok := normalizeUserCode(bad); ok {
			t.Errorf("normalizeUserCode(%q) accepted", bad)
		}
	}
}

// TestAuthOrigin: the IdP's origin, for the device page's form-action, is the
// authorization URL's scheme and host, and working it out starts no flow.
func TestAuthOrigin(t *testing.T) {
	fx := newFixture(t)
	if got := fx.svc.AuthOrigin(); got != "https://idp.test" {
		t.Fatalf("AuthOrigin() = %q, want https://idp.test", got)
	}
	if len(fx.flows.m) != 0 {
		t.Fatalf("AuthOrigin stored flows: %v", fx.flows.m)
	}
}
