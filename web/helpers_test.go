package web_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/identity/login"
	"github.com/ajar-dev/ajar/identity/sso"
	"github.com/ajar-dev/ajar/internal/oidctest"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/store/sqlite"
	"github.com/ajar-dev/ajar/web"
)

// clock is the store's clock, which a test can move forward to make grants
// expire without waiting.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// server is the real ajar server in this process: the demo policy (or a
// test's), a SQLite store, the broker with its scheduler, and the API server
// with the web pages mounted, on a loopback port; with an OP, single sign-on
// and security keys too.
type server struct {
	URL    string
	dir    string // the data directory: ajar.db
	Svc    *broker.Service
	IDs    *identity.Service
	Login  *login.Service // nil without single sign-on
	Store  *sqlite.Store
	Clock  *clock
	tokens map[string]string // "alice", "bob", "admin"
}

// startServer starts a server with data in a temporary directory; it stops when
// the test ends.
func startServer(t testing.TB) *server {
	t.Helper()
	return startServerWith(t, serverConfig{})
}

// serverConfig is what a test changes of the server startServerWith makes.
type serverConfig struct {
	// Policy is the policy file's users, targets and rules (YAML); "" is the
	// demo policy. With OP set, the helper adds server.public_url and
	// identity.oidc for that OP in front of it.
	Policy string
	// OP, when set, is the identity provider: the server has single sign-on
	// and security keys, as sso.Build makes them for cmd/ajar.
	OP *oidctest.OP
	// DevTokens is web.Options.DevTokens: "" runs the pages as outside dev mode.
	DevTokens string
}

// testClientSecretEnv names the variable the test policy reads the OP's
// client secret from (through policy.WithEnv, never the process environment).
const testClientSecretEnv = "AJAR_TEST_OIDC_SECRET"

