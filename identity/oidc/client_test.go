package oidc_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity/oidc"
	"github.com/ajar-dev/ajar/internal/oidctest"
	"github.com/ajar-dev/ajar/policy"
)

const redirect = "http://127.0.0.1:9/auth/oidc/callback"

// setup starts an OP with alice signed in at its login step and a client for
// it.
func setup(t *testing.T, o oidctest.Options, cfg oidc.Config) (*oidctest.OP, *oidc.Client) {
	t.Helper()
	op := oidctest.StartWith(t, o)
	op.AllowRedirect(redirect)
	op.SetUser(oidctest.User{Email: "Alice@Example.com", EmailVerified: true, Groups: []string{"engineers", "oncall"}})
	op.LoginAs("alice@example.com")
	cfg.Issuer, cfg.ClientID, cfg.ClientSecret = op.Issuer(), op.ClientID(), op.ClientSecret()
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"openid", "email", "profile", "groups"}
	}
	c, err := oidc.New(context.Background(), cfg, redirect)
	if err != nil {
		t.Fatal(err)
	}
	return op, c
}

// signIn runs the flow up to the code and exchanges it.
func signIn(t *testing.T, op *oidctest.OP, c *oidc.Client) (*oidc.Identity, error) {
	t.Helper()
	state, nonce, verifier := "state-"+oidc.NewVerifier(), "nonce-"+oidc.NewVerifier(), oidc.NewVerifier()
	back := browse(t, op, c.AuthURL(state, nonce, verifier, oidc.AuthOptions{}))
	if got := back.Query().Get("state"); got != state {
		t.Fatalf("state came back as %q, want %q", got, state)
	}
	return c.Exchange(context.Background(), back.Query().Get("code"), verifier, nonce)
}

func browse(t *testing.T, op *oidctest.OP, authURL string) *url.URL {
	t.Helper()
	back, err := op.Browse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(back.String(), redirect+"?") {
		t.Fatalf("the OP sent the browser to %s, not to the redirect URI", back)
	}
	if e := back.Query().Get("error"); e != "" {
		t.Fatalf("the OP answered error=%s: %s", e, back.Query().Get("error_description"))
	}
	return back
}

// wantUnauth checks err is EUNAUTH and its message says what failed.
func wantUnauth(t *testing.T, err error, says string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want an EUNAUTH error saying %q", says)
	}
	if ajar.ErrorCode(err) != ajar.EUNAUTH || !strings.Contains(ajar.ErrorMessage(err), says) {
		t.Fatalf("error = %v; want EUNAUTH saying %q", err, says)
	}
}

