package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/oidctest"
)

// Single sign-on through the real binary, against a real OpenID Provider on
// loopback (internal/oidctest, built on zitadel/oidc): "ajar login" with
// $BROWSER, the headless device login, groups that change at the IdP, logout,
// and sign-ins the server must refuse. The web pages' Chromium flows are in
// package web.

// freePort returns a loopback port nobody listens on right now, so that the
// policy's server.public_url can name the port ajar will listen on.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ssoServer runs ajar (dev mode for the static admin's token) with a policy
// whose people come from op: engineers request "counted", sre approve.
func ssoServer(t *testing.T, op *oidctest.OP, refresh string, extra string) *server {
	t.Helper()
	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	op.AllowRedirect(public + "/auth/oidc/callback")
	dir := t.TempDir()
	counter := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	yaml := fmt.Sprintf(`
server: {public_url: %s}
identity:
  oidc:
    issuer: %s
    client_id: %s
    client_secret_env: AJAR_OIDC_CLIENT_SECRET
    scopes: [openid, email, profile, groups]
  refresh: %s
%s
users:
  - {id: admin@example.com, groups: [secops]}
admins: [group:secops]
targets:
  counted:
    provider: testonly-counter
    config: {dir: %q}
policies:
  - name: counted
    targets: [counted]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`, public, op.Issuer(), op.ClientID(), refresh, extra, counter)
	if err := os.WriteFile(policyPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return launch(t, dir, serveOpts{
		bin:  bin,
		args: []string{"serve", "--dev", "--config", policyPath, "--data", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port)},
		env: append(os.Environ(), "AJAR_MASTER_KEY=", "AJAR_TESTONLY_PROVIDERS=1",
			"AJAR_OIDC_CLIENT_SECRET="+op.ClientSecret()),
		name:    "ajar serve (sso)",
		timeout: 60 * time.Second,
		cleanup: func(s *server) {
			s.kill()
			if t.Failed() {
				t.Logf("server log:\n%s", s.logs())
			}
		},
	})
}

// cliUser is a person's own machine: a config directory for the stored
// credentials and no AJAR_TOKEN.
type cliUser struct {
	env  []string
	conf string // XDG_CONFIG_HOME
}

func newCLIUser(t *testing.T, s *server) *cliUser {
	home := t.TempDir()
	conf := filepath.Join(home, "config")
	return &cliUser{conf: conf, env: []string{"HOME=" + home, "XDG_CONFIG_HOME=" + conf, "AJAR_SERVER=" + s.URL, "AJAR_TOKEN=", "DISPLAY=", "WAYLAND_DISPLAY="}}
}

func (c *cliUser) credentialsPath() string { return filepath.Join(c.conf, "ajar", "credentials") }

// start runs the CLI as this person without waiting for it.
func (c *cliUser) start(t *testing.T, extraEnv []string, args ...string) (*exec.Cmd, *bytes.Buffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), c.env...), extraEnv...)
	var out bytes.Buffer
	errb := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &out, errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &out, errb
}