// startServerWith starts a server as cfg says. It listens on a loopback port
// chosen first, so that server.public_url can name it: http://localhost:PORT,
// a name, because an IP address cannot be a WebAuthn relying party id (and
// Chromium resolves localhost to loopback).
func startServerWith(t testing.TB, cfg serverConfig) *server {
	t.Helper()
	ctx := context.Background()
	clk := &clock{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	base := "http://" + ln.Addr().String()
	var pol *policy.Policy
	switch {
	case cfg.OP != nil:
		base = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
		cfg.OP.AllowRedirect(base + "/auth/oidc/callback")
		src := fmt.Sprintf("server: {public_url: %q}\nidentity:\n  oidc: {issuer: %q, client_id: %q, client_secret_env: %s, scopes: [openid, email, profile, groups]}\n",
			base, cfg.OP.Issuer(), cfg.OP.ClientID(), testClientSecretEnv) + cfg.Policy
		secret := cfg.OP.ClientSecret()
		pol, err = policy.Parse([]byte(src), provider.CheckTarget, policy.WithEnv(func(name string) (string, bool) {
			return secret, name == testClientSecretEnv
		}))
	case cfg.Policy != "":
		pol, err = policy.Parse([]byte(cfg.Policy), provider.CheckTarget)
	default:
		pol, err = policy.DemoPolicy(provider.CheckTarget)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ajar.db"), sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, keys.KeySize)
	rand.Read(key)
	mk, err := keys.NewMasterKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ks := ajar.StoreKeys(st)
	signer, err := audit.LoadOrCreateSigner(ctx, ks, mk, "ajar-test")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sshcert.LoadOrCreateCA(ctx, ks, mk)
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]provider.Target{}
	for _, name := range pol.TargetNames() {
		tg, _ := pol.Target(name)
		targets[name] = provider.Target{Provider: tg.Provider, Config: tg.Config}
	}
	provs, err := provider.NewSet(targets, provider.Deps{SSHCA: ca})
	if err != nil {
		t.Fatal(err)
	}
	// Sessions, single sign-on and security keys as cmd/ajar builds them.
	parts, err := sso.Build(ctx, pol, st, mk, clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := parts.IDs
	svc, err := broker.New(broker.Config{
		Store: st, Policy: pol, Providers: provs,
		Now: clk.Now, Scheduler: broker.SchedulerConfig{Poll: 200 * time.Millisecond}, Users: ids.Lookup,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	// The core as cmd/ajar serves it: the broker with the read model beside it.
	core := struct {
		*broker.Service
		*readmodel.Reader
		*sshCerts
	}{svc, readmodel.New(readmodel.Config{Core: svc, Store: st, Policy: pol, Providers: provs, Now: clk.Now, Signer: signer}), sshaccess.New(svc, st, pol, provs, ca.AuthorizedKey)}
	opts := web.Options{Now: clk.Now, Refresh: time.Second, DevTokens: cfg.DevTokens}
	var apiLogin api.Login
	if parts.Login != nil {
		opts.Login, apiLogin = parts.Login, parts.Login
	}
	if parts.MFA != nil {
		opts.MFA = parts.MFA
	}
	pages := web.New(core, ids, opts)
	apiSrv := api.NewServer(core, ids, api.Options{Web: pages, Login: apiLogin})
	hs := &http.Server{Handler: apiSrv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	s := &server{URL: base, dir: dir, Svc: svc, IDs: ids, Login: parts.Login, Store: st, Clock: clk, tokens: map[string]string{}}
	for _, u := range pol.Users() {
		tok, _, err := ids.CreateToken(ctx, ajar.User{}, u.ID, "test", 0)
		if err != nil {
			t.Fatal(err)
		}
		s.tokens[strings.SplitN(u.ID, "@", 2)[0]] = tok
	}
	return s
}

// user returns the demo user name ("alice") as the core knows it.
func (s *server) user(t testing.TB, name string) ajar.User {
	t.Helper()
	u, err := s.IDs.Authenticate(context.Background(), s.tokens[name])
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// createRequest files a request through the core, as the CLI would.
func (s *server) createRequest(t testing.TB, name, duration, reason string) *ajar.Request {
	t.Helper()
	r, err := s.Svc.CreateRequest(context.Background(), s.user(t, name), ajar.CreateInput{
		Target: "demo-ssh", Duration: duration, Reason: reason, Params: map[string]string{"source_ip": "127.0.0.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitState polls a request until it reaches want.
func (s *server) waitState(t testing.TB, id string, want ajar.State) *ajar.Request {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := s.Svc.GetRequest(context.Background(), s.user(t, "admin"), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s is %s, want %s", id, r.State, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client is a browser-like HTTP client with its own cookies, for tests that
// need no real browser. It does not follow redirects.
type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func newClient(t testing.TB, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}}
}

// response is a page as the client got it.
type response struct {
	Status int
	Header http.Header
	Body   string
}

func (c *client) do(method, path string, form url.Values, header ...string) response {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (c *client) get(path string, header ...string) response {
	c.t.Helper()
	return c.do(http.MethodGet, path, nil, header...)
}

func (c *client) post(path string, form url.Values, header ...string) response {
	c.t.Helper()
	return c.do(http.MethodPost, path, form, header...)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token in a page's forms.
func csrf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", body)
	}
	return m[1]
}

// signIn signs the client in with a token and returns the session's CSRF token.
func (c *client) signIn(token string) string {
	c.t.Helper()
	page := c.get("/signin")
	resp := c.post("/signin", url.Values{"csrf": {csrf(c.t, page.Body)}, "token": {token}, "next": {"/access"}})
	if resp.Status != http.StatusSeeOther || resp.Header.Get("Location") != "/access" {
		c.t.Fatalf("sign in: status %d, Location %q\n%s", resp.Status, resp.Header.Get("Location"), resp.Body)
	}
	return csrf(c.t, c.get("/access").Body)
}

// sshCerts is sshaccess.Service (SSH certificates), embedded beside
// *broker.Service under a name of its own, as cmd/ajar serves them.
type sshCerts = sshaccess.Service
