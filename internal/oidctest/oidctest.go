// Package oidctest runs a real OpenID Provider on loopback for tests: the
// zitadel/oidc op package over in-memory storage, with one confidential client
// (ajar), the authorization code flow with PKCE (S256 required), refresh
// tokens, userinfo and RS256-signed ID tokens.
//
// Users, their groups and amr are set per test (SetUser, RemoveUser). The OP
// has no password form: LoginAs names the person its login step signs in, so a
// headless browser or a $BROWSER script can run the whole flow. Tamper lets a
// test spoil the next ID token (another audience, expired, another nonce, a
// key the issuer does not publish) to check that a client refuses it.
//
// Only tests import this package (internal/layering enforces it).
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person the OP knows.
type User struct {
	// Subject is the stable "sub" claim; "sub-" + the lower-cased Email when
	// empty.
	Subject       string
	Email         string // "" for a person without an email claim
	EmailVerified bool   // false: the email_verified claim is left out
	Groups        []string
	// AMR is the amr claim of the next sign-ins; ["pwd"] when empty.
	AMR []string
}

// AuthRequest is what the OP saw at its authorization endpoint.
type AuthRequest struct {
	ClientID            string
	RedirectURI         string
	Scopes              []string
	State               string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	// MaxAge is the max_age parameter (nil when absent; prompt=login sets 0).
	MaxAge *time.Duration
	Prompt []string
}

// Options change how the OP behaves; the zero value is the usual setup.
type Options struct {
	// NoOfflineAccess leaves offline_access out of the discovery document's
	// scopes_supported.
	NoOfflineAccess bool
	// GroupsOnlyInUserinfo keeps the groups claim out of ID tokens: only the
	// userinfo endpoint has it.
	GroupsOnlyInUserinfo bool
	// ClaimsOnlyInUserinfo keeps the profile and email claims (email,
	// email_verified...) out of ID tokens, as an OP may when it issues an
	// access token: only the userinfo endpoint has them.
	ClaimsOnlyInUserinfo bool
}

// OP is a running OpenID Provider. Its methods are safe for concurrent use.
type OP struct {
	srv      *httptest.Server
	provider *op.Provider
	store    *storage
	issuer   string
	secret   string
}

const clientID = "ajar"

// Start runs an OP with default Options; it is closed when the test ends.
func Start(t testing.TB) *OP { return StartWith(t, Options{}) }

// StartWith runs an OP with o; it is closed when the test ends.
func StartWith(t testing.TB, o Options) *OP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		t.Fatal(err)
	}
	var handler http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r)
	}))
	issuer := "http://" + srv.Listener.Addr().String()
	s := newStorage(key, o)
	s.client.secret = randomHex(16)
	cfg := &op.Config{
		CryptoKey:             cryptoKey,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedScopes:       []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, "groups", oidc.ScopeOfflineAccess},
	}
	if o.NoOfflineAccess {
		cfg.SupportedScopes = slices.DeleteFunc(cfg.SupportedScopes, func(s string) bool { return s == oidc.ScopeOfflineAccess })
	}
	provider, err := op.NewProvider(cfg, s, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	p := &OP{srv: srv, provider: provider, store: s, issuer: issuer, secret: s.client.secret}
	mux := http.NewServeMux()
	login := op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(p.login)
	mux.Handle(loginPath, login)
	mux.Handle("/", p.tamperToken(provider))
	handler = mux
	srv.Start()
	t.Cleanup(p.Close)
	return p
}

// Issuer is the OP's issuer URL (http://127.0.0.1:PORT).
func (p *OP) Issuer() string { return p.issuer }

// ClientID is the id of the one registered client, "ajar".
func (p *OP) ClientID() string { return clientID }

// ClientSecret is that client's secret, random per OP.
func (p *OP) ClientSecret() string { return p.secret }

// AllowRedirect registers uri as a redirect URI of the client.
func (p *OP) AllowRedirect(uri string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	if !slices.Contains(p.store.client.redirectURIs, uri) {
		p.store.client.redirectURIs = append(p.store.client.redirectURIs, uri)
	}
}

// SetUser adds u, or updates the user with u's subject: the next ID token,
// refresh and userinfo answer say what u says.
func (p *OP) SetUser(u User) {
	u.Email = strings.TrimSpace(u.Email)
	if u.Subject == "" {
		u.Subject = "sub-" + strings.ToLower(u.Email)
	}
	u.Groups = slices.Clone(u.Groups)
	u.AMR = slices.Clone(u.AMR)
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.users[u.Subject] = &u
}

// RemoveUser forgets the user with this email or subject: their refresh
// tokens are refused and userinfo fails from now on.
func (p *OP) RemoveUser(emailOrSubject string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	if u := p.store.findUser(emailOrSubject); u != nil {
		delete(p.store.users, u.Subject)
	}
}

// LoginAs makes the login step sign in the user with this email or subject
// without showing a form, for every authorization request from now on. ""
// brings the form back.
func (p *OP) LoginAs(emailOrSubject string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.loginAs = emailOrSubject
}

// AuthRequests returns the authorization requests the OP received, oldest
// first.
func (p *OP) AuthRequests() []AuthRequest {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return slices.Clone(p.store.seen)
}

// Close stops the OP. Start registers it with t.Cleanup; calling it twice is
// harmless.
func (p *OP) Close() { p.srv.Close() }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Browse plays the browser for a flow that starts at authURL: it follows the
// OP's redirects (its login step signs in the LoginAs user) and returns the
// first URL outside the OP, the redirect back to the client with code and
// state (or error and error_description). It fails when the OP answers with
// a page instead, such as the login form when LoginAs is not set.
func (p *OP) Browse(authURL string) (*url.URL, error) {
	hc := &http.Client{
		Timeout: 60 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 10 {
				return errors.New("too many redirects")
			}
			if !strings.HasPrefix(req.URL.String(), p.issuer+"/") {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := hc.Get(authURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	loc, err := resp.Location()
	if err != nil || resp.StatusCode/100 != 3 {
		return nil, fmt.Errorf("oidctest: the OP answered %s, not a redirect to the client: %s", resp.Status, body)
	}
	return loc, nil
}