func TestSignInWithPKCE(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	if !c.OfflineAccess() {
		t.Fatal("OfflineAccess() = false; the OP lists offline_access")
	}
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "alice@example.com" {
		t.Errorf("UserID = %q, want the lower-cased email", id.UserID)
	}
	if !slices.Equal(id.Groups, []string{"engineers", "oncall"}) {
		t.Errorf("Groups = %v", id.Groups)
	}
	if id.RefreshToken == "" {
		t.Error("no refresh token although offline_access was requested")
	}
	if !slices.Equal(id.AMR, []string{"pwd"}) || oidc.HasSecondFactor(id.AMR) {
		t.Errorf("AMR = %v, want [pwd] and no second factor", id.AMR)
	}
	if id.Subject == "" || id.AuthTime.IsZero() || id.Expiry.IsZero() {
		t.Errorf("Subject %q, AuthTime %v, Expiry %v: want all set", id.Subject, id.AuthTime, id.Expiry)
	}
	reqs := op.AuthRequests()
	if len(reqs) != 1 {
		t.Fatalf("the OP saw %d authorization requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.CodeChallengeMethod != "S256" || r.CodeChallenge == "" {
		t.Errorf("the OP saw code_challenge %q method %q; want an S256 challenge", r.CodeChallenge, r.CodeChallengeMethod)
	}
	if r.Nonce == "" || r.State == "" || r.RedirectURI != redirect {
		t.Errorf("the OP saw nonce %q, state %q, redirect_uri %q", r.Nonce, r.State, r.RedirectURI)
	}
	if !slices.Contains(r.Scopes, "offline_access") || !slices.Contains(r.Scopes, "openid") {
		t.Errorf("scopes %v: want openid and offline_access", r.Scopes)
	}
	if r.MaxAge != nil || len(r.Prompt) != 0 {
		t.Errorf("a plain sign-in sent max_age %v prompt %v", r.MaxAge, r.Prompt)
	}
}

// TestExchangeNeedsTheVerifier checks the OP enforces PKCE: the code alone,
// or with another verifier, is refused.
func TestExchangeNeedsTheVerifier(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	nonce, verifier := oidc.NewVerifier(), oidc.NewVerifier()
	back := browse(t, op, c.AuthURL("s", nonce, verifier, oidc.AuthOptions{}))
	_, err := c.Exchange(context.Background(), back.Query().Get("code"), oidc.NewVerifier(), nonce)
	wantUnauth(t, err, "refused the authorization code")
}

func TestNoOfflineAccess(t *testing.T) {
	op, c := setup(t, oidctest.Options{NoOfflineAccess: true}, oidc.Config{})
	if c.OfflineAccess() || slices.Contains(c.Scopes(), "offline_access") {
		t.Fatalf("OfflineAccess() = %v, scopes %v; discovery does not list offline_access", c.OfflineAccess(), c.Scopes())
	}
	if _, err := signIn(t, op, c); err != nil {
		t.Fatal(err)
	}
	if s := op.AuthRequests()[0].Scopes; slices.Contains(s, "offline_access") {
		t.Errorf("offline_access requested: %v", s)
	}
}

func TestStepUpAuthURL(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	zero := time.Duration(0)
	browse(t, op, c.AuthURL("s", "n", oidc.NewVerifier(), oidc.AuthOptions{MaxAge: &zero}))
	r := op.AuthRequests()[0]
	if r.MaxAge == nil || *r.MaxAge != 0 || !slices.Equal(r.Prompt, []string{"login"}) {
		t.Errorf("the OP saw max_age %v prompt %v; want 0 and login", r.MaxAge, r.Prompt)
	}
}

func TestBadIDTokens(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(*oidctest.Claims)
		says   string
	}{
		{"wrong audience", func(c *oidctest.Claims) { c.Audience = []string{"someone-else"} }, "another client (audience)"},
		{"expired", func(c *oidctest.Claims) {
			c.Expiry = time.Now().Add(-time.Hour)
			c.IssuedAt = time.Now().Add(-2 * time.Hour)
		}, "expired"},
		{"another nonce", func(c *oidctest.Claims) { c.Nonce = "not-the-one-sent" }, "nonce"},
		{"no nonce", func(c *oidctest.Claims) { c.Nonce = "" }, "nonce"},
		{"another issuer", func(c *oidctest.Claims) { c.Issuer = "https://evil.example.com" }, "another issuer"},
		{"a key the issuer does not publish", func(c *oidctest.Claims) { c.WrongKey = true }, "signature"},
		{"email not verified", func(c *oidctest.Claims) { c.Other["email_verified"] = false }, "not verified"},
		{"email_verified a string false", func(c *oidctest.Claims) { c.Other["email_verified"] = "false" }, "not verified"},
		{"groups not strings", func(c *oidctest.Claims) { c.Other["groups"] = []any{"a", 1} }, "list of strings"},
		{"user id with a space", func(c *oidctest.Claims) { c.Other["email"] = "alice @example.com" }, "spaces"},
		{"user id naming a group", func(c *oidctest.Claims) { c.Other["email"] = "group:admins" }, "names a group"},
		// Lower-cased, these would be the ids of other people (KELVIN SIGN is
		// k, DOTTED CAPITAL I is i): kate@ and admin@ would sign in as them.
		{"user id with a Kelvin sign", func(c *oidctest.Claims) { c.Other["email"] = "\u212Aate@example.com" }, "lower-cases to"},
		{"user id with a dotted capital I", func(c *oidctest.Claims) { c.Other["email"] = "adm\u0130n@example.com" }, "lower-cases to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, c := setup(t, oidctest.Options{}, oidc.Config{})
			op.Tamper(tc.tamper)
			id, err := signIn(t, op, c)
			if id != nil {
				t.Errorf("Exchange returned an identity with its error: %+v", id)
			}
			wantUnauth(t, err, tc.says)
		})
	}
}

// TestTamperControl checks the tamper machinery itself leaves a token valid
// when it changes nothing, so the refusals above are about the claims.
func TestTamperControl(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	op.Tamper(func(*oidctest.Claims) {})
	if _, err := signIn(t, op, c); err != nil {
		t.Fatal(err)
	}
}

func TestEmailNotVerified(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	op.SetUser(oidctest.User{Email: "mallory@example.com", EmailVerified: false})
	op.LoginAs("mallory@example.com")
	_, err := signIn(t, op, c)
	wantUnauth(t, err, "mallory@example.com is not verified")
}