// run runs the CLI as this person.
func (c *cliUser) run(t *testing.T, args ...string) result {
	t.Helper()
	cmd, out, errb := c.start(t, nil, args...)
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ajar %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func (c *cliUser) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := c.run(t, args...)
	if r.Code != 0 {
		t.Fatalf("ajar %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// syncBuffer is a bytes.Buffer a test may read while the process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// login runs "ajar login" with $BROWSER pointed at a script; the URL it is
// given is loaded by a cookie-keeping browser signed in at the OP as email.
func (c *cliUser) login(t *testing.T, op *oidctest.OP, email string) {
	t.Helper()
	script, next := oidctest.BrowserScript(t)
	cmd, out, errb := c.start(t, []string{"BROWSER=" + script}, "login")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	signin, err := next(ctx)
	if err != nil {
		t.Fatalf("ajar login opened no browser: %v\n%s", err, errb.String())
	}
	op.LoginAs(email)
	final, status, body, err := oidctest.NewBrowser().Get(ctx, signin)
	if err != nil || status != http.StatusOK || final.Hostname() != "127.0.0.1" || final.Path != "/callback" || !strings.Contains(body, "Signed in") {
		t.Fatalf("the browser ended on %v (%d, %v):\n%s", final, status, err, body)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ajar login: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	// Checked once it exited: until then what it wrote may still be on its
	// way through the pipe.
	if !strings.Contains(errb.String(), signin) {
		t.Errorf("ajar login did not print the URL it opened (%s):\n%s", signin, errb.String())
	}
	if !strings.Contains(out.String(), "as "+strings.ToLower(email)) {
		t.Fatalf("ajar login printed %q", out.String())
	}
}

// storedToken returns the token "ajar login" stored, checking the file's mode.
func (c *cliUser) storedToken(t *testing.T) string {
	t.Helper()
	st, err := os.Stat(c.credentialsPath())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v, want 0600", st.Mode().Perm())
	}
	var creds struct{ Server, Token string }
	b, _ := os.ReadFile(c.credentialsPath())
	if err := json.Unmarshal(b, &creds); err != nil || creds.Token == "" {
		t.Fatalf("credentials file: %v\n%s", err, b)
	}
	return creds.Token
}

type whoami struct {
	ID      string   `json:"id"`
	Groups  []string `json:"groups"`
	Session struct {
		Kind      string    `json:"kind"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"session"`
}

func (c *cliUser) whoami(t *testing.T) whoami {
	t.Helper()
	var w whoami
	if err := json.Unmarshal([]byte(c.ok(t, "whoami", "-o", "json")), &w); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestSSOLoginGroupsAndLogout: "ajar login" through the IdP; groups from the
// claims decide who requests and approves; a person removed from a group at
// the IdP can no longer approve once identity.refresh has passed; logout and
// a revoked session give 401 at once.
func TestSSOLoginGroupsAndLogout(t *testing.T) {
	parallel(t, costLight)
	op := oidctest.Start(t)
	op.SetUser(oidctest.User{Email: "Alice@Example.com", EmailVerified: true, Groups: []string{"engineers"}})
	op.SetUser(oidctest.User{Email: "bob@example.com", EmailVerified: true, Groups: []string{"sre"}})
	s := ssoServer(t, op, "2s", "")

	alice, bob := newCLIUser(t, s), newCLIUser(t, s)
	if r := alice.run(t, "whoami"); r.Code == 0 || !strings.Contains(r.Stderr, "ajar login") {
		t.Fatalf("whoami before login: %+v, want a hint to run ajar login", r)
	}
	alice.login(t, op, "Alice@Example.com")
	bob.login(t, op, "bob@example.com")

	w := alice.whoami(t)
	if w.ID != "alice@example.com" || !slices.Equal(w.Groups, []string{"engineers"}) || w.Session.Kind != "cli" {
		t.Fatalf("alice whoami = %+v", w)
	}
	if d := time.Until(w.Session.ExpiresAt); d < 11*time.Hour || d > 13*time.Hour {
		t.Errorf("a CLI session ends in %s, want identity.session_ttl (12h)", d)
	}

	// Groups from the IdP work for requesting and approving.
	var r1 ajar.Request
	if err := json.Unmarshal([]byte(alice.ok(t, "request", "counted", "--reason", "deploy", "-o", "json")), &r1); err != nil {
		t.Fatal(err)
	}
	if r1.State != ajar.StatePending {
		t.Fatalf("request is %s", r1.State)
	}
	bob.ok(t, "approve", r1.ID)
	s.waitState(t, "admin", r1.ID, ajar.StateActive, time.Minute)

	// Bob leaves sre at the IdP: within identity.refresh (2s) he keeps his
	// session, with his new groups, and can no longer approve.
	op.SetUser(oidctest.User{Email: "bob@example.com", EmailVerified: true, Groups: []string{"marketing"}})
	var r2 ajar.Request
	json.Unmarshal([]byte(alice.ok(t, "request", "counted", "--reason", "again", "-o", "json")), &r2)
	deadline := time.Now().Add(2 * time.Minute)
	for !slices.Equal(bob.whoami(t).Groups, []string{"marketing"}) {
		if time.Now().After(deadline) {
			t.Fatalf("bob's groups were not re-read: %+v", bob.whoami(t))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// He is no approver now, so he does not even see the request.
	if r := bob.run(t, "approve", r2.ID); r.Code == 0 || !(strings.Contains(r.Stderr, "not an approver") || strings.Contains(r.Stderr, "no request")) {
		t.Fatalf("bob approves after leaving sre: %+v", r)
	}
	if st := s.request(t, "admin", "show", r2.ID).State; st != ajar.StatePending {
		t.Fatalf("request after bob's refused approval is %s", st)
	}
	changed := false
	for _, ev := range s.auditEvents(t) {
		changed = changed || (ev.Action == "session.groups_changed" && ev.Subject == "bob@example.com")
	}
	if !changed {
		t.Error("no session.groups_changed audit event for bob")
	}

	// Someone the IdP no longer knows is signed out at the next refresh.
	op.RemoveUser("bob@example.com")
	deadline = time.Now().Add(2 * time.Minute)
	for {
		r := bob.run(t, "whoami")
		if r.Code != 0 {
			if !strings.Contains(r.Stderr, "sign in again") && !strings.Contains(r.Stderr, "ajar login") {
				t.Errorf("bob signed out by the IdP: %q", r.Stderr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob is still signed in after the IdP forgot him")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// His stored session is dead: logout still forgets it.
	if r := bob.run(t, "logout"); r.Code != 0 || !strings.Contains(r.Stderr, "already ended") {
		t.Fatalf("logout of an ended session: %+v", r)
	}
	if _, err := os.Stat(bob.credentialsPath()); !os.IsNotExist(err) {
		t.Fatalf("bob's credentials file after logout: %v", err)
	}

	// Logout ends the session on the server at once and deletes the file.
	token := alice.storedToken(t)
	alice.ok(t, "logout")
	if _, err := os.Stat(alice.credentialsPath()); !os.IsNotExist(err) {
		t.Fatalf("credentials file after logout: %v", err)
	}
	if st, _ := s.httpAs(t, token, http.MethodGet, "/v1/whoami"); st != http.StatusUnauthorized {
		t.Fatalf("alice's token after logout: %d, want 401", st)
	}
}

// TestSSOHeadlessLogin: "ajar login --headless" prints a URL and a code; the
// person opens it in another browser, confirms the code and signs in at the
// IdP; the CLI then holds a session. The code works once.
func TestSSOHeadlessLogin(t *testing.T) {
	parallel(t, costLight)
	op := oidctest.Start(t)
	op.SetUser(oidctest.User{Email: "carol@example.com", EmailVerified: true, Groups: []string{"sre"}})
	s := ssoServer(t, op, "10m", "")
	carol := newCLIUser(t, s)
	cmd, out, errb := carol.start(t, nil, "login", "--headless")

	complete := regexp.MustCompile(`(http://\S+/auth/device\?code=([A-Z]{4}-[A-Z]{4}))`)
	var link, code string
	deadline := time.Now().Add(time.Minute)
	for link == "" {
		if m := complete.FindStringSubmatch(errb.String()); m != nil {
			link, code = m[1], m[2]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no device URL printed:\n%s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(errb.String(), "\n  "+code+"\n") {
		t.Errorf("the code is not shown on its own line:\n%s", errb.String())
	}

	// Another machine's browser: the device page, then the IdP.
	op.LoginAs("carol@example.com")
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: time.Minute}
	resp, err := hc.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || csrf == nil || !bytes.Contains(page, []byte(code)) {
		t.Fatalf("device page (%d):\n%s", resp.StatusCode, page)
	}
	form := url.Values{"csrf": {string(csrf[1])}, "code": {code}}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/auth/device", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.URL)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("/auth/device/done")) {
		t.Fatalf("after the IdP (%d, %s):\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ajar login --headless: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if w := carol.whoami(t); w.ID != "carol@example.com" || !slices.Equal(w.Groups, []string{"sre"}) {
		t.Fatalf("whoami after a headless login: %+v", w)
	}
}

// ssoWebSignIn runs a web sign-in with a cookie-keeping browser signed in at
// the OP as email and returns the callback's final URL, status and body.
func ssoWebSignIn(t *testing.T, s *server, op *oidctest.OP, email string) (*url.URL, int, string, *oidctest.Browser) {
	t.Helper()
	op.LoginAs(email)
	b := oidctest.NewBrowser()
	final, status, body, err := b.Get(context.Background(), s.URL+"/auth/oidc/start?next=/access")
	if err != nil {
		t.Fatal(err)
	}
	return final, status, body, b
}

func refusals(t *testing.T, s *server) int {
	n := 0
	for _, ev := range s.auditEvents(t) {
		if ev.Action == "signin.refused" {
			n++
		}
	}
	return n
}

// TestSSORefusals: ID tokens with the wrong audience, expired, with another
// nonce or an unverified email, and a replayed callback are each refused with
// a clear message and an audit event, and start no session; an unreachable
// issuer stops start-up naming it.
func TestSSORefusals(t *testing.T) {
	parallel(t, costLight)
	op := oidctest.Start(t)
	op.SetUser(oidctest.User{Email: "dan@example.com", EmailVerified: true, Groups: []string{"engineers"}})
	op.SetUser(oidctest.User{Email: "eve@example.com", EmailVerified: false, Groups: []string{"sre"}})
	s := ssoServer(t, op, "10m", "")

	// A good sign-in first: it works, and its callback URL is replayed below.
	final, status, body, _ := ssoWebSignIn(t, s, op, "dan@example.com")
	if status != http.StatusOK || final.Path != "/auth/oidc/callback" || !strings.Contains(body, "/access") {
		t.Fatalf("sign-in ended on %s (%d):\n%s", final, status, body)
	}
	cases := []struct {
		name   string
		email  string
		tamper func(*oidctest.Claims)
		want   string
	}{
		{"wrong audience", "dan@example.com", func(c *oidctest.Claims) { c.Audience = []string{"someone-else"} }, "audience"},
		{"expired", "dan@example.com", func(c *oidctest.Claims) { c.Expiry = time.Now().Add(-time.Hour) }, "expired"},
		{"other nonce", "dan@example.com", func(c *oidctest.Claims) { c.Nonce = "not-the-nonce" }, "nonce"},
		{"email not verified", "eve@example.com", nil, "verified"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := refusals(t, s)
			if c.tamper != nil {
				op.Tamper(c.tamper)
			}
			_, status, body, b := ssoWebSignIn(t, s, op, c.email)
			if status != http.StatusUnauthorized || !strings.Contains(body, "Sign-in refused") || !strings.Contains(strings.ToLower(body), c.want) {
				t.Fatalf("status %d, want 401 naming %q:\n%s", status, c.want, body)
			}
			if got := refusals(t, s); got != before+1 {
				t.Fatalf("signin.refused events %d -> %d, want one more", before, got)
			}
			if st, _, _, _ := b.Get(context.Background(), s.URL+"/access"); st == nil || st.Path != "/signin" {
				t.Fatalf("after a refused sign-in /access went to %s, want the sign-in page", st)
			}
		})
	}
	t.Run("replayed callback", func(t *testing.T) {
		before := refusals(t, s)
		_, status, body, err := oidctest.NewBrowser().Get(context.Background(), final.String())
		if err != nil || status != http.StatusUnauthorized || !strings.Contains(body, "already used") {
			t.Fatalf("replayed callback: %d %v\n%s", status, err, body)
		}
		if got := refusals(t, s); got != before+1 {
			t.Fatalf("signin.refused events %d -> %d, want one more", before, got)
		}
	})
	// Nothing half-made: the only SSO session is dan's good one.
	var sessions []map[string]any
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "sessions", "--all", "-o", "json")), &sessions); err != nil {
		t.Fatal(err)
	}
	for _, ss := range sessions {
		if ss["user"] == "eve@example.com" {
			t.Errorf("a session exists for eve: %v", ss)
		}
	}

	t.Run("unreachable issuer", func(t *testing.T) {
		dead := oidctest.Start(t)
		issuer := dead.Issuer()
		dead.Close()
		dir := t.TempDir()
		policyPath := filepath.Join(dir, "policy.yaml")
		os.WriteFile(policyPath, []byte(fmt.Sprintf(`
server: {public_url: "http://127.0.0.1:1"}
identity: {oidc: {issuer: %s, client_id: ajar, client_secret_env: AJAR_OIDC_CLIENT_SECRET}}
users: [{id: admin@example.com, groups: [secops]}]
admins: [group:secops]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies: [{name: p, targets: [t], requesters: [group:secops], default_duration: 30m, max_duration: 1h, approval: {auto_approve: "true"}}]
`, issuer)), 0o600)
		cmd := exec.Command(bin, "serve", "--config", policyPath, "--data", dir, "--listen", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "AJAR_MASTER_KEY="+randomMasterKey(), "AJAR_OIDC_CLIENT_SECRET=x")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), issuer) {
			t.Fatalf("serve with an unreachable issuer: %v\n%s", err, out)
		}
	})
}

// TestSSOOrphanedGrants: someone taken out of the group that let them request
// keeps what they were granted, but it is listed by "ajar requests
// --orphaned" within identity.refresh even while they do not use ajar; with
// identity.revoke_on_loss the system ends it, audited.
func TestSSOOrphanedGrants(t *testing.T) {
	parallel(t, costLong)
	for _, revokeOnLoss := range []bool{false, true} {
		t.Run(fmt.Sprintf("revoke_on_loss=%v", revokeOnLoss), func(t *testing.T) {
			op := oidctest.Start(t)
			op.SetUser(oidctest.User{Email: "alice@example.com", EmailVerified: true, Groups: []string{"engineers"}})
			op.SetUser(oidctest.User{Email: "bob@example.com", EmailVerified: true, Groups: []string{"sre"}})
			extra := ""
			if revokeOnLoss {
				extra = "  revoke_on_loss: true"
			}
			s := ssoServer(t, op, "2s", extra)
			alice, bob := newCLIUser(t, s), newCLIUser(t, s)
			alice.login(t, op, "alice@example.com")
			bob.login(t, op, "bob@example.com")
			var r ajar.Request
			if err := json.Unmarshal([]byte(alice.ok(t, "request", "counted", "--reason", "deploy", "-o", "json")), &r); err != nil {
				t.Fatal(err)
			}
			bob.ok(t, "approve", r.ID)
			s.waitState(t, "admin", r.ID, ajar.StateActive, time.Minute)
			if out := s.ok(t, "admin", "requests", "--orphaned", "-o", "json"); strings.Contains(out, r.ID) {
				t.Fatalf("orphaned before anything changed:\n%s", out)
			}
			if r := bob.run(t, "requests", "--orphaned"); r.Code == 0 {
				t.Fatalf("a non-admin lists orphaned grants: %+v", r)
			}

			// Alice leaves engineers at the IdP and does not touch ajar again.
			op.SetUser(oidctest.User{Email: "alice@example.com", EmailVerified: true, Groups: []string{"marketing"}})
			deadline := time.Now().Add(2 * time.Minute)
			if !revokeOnLoss {
				for {
					var orphans []struct {
						Request ajar.Request `json:"request"`
						Why     string       `json:"why"`
					}
					if err := json.Unmarshal([]byte(s.ok(t, "admin", "requests", "--orphaned", "-o", "json")), &orphans); err != nil {
						t.Fatal(err)
					}
					if len(orphans) == 1 && orphans[0].Request.ID == r.ID && strings.Contains(orphans[0].Why, "alice@example.com") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("not listed as orphaned: %+v", orphans)
					}
					time.Sleep(200 * time.Millisecond)
				}
				if st := s.request(t, "admin", "show", r.ID).State; st != ajar.StateActive {
					t.Fatalf("without revoke_on_loss the grant is %s, want active (never ended silently)", st)
				}
				return
			}
			s.waitState(t, "admin", r.ID, ajar.StateRevoked, 2*time.Minute)
			found := false
			for _, ev := range s.auditEvents(t) {
				if ev.Action == "request.revoking" && ev.Subject == r.ID && ev.Actor == ajar.ActorSystem &&
					strings.Contains(string(ev.Details), "requester_lost_access") {
					found = true
				}
			}
			if !found {
				t.Fatal("no request.revoking by the system with reason requester_lost_access")
			}
		})
	}
}
