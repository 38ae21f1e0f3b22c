package identity_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

const testPolicy = `
users:
  - {id: Alice@Example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  web: {provider: fake}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`

// clock is the store's clock, moved by tests.
type clock struct{ t atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// fakeGroups is a GroupSource answering from a map; a user absent from it is
// refused (the IdP no longer knows them).
type fakeGroups struct {
	mu     sync.Mutex
	groups map[string][]string
	calls  int
	seen   []string // refresh tokens given
}

func (f *fakeGroups) Refresh(ctx context.Context, userID, rt string) ([]string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.seen = append(f.seen, rt)
	g, ok := f.groups[userID]
	if !ok {
		return nil, "", errors.New("invalid_grant")
	}
	return g, rt + "+", nil
}

type env struct {
	ids    *identity.Service
	st     *sqlite.Store
	clock  *clock
	groups *fakeGroups
	root   ajar.User
	alice  ajar.User
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := &clock{}
	clk.t.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"), sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse([]byte(testPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, keys.KeySize)
	rand.Read(key)
	mk, err := keys.NewMasterKey(key)
	if err != nil {
		t.Fatal(err)
	}
	fg := &fakeGroups{groups: map[string][]string{}}
	ids, err := identity.New(identity.Config{Store: st, Policy: pol, Sealer: mk, Groups: fg, Now: clk.Now,
		Refresh: 10 * time.Minute, SessionTTL: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pol.User("root@example.com")
	alice, _ := pol.User("alice@example.com")
	return &env{ids: ids, st: st, clock: clk, groups: fg, root: root, alice: alice}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if ajar.ErrorCode(err) != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func (e *env) audit(t *testing.T, action string) []ajar.AuditEvent {
	t.Helper()
	var out []ajar.AuditEvent
	err := e.st.View(t.Context(), func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{})
		for _, ev := range evs {
			if ev.Action == action {
				out = append(out, ev)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) session(t *testing.T, id string) *ajar.Session {
	t.Helper()
	var s *ajar.Session
	if err := e.st.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		s, err = tx.GetSessionByID(t.Context(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenLifecycle: a token made for ALICE@EXAMPLE.COM authenticates as the
// canonical alice@example.com with her groups, expires after its ttl, and a
// revoked or unknown token is refused with its own message.
func TestTokenLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tok, sess, err := e.ids.CreateToken(ctx, e.root, "ALICE@EXAMPLE.COM", "laptop", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sess.ID, "tok_") || len(sess.ID) != 20 || sess.UserID != "alice@example.com" ||
		!sess.ExpiresAt.Equal(e.clock.Now().Add(identity.DefaultTokenTTL)) || strings.Contains(sess.ID, tok) {
		t.Fatalf("token session %+v", sess)
	}
	u, err := e.ids.Authenticate(ctx, tok)
	if err != nil || u.ID != "alice@example.com" || !slices.Equal(u.Groups, []string{"engineers"}) || u.Session != sess.ID {
		t.Fatalf("Authenticate = %+v, %v", u, err)
	}
	if ev := e.audit(t, "token.created"); len(ev) != 1 || ev[0].Actor != "root@example.com" || ev[0].Subject != "alice@example.com" {
		t.Fatalf("token.created events: %+v", ev)
	}

	_, err = e.ids.Authenticate(ctx, "ajar_unknown")
	wantCode(t, err, ajar.EUNAUTH)
	if !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown token: %v", err)
	}

	short, _, err := e.ids.CreateToken(ctx, ajar.User{}, "bob@example.com", "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	_, err = e.ids.Authenticate(ctx, short)
	wantCode(t, err, ajar.EUNAUTH)
	if !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}

	if err := e.ids.Revoke(ctx, e.root, sess.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.ids.Authenticate(ctx, tok)
	wantCode(t, err, ajar.EUNAUTH)
	if !strings.Contains(err.Error(), "API token was revoked") {
		t.Errorf("revoked token: %v", err)
	}
	wantCode(t, e.ids.Revoke(ctx, e.root, sess.ID), ajar.ECONFLICT)
	if ev := e.audit(t, "token.revoked"); len(ev) != 1 || ev[0].Actor != "root@example.com" {
		t.Fatalf("token.revoked events: %+v", ev)
	}
}

// TestTokenInput: only admins mint or list others' tokens; users must be
// known; ttl and name are bounded.
func TestTokenInput(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, _, err := e.ids.CreateToken(ctx, e.alice, "alice@example.com", "mine", 0)
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.ids.List(ctx, e.alice, ajar.SessionFilter{})
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.ids.List(ctx, e.alice, ajar.SessionFilter{UserID: "bob@example.com"})
	wantCode(t, err, ajar.EFORBIDDEN)
	if _, err := e.ids.List(ctx, e.alice, ajar.SessionFilter{UserID: "ALICE@example.com"}); err != nil {
		t.Errorf("listing one's own: %v", err)
	}
	for _, ttl := range []time.Duration{-time.Hour, time.Second, identity.MaxTokenTTL + time.Hour} {
		_, _, err := e.ids.CreateToken(ctx, e.root, "bob@example.com", "x", ttl)
		wantCode(t, err, ajar.EINVALID)
		if ajar.ErrorField(err) != "ttl" {
			t.Errorf("ttl %s: field %q", ttl, ajar.ErrorField(err))
		}
	}
	_, _, err = e.ids.CreateToken(ctx, e.root, "mallory@example.com", "x", 0)
	wantCode(t, err, ajar.EINVALID)
	_, _, err = e.ids.CreateToken(ctx, e.root, "bob@example.com", strings.Repeat("n", 101), 0)
	wantCode(t, err, ajar.EINVALID)
	if _, _, err := e.ids.CreateToken(ctx, e.root, "bob@example.com", "x", identity.MaxTokenTTL); err != nil {
		t.Errorf("the longest ttl: %v", err)
	}
	list, err := e.ids.List(ctx, e.root, ajar.SessionFilter{})
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %d, %v; want the one token made", len(list), err)
	}
	for in, want := range map[string]time.Duration{"": 0, "90d": 90 * 24 * time.Hour, "720h": 720 * time.Hour} {
		if got, err := identity.ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"0d", "367d", "x", "-1h", "1s", "400d", "9999999999999999999d"} {
		if _, err := identity.ParseTTL(in); ajar.ErrorCode(err) != ajar.EINVALID {
			t.Errorf("ParseTTL(%q) = %v, want EINVALID", in, err)
		}
	}
}

// TestRevokeOwnSession: the owner may end their own session, not another's;
// an admin may end anyone's; logout ends the caller's at once.
func TestRevokeOwnSession(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, aliceSess, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "alice@example.com", Source: "token"})
	if err != nil {
		t.Fatal(err)
	}
	bobSecret, bobSess, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "bob@example.com", Source: "token"})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.ids.Revoke(ctx, e.alice, bobSess.ID), ajar.EFORBIDDEN)
	if _, err := e.ids.Authenticate(ctx, bobSecret); err != nil {
		t.Fatalf("bob's session after alice tried to revoke it: %v", err)
	}
	if err := e.ids.Revoke(ctx, e.alice, aliceSess.ID); err != nil {
		t.Fatalf("alice revoking her own session: %v", err)
	}
	if got := e.session(t, aliceSess.ID); got.RevokedBy != "alice@example.com" {
		t.Errorf("RevokedBy = %q", got.RevokedBy)
	}
	bob, err := e.ids.Authenticate(ctx, bobSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ids.Logout(ctx, bob); err != nil {
		t.Fatal(err)
	}
	_, err = e.ids.Authenticate(ctx, bobSecret)
	wantCode(t, err, ajar.EUNAUTH)
	if ev := e.audit(t, "session.ended"); len(ev) != 2 {
		t.Fatalf("session.ended events: %+v", ev)
	}
	if ev := e.audit(t, "signin"); len(ev) != 2 {
		t.Fatalf("signin events: %+v", ev)
	}
	wantCode(t, e.ids.Revoke(ctx, e.root, "ses_nope"), ajar.ENOTFOUND)
}

// TestLastUsedThrottled: LastUsedAt is written on first use, then at most
// once a minute.
func TestLastUsedThrottled(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tok, sess, err := e.ids.CreateToken(ctx, e.root, "bob@example.com", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	use := func() {
		if _, err := e.ids.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	t0 := e.clock.Now()
	use()
	if got := e.session(t, sess.ID).LastUsedAt; !got.Equal(t0) {
		t.Fatalf("LastUsedAt after first use = %v, want %v", got, t0)
	}
	e.clock.Advance(59 * time.Second)
	use()
	if got := e.session(t, sess.ID).LastUsedAt; !got.Equal(t0) {
		t.Fatalf("LastUsedAt written again within a minute: %v", got)
	}
	e.clock.Advance(time.Second)
	use()
	if got := e.session(t, sess.ID).LastUsedAt; !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("LastUsedAt after a minute = %v", got)
	}
}

// TestGroupsRefresh: an SSO session's groups are read again after Refresh;
// a change is audited and stored as the user's identity (the directory sees
// it), and a refresh the IdP refuses ends the session at once.
func TestGroupsRefresh(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	secret, sess, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionCLI, UserID: "Zoe@Example.com",
		Groups: []string{"sre"}, RefreshToken: "rt1", Source: "oidc", Name: "ajar login"})
	if err != nil {
		t.Fatal(err)
	}
	if string(sess.Refresh) == "rt1" || len(sess.Refresh) == 0 {
		t.Fatal("the refresh token is stored unsealed")
	}
	u, err := e.ids.Authenticate(ctx, secret)
	if err != nil || u.ID != "zoe@example.com" || !slices.Equal(u.Groups, []string{"sre"}) {
		t.Fatalf("Authenticate = %+v, %v", u, err)
	}
	if d, ok, err := e.ids.Lookup(ctx, "zoe@example.com"); err != nil || !ok || !slices.Equal(d.Groups, []string{"sre"}) {
		t.Fatalf("Lookup = %+v, %v, %v", d, ok, err)
	}
	if e.groups.calls != 0 {
		t.Fatal("groups refreshed before Refresh passed")
	}

	e.groups.groups["zoe@example.com"] = []string{"engineers"}
	e.clock.Advance(10 * time.Minute)
	u, err = e.ids.Authenticate(ctx, secret)
	if err != nil || !slices.Equal(u.Groups, []string{"engineers"}) {
		t.Fatalf("after refresh: %+v, %v", u, err)
	}
	if e.groups.calls != 1 || e.groups.seen[0] != "rt1" {
		t.Fatalf("refresh calls %d with %v", e.groups.calls, e.groups.seen)
	}
	ev := e.audit(t, "session.groups_changed")
	if len(ev) != 1 || !strings.Contains(string(ev[0].Details), `"after":["engineers"]`) {
		t.Fatalf("session.groups_changed events: %+v", ev)
	}
	if d, _, _ := e.ids.Lookup(ctx, "zoe@example.com"); !slices.Equal(d.Groups, []string{"engineers"}) {
		t.Fatalf("directory after refresh: %+v", d)
	}
	// The rotated refresh token is used next time; unchanged groups are not audited.
	e.clock.Advance(10 * time.Minute)
	if _, err := e.ids.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if e.groups.calls != 2 || e.groups.seen[1] != "rt1+" {
		t.Fatalf("second refresh with %v", e.groups.seen)
	}
	if ev := e.audit(t, "session.groups_changed"); len(ev) != 1 {
		t.Fatalf("unchanged groups audited: %d events", len(ev))
	}

	// The IdP no longer knows zoe: the session ends.
	delete(e.groups.groups, "zoe@example.com")
	e.clock.Advance(10 * time.Minute)
	_, err = e.ids.Authenticate(ctx, secret)
	wantCode(t, err, ajar.EUNAUTH)
	if got := e.session(t, sess.ID); got.RevokedAt.IsZero() {
		t.Fatal("a session whose refresh failed was not ended")
	}
	if ev := e.audit(t, "session.ended"); len(ev) != 1 || !strings.Contains(string(ev[0].Details), "refresh_failed") {
		t.Fatalf("session.ended events: %+v", ev)
	}
	calls := e.groups.calls
	_, err = e.ids.Authenticate(ctx, secret)
	wantCode(t, err, ajar.EUNAUTH)
	if e.groups.calls != calls {
		t.Fatal("an ended session asked the IdP again")
	}
}

// TestUnknownUser: a token whose user left the policy file (and was never
// vouched for by the IdP) is refused.
func TestUnknownUser(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// Made while known as an SSO user: the IdP vouched for them once.
	_, _, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "yan@example.com", Groups: []string{"sre"}, Source: "oidc"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.ids.CreateToken(ctx, e.root, "yan@example.com", "", 0)
	if err != nil {
		t.Fatalf("token for an SSO user: %v", err)
	}
	u, err := e.ids.Authenticate(ctx, tok)
	if err != nil || !slices.Equal(u.Groups, []string{"sre"}) {
		t.Fatalf("SSO user's token: %+v, %v", u, err)
	}
	// Without an IdP only the policy file is the directory.
	pol, _ := policy.Parse([]byte(testPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	noIdP, err := identity.New(identity.Config{Store: e.st, Policy: pol, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := noIdP.Lookup(ctx, "yan@example.com"); ok || err != nil {
		t.Errorf("without an IdP, an SSO user is known: %v, %v", ok, err)
	}
	if u, ok, _ := noIdP.Lookup(ctx, "ALICE@example.com"); !ok || u.ID != "alice@example.com" || !slices.Equal(u.Groups, []string{"engineers"}) {
		t.Errorf("static user without an IdP: %+v, %v", u, ok)
	}
	_, err = noIdP.Authenticate(ctx, tok)
	wantCode(t, err, ajar.EUNAUTH)
	// A token sign-in of someone nobody knows is refused.
	_, _, err = e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "mallory@example.com", Source: "token"})
	wantCode(t, err, ajar.EUNAUTH)
	_, _, err = e.ids.SignIn(ctx, identity.SignIn{Kind: "token", UserID: "bob@example.com", Source: "token"})
	wantCode(t, err, ajar.EINVALID)
}

// TestMarkMFAAndFlows covers MarkMFA and the one-use sign-in steps.
func TestMarkMFAAndFlows(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	secret, sess, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "bob@example.com", Source: "token"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := e.ids.Authenticate(ctx, secret)
	if !u.MFAAt.IsZero() {
		t.Fatal("MFAAt set before any step-up")
	}
	if err := e.ids.MarkMFA(ctx, u); err != nil {
		t.Fatal(err)
	}
	if u, _ = e.ids.Authenticate(ctx, secret); !u.MFAAt.Equal(e.clock.Now()) || u.Session != sess.ID {
		t.Fatalf("after MarkMFA: %+v", u)
	}
	// An API token (its holder may put it in a browser's cookie and verify a
	// key there) never carries a second factor.
	tok, _, err := e.ids.CreateToken(ctx, e.root, "bob@example.com", "ci", 0)
	if err != nil {
		t.Fatal(err)
	}
	tu, _ := e.ids.Authenticate(ctx, tok)
	wantCode(t, e.ids.MarkMFA(ctx, tu), ajar.EFORBIDDEN)
	if tu, _ = e.ids.Authenticate(ctx, tok); !tu.MFAAt.IsZero() {
		t.Fatalf("an API token carries a second factor: %+v", tu)
	}
	if err := e.ids.PutFlow(ctx, "oidc_state", "state-1", []byte(`{"n":1}`), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	f, err := e.ids.TakeFlow(ctx, "oidc_state", "state-1")
	if err != nil || string(f.Data) != `{"n":1}` {
		t.Fatalf("TakeFlow = %+v, %v", f, err)
	}
	_, err = e.ids.TakeFlow(ctx, "oidc_state", "state-1")
	wantCode(t, err, ajar.ENOTFOUND)
	if err := e.ids.PutFlow(ctx, "oidc_state", "state-2", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	_, err = e.ids.TakeFlow(ctx, "oidc_state", "state-2")
	wantCode(t, err, ajar.ENOTFOUND)
}

// TestTokenSignInFollowsItsToken: a web session signed in with an API token
// works only while the token does.
func TestTokenSignInFollowsItsToken(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tok, tokSess, err := e.ids.CreateToken(ctx, e.root, "bob@example.com", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := e.ids.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: bob.ID, Source: "token", Parent: bob.Session})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ids.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := e.ids.Revoke(ctx, e.root, tokSess.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.ids.Authenticate(ctx, secret)
	wantCode(t, err, ajar.EUNAUTH)
	if !strings.Contains(err.Error(), "API token this session was signed in with") {
		t.Errorf("err = %v", err)
	}
}

// TestUnknown tells an unknown secret from a dead one.
func TestUnknown(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, err := e.ids.Authenticate(ctx, "ajar_nope")
	if !identity.Unknown(err) {
		t.Errorf("Unknown(%v) = false", err)
	}
	tok, sess, _ := e.ids.CreateToken(ctx, e.root, "bob@example.com", "", 0)
	e.ids.Revoke(ctx, e.root, sess.ID)
	if _, err := e.ids.Authenticate(ctx, tok); err == nil || identity.Unknown(err) {
		t.Errorf("a revoked token: Unknown(%v) = true", err)
	}
	if err := e.ids.SignInRefused(ctx, "", "revoked", map[string]any{"source": "token"}); err != nil {
		t.Fatal(err)
	}
	if ev := e.audit(t, "signin.refused"); len(ev) != 1 || ev[0].Actor != ajar.ActorSystem {
		t.Fatalf("signin.refused: %+v", ev)
	}
}

// TestNoRefreshTokenShortSession: an IdP that gives no refresh token leaves
// ajar unable to read the groups again, so the session ends after Refresh.
func TestNoRefreshTokenShortSession(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	secret, sess, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "zoe@example.com",
		Groups: []string{"sre"}, Source: "oidc", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if got := sess.ExpiresAt.Sub(sess.CreatedAt); got != 10*time.Minute {
		t.Fatalf("session without a refresh token lasts %v, want identity.refresh (10m)", got)
	}
	e.clock.Advance(10 * time.Minute)
	if _, err := e.ids.Authenticate(ctx, secret); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("after refresh: %v, want EUNAUTH", err)
	}
}

// TestTokenOfUserDroppedByIdP: an API token made for an SSO person stops
// working once the IdP refuses to confirm them at a session's refresh (it
// went on with their last groups forever before), and works again when the
// IdP vouches for them again.
func TestTokenOfUserDroppedByIdP(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.groups.groups["zoe@example.com"] = []string{"sre"}
	_, _, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "zoe@example.com",
		Groups: []string{"sre"}, RefreshToken: "rt1", Source: "oidc", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.ids.CreateToken(ctx, e.root, "zoe@example.com", "ci", 0)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := e.ids.Authenticate(ctx, tok); err != nil || !slices.Equal(u.Groups, []string{"sre"}) {
		t.Fatalf("token before: %+v, %v", u, err)
	}
	// The IdP drops zoe; the idle session's refresh finds out.
	delete(e.groups.groups, "zoe@example.com")
	e.clock.Advance(10 * time.Minute)
	if n, err := e.ids.RefreshIdle(ctx); err != nil || n != 1 {
		t.Fatalf("RefreshIdle = %d, %v", n, err)
	}
	if u, err := e.ids.Authenticate(ctx, tok); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("the token of a person the IdP dropped still works: %+v, %v", u, err)
	}
	if _, ok, err := e.ids.Lookup(ctx, "zoe@example.com"); ok || err != nil {
		t.Errorf("Lookup after the IdP dropped zoe: %v, %v", ok, err)
	}
	// The IdP vouches again at a new sign-in: the token works again.
	if _, _, err := e.ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: "zoe@example.com",
		Groups: []string{"ops"}, RefreshToken: "rt2", Source: "oidc", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if u, err := e.ids.Authenticate(ctx, tok); err != nil || !slices.Equal(u.Groups, []string{"ops"}) {
		t.Fatalf("token after signing in again: %+v, %v", u, err)
	}
}

// cancellingGroups is an IdP whose answer comes after the caller went away
// (it cancels the caller's context first, as a dropped HTTP request does).
// zoeSession returns a Service on e's store whose groups come from groups,
// and the secret of a CLI session of zoe@example.com (groups sre, refresh
// token "rt1") signed in with it.
func (e *env) zoeSession(t *testing.T, groups identity.GroupSource) (*identity.Service, string) {
	t.Helper()
	pol, _ := policy.Parse([]byte(testPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	key := make([]byte, keys.KeySize)
	rand.Read(key)
	mk, _ := keys.NewMasterKey(key)
	ids, err := identity.New(identity.Config{Store: e.st, Policy: pol, Sealer: mk, Groups: groups, Now: e.clock.Now,
		Refresh: 10 * time.Minute, SessionTTL: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := ids.SignIn(t.Context(), identity.SignIn{Kind: ajar.SessionCLI, UserID: "zoe@example.com",
		Groups: []string{"sre"}, RefreshToken: "rt1", Source: "oidc"})
	if err != nil {
		t.Fatal(err)
	}
	return ids, secret
}

type cancellingGroups struct {
	cancel context.CancelFunc
	groups []string
}

func (c *cancellingGroups) Refresh(ctx context.Context, _, rt string) ([]string, string, error) {
	c.cancel()
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	return c.groups, rt, nil
}

// TestRefreshSurvivesDroppedRequest: someone taken out of a group cannot keep
// it by dropping their request while its refresh is at the IdP. The refresh
// used to stop there with the claim moved on, so the old groups stayed for
// another identity.refresh, and again at the next one.
func TestRefreshSurvivesDroppedRequest(t *testing.T) {
	e := newEnv(t)
	cg := &cancellingGroups{groups: []string{"marketing"}}
	ids, secret := e.zoeSession(t, cg)
	e.clock.Advance(10 * time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cg.cancel = cancel
	ids.Authenticate(ctx, secret) // the request is dropped mid-refresh: its answer does not matter
	cg.cancel = func() {}
	u, err := ids.Authenticate(t.Context(), secret)
	if err != nil || !slices.Equal(u.Groups, []string{"marketing"}) {
		t.Fatalf("after a request dropped during the refresh: %+v, %v; want the IdP's new groups [marketing]", u, err)
	}
}

// rotatingGroups is an IdP that rotates the refresh token at every refresh
// and refuses one already used (as OIDC providers do), and holds the first
// refresh until released.
type rotatingGroups struct {
	mu      sync.Mutex
	used    map[string]bool
	calls   int
	entered chan struct{}
	release chan struct{}
	groups  []string
}

func (r *rotatingGroups) Refresh(ctx context.Context, _, rt string) ([]string, string, error) {
	r.mu.Lock()
	r.calls++
	first := r.calls == 1
	reused := r.used[rt]
	r.used[rt] = true
	r.mu.Unlock()
	if first {
		close(r.entered)
		<-r.release
	}
	if reused {
		return nil, "", errors.New("invalid_grant: refresh token already used")
	}
	return r.groups, rt + "+", nil
}

// TestSlowRefreshNotClaimedTwice: while one request's group refresh is at a
// slow IdP (longer than identity.refresh), another request does not claim the
// refresh again with the refresh token the first is rotating: the IdP would
// refuse it as reused, and the session would be ended for nothing.
func TestSlowRefreshNotClaimedTwice(t *testing.T) {
	e := newEnv(t)
	rg := &rotatingGroups{used: map[string]bool{}, entered: make(chan struct{}), release: make(chan struct{}), groups: []string{"sre"}}
	ids, secret := e.zoeSession(t, rg)
	e.clock.Advance(10 * time.Minute)
	first := make(chan error, 1)
	go func() { _, err := ids.Authenticate(t.Context(), secret); first <- err }()
	<-rg.entered
	// The IdP is slow: identity.refresh passes again while it answers.
	e.clock.Advance(10*time.Minute + time.Second)
	if _, err := ids.Authenticate(t.Context(), secret); err != nil {
		t.Errorf("a request during the slow refresh: %v", err)
	}
	close(rg.release)
	if err := <-first; err != nil {
		t.Fatalf("the slow refresh: %v", err)
	}
	if _, err := ids.Authenticate(t.Context(), secret); err != nil {
		t.Fatalf("after the slow refresh: %v; the session must live on", err)
	}
	rg.mu.Lock()
	defer rg.mu.Unlock()
	if rg.calls != 1 {
		t.Errorf("%d refreshes at the IdP, want 1", rg.calls)
	}
}