// TestUnverifiedEmailOKWithAnotherUserClaim: email_verified matters only
// when the email names the user.
func TestUserClaimOtherThanEmail(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{UserClaim: "sub"})
	op.SetUser(oidctest.User{Subject: "U123", Email: "x@example.com", EmailVerified: false})
	op.LoginAs("U123")
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "u123" {
		t.Errorf("UserID = %q, want the lower-cased sub", id.UserID)
	}
}

func TestMissingUserClaim(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	op.SetUser(oidctest.User{Subject: "no-email"})
	op.LoginAs("no-email")
	_, err := signIn(t, op, c)
	wantUnauth(t, err, `no "email" claim`)

	op2, c2 := setup(t, oidctest.Options{}, oidc.Config{UserClaim: "preferred_username"})
	_, err = signIn(t, op2, c2)
	wantUnauth(t, err, `no "preferred_username" claim`)
}

// TestClaimsFromUserinfo: an OP that keeps email and groups out of the ID
// token (userinfo only) still signs people in, and email_verified is read
// from userinfo with the email.
func TestClaimsFromUserinfo(t *testing.T) {
	op, c := setup(t, oidctest.Options{ClaimsOnlyInUserinfo: true, GroupsOnlyInUserinfo: true}, oidc.Config{})
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	if id.UserID != "alice@example.com" || !slices.Equal(id.Groups, []string{"engineers", "oncall"}) {
		t.Errorf("identity %+v; want alice with her groups from userinfo", id)
	}
	op.SetUser(oidctest.User{Email: "bob@example.com"})
	op.LoginAs("bob@example.com")
	_, err = signIn(t, op, c)
	wantUnauth(t, err, "not verified")
}

func TestGroupsAsOneString(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{GroupsClaim: "roles"})
	op.Tamper(func(c *oidctest.Claims) { c.Other["roles"] = "admins" })
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Groups, []string{"admins"}) {
		t.Errorf("Groups = %v, want [admins] from a string claim", id.Groups)
	}
}

func TestRefreshReadsNewGroups(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	op.SetUser(oidctest.User{Email: "Alice@Example.com", EmailVerified: true, Groups: []string{"engineers"}})
	again, err := c.Refresh(context.Background(), id.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if again.UserID != "alice@example.com" || !slices.Equal(again.Groups, []string{"engineers"}) {
		t.Errorf("after refresh: %q %v; want alice without oncall", again.UserID, again.Groups)
	}
	if again.RefreshToken == "" || again.RefreshToken == id.RefreshToken {
		t.Error("the OP rotates refresh tokens; Refresh did not return the new one")
	}
	// The old token was rotated away.
	_, err = c.Refresh(context.Background(), id.RefreshToken)
	wantUnauth(t, err, "refused the refresh token")

	gs := oidc.GroupSource{Client: c}
	groups, next, err := gs.Refresh(context.Background(), "ALICE@example.com", again.RefreshToken)
	if err != nil || next == "" || !slices.Equal(groups, []string{"engineers"}) {
		t.Fatalf("GroupSource.Refresh = %v, %q, %v", groups, next, err)
	}
	_, _, err = gs.Refresh(context.Background(), "bob@example.com", next)
	wantUnauth(t, err, "names alice@example.com, not bob@example.com")
}

// TestRefreshGroupsFromUserinfo: with groups only in userinfo, a refresh
// reads them there.
func TestRefreshGroupsFromUserinfo(t *testing.T) {
	op, c := setup(t, oidctest.Options{GroupsOnlyInUserinfo: true}, oidc.Config{})
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	op.SetUser(oidctest.User{Email: "alice@example.com", EmailVerified: true, Groups: []string{"managers"}})
	again, err := c.Refresh(context.Background(), id.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Groups, []string{"managers"}) {
		t.Errorf("Groups = %v, want [managers]", again.Groups)
	}
}

func TestRefreshRemovedUser(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	op.RemoveUser("alice@example.com")
	got, err := c.Refresh(context.Background(), id.RefreshToken)
	if got != nil {
		t.Errorf("Refresh returned %+v for a removed user", got)
	}
	wantUnauth(t, err, "refused the refresh token")
	if strings.Contains(err.Error(), id.RefreshToken) {
		t.Error("the error message holds the refresh token")
	}
}

func TestRefreshBadIDToken(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	op.Tamper(func(c *oidctest.Claims) { c.Audience = []string{"other"} })
	_, err = c.Refresh(context.Background(), id.RefreshToken)
	wantUnauth(t, err, "audience")
}

func TestSecondFactor(t *testing.T) {
	op, c := setup(t, oidctest.Options{}, oidc.Config{})
	op.SetUser(oidctest.User{Email: "alice@example.com", EmailVerified: true, AMR: []string{"pwd", "hwk"}})
	id, err := signIn(t, op, c)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.AMR, []string{"pwd", "hwk"}) || !oidc.HasSecondFactor(id.AMR) {
		t.Errorf("AMR = %v: want [pwd hwk], a second factor", id.AMR)
	}
	for amr, want := range map[string]bool{"": false, "pwd": false, "pwd kba": false, "mfa": true, "pwd otp": true, "swk": true, "MFA": true, "fpt": true, "sc": true} {
		if got := oidc.HasSecondFactor(strings.Fields(amr)); got != want {
			t.Errorf("HasSecondFactor(%q) = %v, want %v", amr, got, want)
		}
	}
}

func TestUnreachableIssuer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	_, err = oidc.New(context.Background(), oidc.Config{Issuer: issuer, ClientID: "ajar"}, redirect)
	if err == nil {
		t.Fatal("New succeeded with nothing at the issuer")
	}
	if ajar.ErrorField(err) != "identity.oidc.issuer" || !strings.Contains(err.Error(), issuer) {
		t.Fatalf("error = %v; want one on identity.oidc.issuer naming %s", err, issuer)
	}
}

// TestIssuerMismatch: discovery served at one URL naming another issuer is
// refused at New.
func TestIssuerMismatch(t *testing.T) {
	op := oidctest.Start(t)
	other := strings.Replace(op.Issuer(), "127.0.0.1", "localhost", 1)
	_, err := oidc.New(context.Background(), oidc.Config{Issuer: other, ClientID: "ajar"}, redirect)
	if err == nil || !strings.Contains(err.Error(), other) {
		t.Fatalf("error = %v; want a refusal naming %s", err, other)
	}
}

func TestPKCEHelpers(t *testing.T) {
	v := oidc.NewVerifier()
	if len(v) < 43 || v == oidc.NewVerifier() {
		t.Fatalf("verifier %q: want 43+ random characters", v)
	}
	// RFC 7636 appendix B.
	if got := oidc.Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("Challenge = %q", got)
	}
	if !oidc.VerifyChallenge(v, oidc.Challenge(v)) || oidc.VerifyChallenge(oidc.NewVerifier(), oidc.Challenge(v)) || oidc.VerifyChallenge("", oidc.Challenge("")) {
		t.Error("VerifyChallenge accepts a wrong verifier or refuses the right one")
	}
}

func TestConfigFromPolicy(t *testing.T) {
	op := oidctest.Start(t)
	src := fmt.Sprintf(`
server: {public_url: "http://127.0.0.1:8700/"}
users: [{id: alice@example.com}]
targets: {web: {provider: fake}}
policies: [{name: web, targets: [web], requesters: [alice@example.com], default_duration: 5m, max_duration: 1h, approval: {auto_approve: 'true'}}]
identity: {oidc: {issuer: %q, client_id: %s, client_secret_env: OP_SECRET}}
`, op.Issuer(), op.ClientID())
	pol, err := policy.Parse([]byte(src), nil, policy.WithEnv(func(n string) (string, bool) { return op.ClientSecret(), n == "OP_SECRET" }))
	if err != nil {
		t.Fatal(err)
	}
	cfg := oidc.ConfigFrom(*pol.Identity().OIDC)
	if cfg.ClientSecret != op.ClientSecret() || cfg.UserClaim != "email" || !slices.Equal(cfg.Scopes, policy.DefaultScopes) {
		t.Fatalf("ConfigFrom = %+v", cfg)
	}
	ru := oidc.RedirectURL(pol.Server().PublicURL)
	if ru != "http://127.0.0.1:8700/auth/oidc/callback" {
		t.Fatalf("RedirectURL = %q", ru)
	}
	op.AllowRedirect(ru)
	op.SetUser(oidctest.User{Email: "alice@example.com", EmailVerified: true})
	op.LoginAs("alice@example.com")
	c, err := oidc.New(context.Background(), cfg, ru)
	if err != nil {
		t.Fatal(err)
	}
	nonce, verifier := oidc.NewVerifier(), oidc.NewVerifier()
	back, err := op.Browse(c.AuthURL("st", nonce, verifier, oidc.AuthOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Exchange(context.Background(), back.Query().Get("code"), verifier, nonce)
	if err != nil || id.UserID != "alice@example.com" {
		t.Fatalf("Exchange = %+v, %v", id, err)
	}
}
