package web_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/identity/login"
	"github.com/ajar-dev/ajar/internal/oidctest"
)

// TestBrowserSSOSignIn signs in with single sign-on in Chromium against a
// real OP: the sign-in page's "Sign in with SSO" goes straight to the IdP and
// back to the page asked for, signed in as the OP's user with the groups of
// its claims, through which she approves a request.
func TestBrowserSSOSignIn(t *testing.T) {
	s, op := startSSO(t)
	req := s.request(t, "alice", "demo-ssh", "deploy the fix")
	page := "/requests/" + req.ID

	tb := s.newTab(t, true)
	nav := tb.recordNavigations()
	tb.open(page)
	tb.waitPath("/signin?next=" + url.QueryEscape(page))
	if got := tb.text(`a[href^="/auth/oidc/start"]`); got != "Sign in with SSO" {
		t.Fatalf("sign-in page: SSO link %q; page:\n%s", got, tb.text("main"))
	}
	nav.take()
	tb.do(chromedp.Click(chromedp.CSS(`a[href^="/auth/oidc/start"]`), chromedp.NodeVisible))
	tb.waitPath(page)

	// Straight to the IdP: the start answers with a redirect to the OP, the
	// OP's redirect comes back to the callback.
	hops := nav.take()
	if len(hops) < 2 || !strings.Contains(hops[0].URL, "/auth/oidc/start?next=") || hops[0].Status != 302 ||
		!strings.HasPrefix(hops[1].URL, op.Issuer()+"/") {
		t.Fatalf("the SSO link did not go straight to the IdP: %+v", hops)
	}
	if !hasHop(hops, s.URL+"/auth/oidc/callback?") {
		t.Fatalf("no callback in %+v", hops)
	}
	if got := tb.text(".me"); got != carol {
		t.Fatalf("signed in as %q, want %s", got, carol)
	}
	if ar := op.AuthRequests(); len(ar) != 1 || ar[0].CodeChallengeMethod != "S256" || ar[0].Nonce == "" || ar[0].RedirectURI != s.URL+"/auth/oidc/callback" {
		t.Fatalf("authorization requests: %+v", ar)
	}
	signins := s.audit(t, "signin")
	if len(signins) == 0 || signins[len(signins)-1].Subject != carol {
		t.Fatalf("signin audit events: %+v", signins)
	}

	// sre, from the groups claim, makes carol an approver.
	tb.fill("#approve-"+req.ID, "ok from SSO")
	if status := tb.submit(fmt.Sprintf(`form[action="/requests/%s/approve"] button[type="submit"]`, req.ID)); status != 200 {
		t.Fatalf("approve: status %d; page:\n%s", status, tb.text("main"))
	}
	if got := tb.text(".flash"); !strings.Contains(got, "You approved "+req.ID) {
		t.Errorf("after approving: %q", got)
	}
	s.waitState(t, req.ID, ajar.StateActive)
}

// TestBrowserSSONext: next is honoured for a local path only.
func TestBrowserSSONext(t *testing.T) {
	s, _ := startSSO(t)
	for _, c := range []struct {
		next, want string
		js         bool
	}{
		{"/inbox", "/inbox", true},
		{"/audit?request=x", "/audit?request=x", false}, // the bounce back works without script
		{"https://evil.example/x", "/access", true},
		{"//evil.example/x", "/access", true},
		{"/\\evil.example", "/access", true},
	} {
		tb := s.newTab(t, c.js)
		tb.open("/auth/oidc/start?next=" + url.QueryEscape(c.next))
		tb.waitPath(c.want)
		if got := tb.text(".me"); got != carol {
			t.Errorf("next %q: signed in as %q", c.next, got)
		}
	}
}

// TestBrowserSSORefused: a replayed callback URL, an ID token for another
// audience, expired or with another nonce, an email the IdP has not
// verified, and a callback begun in another browser are each refused with
// "Sign-in refused" and the reason, audited, and leave no session.
func TestBrowserSSORefused(t *testing.T) {
	s, op := startSSO(t)

	// A good sign-in, whose callback URL is then replayed.
	good := s.newTab(t, true)
	nav := good.recordNavigations()
	good.open("/auth/oidc/start?next=/inbox")
	good.waitPath("/inbox")
	var callback string
	for _, h := range nav.take() {
		if strings.HasPrefix(h.URL, s.URL+"/auth/oidc/callback?") {
			callback = h.URL
		}
	}
	if callback == "" {
		t.Fatal("no callback URL seen")
	}
	refusedBefore := len(s.audit(t, "signin.refused"))
	sessionsBefore := len(s.audit(t, "signin"))

	for _, who := range []string{"same browser, signed out", "another browser"} {
		tb := good
		if who == "another browser" {
			tb = s.newTab(t, true)
		} else {
			tb.submit(`form[action="/signout"] button[type="submit"]`)
			if c := tb.cookie("ajar_session"); c != "" {
				t.Fatal("signed out but the session cookie is still there")
			}
		}
		tb.do(chromedp.Navigate(callback))
		if got := tb.text("h1"); got != "Sign-in refused" {
			t.Errorf("%s: replayed callback shows %q:\n%s", who, got, tb.text("main"))
		}
		if got := tb.text("main"); !strings.Contains(got, "already used or has expired") {
			t.Errorf("%s: refusal says %q", who, got)
		}
		if c := tb.cookie("ajar_session"); c != "" {
			t.Errorf("%s: a replayed callback set a session cookie", who)
		}
	}
	refused := s.audit(t, "signin.refused")
	if len(refused) != refusedBefore+2 {
		t.Fatalf("%d signin.refused events after two replays, want %d", len(refused), refusedBefore+2)
	}
	if r := detail(t, refused[len(refused)-1], "reason"); !strings.Contains(r, "used or expired state") {
		t.Errorf("refusal reason %q", r)
	}

	// Bad answers from the IdP: each refused, clearly, audited, no session.
	for i, c := range []struct {
		name, says string
		spoil      func()
	}{
		{"another audience", "another client (audience)", func() {
			op.Tamper(func(c *oidctest.Claims) { c.Audience = []string{"someone-else"} })
		}},
		{"expired", "the ID token expired", func() {
			op.Tamper(func(c *oidctest.Claims) { c.Expiry = time.Now().Add(-time.Hour) })
		}},
		{"another nonce", "nonce does not match", func() {
			op.Tamper(func(c *oidctest.Claims) { c.Nonce = "another-nonce" })
		}},
		{"email not verified", "is not verified", func() {
			op.SetUser(oidctest.User{Email: carol, EmailVerified: false, Groups: []string{"sre"}})
		}},
	} {
		c.spoil()
		tb := s.newTab(t, true)
		tb.open("/signin")
		tb.do(chromedp.Click(chromedp.CSS(`a[href^="/auth/oidc/start"]`), chromedp.NodeVisible))
		tb.waitPath("/auth/oidc/callback")
		if got := tb.text("h1"); got != "Sign-in refused" {
			t.Errorf("%s: the callback shows %q:\n%s", c.name, got, tb.text("main"))
		}
		if got := tb.text("main"); !strings.Contains(got, c.says) {
			t.Errorf("%s: refusal says %q, want %q", c.name, got, c.says)
		}
		if c := tb.cookie("ajar_session"); c != "" {
			t.Errorf("%s: a session cookie was set", c)
		}
		refused = s.audit(t, "signin.refused")
		if len(refused) != refusedBefore+3+i || !strings.Contains(detail(t, refused[len(refused)-1], "reason"), c.says) {
			t.Errorf("%s: %d signin.refused events, last %s", c.name, len(refused), refused[len(refused)-1].Details)
		}
	}
	// A sign-in begun by someone else (login CSRF: the attacker's own
	// callback URL, opened by a victim's browser) is refused there.
	attacker := newClient(t, s.URL)
	start := attacker.get("/auth/oidc/start?next=/inbox")
	theirs, err := op.Browse(start.Header.Get("Location"))
	if start.Status != 302 || err != nil || !strings.HasPrefix(theirs.String(), s.URL+"/auth/oidc/callback?") {
		t.Fatalf("the attacker's sign-in: %d %v %v", start.Status, theirs, err)
	}
	victim := s.newTab(t, true)
	victim.do(chromedp.Navigate(theirs.String()))
	if got := victim.text("main"); !strings.Contains(got, "Sign-in refused") || !strings.Contains(got, "started in another browser") {
		t.Errorf("another browser's callback: %q", got)
	}
	if c := victim.cookie("ajar_session"); c != "" {
		t.Error("another browser's callback set a session cookie")
	}
	refused = s.audit(t, "signin.refused")
	if len(refused) != refusedBefore+7 || !strings.Contains(detail(t, refused[len(refused)-1], "reason"), "another browser") {
		t.Errorf("signin.refused after another browser's callback: %d events, last %s", len(refused), refused[len(refused)-1].Details)
	}
	if n := len(s.audit(t, "signin")); n != sessionsBefore {
		t.Errorf("%d sign-ins after the refusals, want %d", n, sessionsBefore)
	}
}

// TestBrowserDeviceLogin: "ajar login --headless" through the device page.
// The code link shows the form with the code; a wrong code is shown at its
// field; the right one goes to the IdP and ends on /auth/device/done, and the
// CLI's poll then yields a session of the OP's user.
func TestBrowserDeviceLogin(t *testing.T) {
	s, op := startSSO(t)
	ctx := context.Background()
	cli := api.NewClient(s.URL, "")
	dev, err := cli.StartDevice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dev.VerificationURIComplete != s.URL+"/auth/device?code="+dev.UserCode {
		t.Fatalf("device login: %+v", dev)
	}
	if p, err := cli.PollDevice(ctx, dev.DeviceCode); err != nil || p.Status != "pending" || p.Token != nil {
		t.Fatalf("poll before approval: %+v, %v", p, err)
	}

	tb := s.newTab(t, true)
	nav := tb.recordNavigations()
	tb.do(chromedp.Navigate(dev.VerificationURIComplete))
	if got := eval[string](tb, `document.querySelector("#code").value`); got != dev.UserCode {
		t.Fatalf("the code field holds %q, want %s", got, dev.UserCode)
	}
	// A code nobody is waiting for.
	tb.fill("#code", "BCDF-GHJK")
	if status := tb.submit(`form[action="/auth/device"] button[type="submit"]`); status != 400 {
		t.Fatalf("an unknown code: status %d", status)
	}
	if got := tb.text("#code-error"); !strings.Contains(got, "no login is waiting for this code") {
		t.Errorf("an unknown code: %q", got)
	}
	if len(op.AuthRequests()) != 0 {
		t.Fatal("an unknown code went to the IdP")
	}
	tb.fill("#code", strings.ToLower(dev.UserCode))
	nav.take()
	tb.do(chromedp.Click(chromedp.CSS(`form[action="/auth/device"] button[type="submit"]`), chromedp.NodeVisible))
	tb.waitPath("/auth/device/done")
	if hops := nav.take(); len(hops) < 2 || !strings.HasSuffix(hops[0].URL, "/auth/device") || hops[0].Status != 303 ||
		!strings.HasPrefix(hops[1].URL, op.Issuer()+"/") {
		t.Errorf("the device form did not go straight to the IdP: %+v", hops)
	}
	if got := tb.text("main"); !strings.Contains(got, "go back to your terminal") {
		t.Errorf("device done page: %q", got)
	}
	if c := tb.cookie("ajar_session"); c != "" {
		t.Error("the device login signed the browser in")
	}

	p, err := cli.PollDevice(ctx, dev.DeviceCode)
	if err != nil || p.Status != "approved" || p.Token == nil || p.Token.User != carol {
		t.Fatalf("poll after approval: %+v, %v", p, err)
	}
	me, err := api.NewClient(s.URL, p.Token.Token).WhoAmI(ctx)
	if err != nil || me.ID != carol || !slices.Contains(me.Groups, "sre") {
		t.Fatalf("whoami with the device session: %+v, %v", me, err)
	}
	// One code, one session.
	if _, err := cli.PollDevice(ctx, dev.DeviceCode); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Errorf("second poll: %v, want EUNAUTH", err)
	}
}

// TestBrowserCLILogin: the web side of "ajar login" in Chromium. The sign-in
// URL goes to the IdP and back to the CLI's loopback listener with a
// one-time code, which only the CLI's PKCE verifier redeems.
func TestBrowserCLILogin(t *testing.T) {
	s, _ := startSSO(t)
	got := make(chan url.Values, 1)
	cliSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/callback" {
			select {
			case got <- r.URL.Query():
			default:
			}
		}
		io.WriteString(w, "<!doctype html><title>ajar login</title><p>You can close this page.</p>")
	}))
	defer cliSrv.Close()
	port := cliSrv.Listener.Addr().(*net.TCPAddr).Port
	verifier := login.NewVerifier()
	state := "cli-state-0123456789"

	tb := s.newTab(t, true)
	tb.do(chromedp.Navigate(fmt.Sprintf("%s/auth/oidc/start?cli_port=%d&cli_challenge=%s&cli_state=%s", s.URL, port, login.Challenge(verifier), state)))
	var q url.Values
	select {
	case q = <-got:
	case <-time.After(60 * time.Second):
		t.Fatalf("the CLI's listener got no callback; the tab shows %q", tb.text("body"))
	}
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("CLI callback: %v", q)
	}
	if c := tb.cookie("ajar_session"); c != "" {
		t.Error("ajar login signed the browser in")
	}
	cli := api.NewClient(s.URL, "")
	if _, err := cli.CLIToken(context.Background(), q.Get("code"), login.NewVerifier()); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("the code with another verifier: %v, want EUNAUTH", err)
	}
	// The code went with that wrong try: one use.
	if _, err := cli.CLIToken(context.Background(), q.Get("code"), verifier); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Fatalf("the code after a wrong verifier: %v, want EUNAUTH", err)
	}

	// Again, redeemed right.
	tb.do(chromedp.Navigate(fmt.Sprintf("%s/auth/oidc/start?cli_port=%d&cli_challenge=%s&cli_state=%s", s.URL, port, login.Challenge(verifier), state)))
	select {
	case q = <-got:
	case <-time.After(60 * time.Second):
		t.Fatalf("the CLI's listener got no second callback; the tab shows %q", tb.text("body"))
	}
	tok, err := cli.CLIToken(context.Background(), q.Get("code"), verifier)
	if err != nil || tok.User != carol {
		t.Fatalf("CLI token: %+v, %v", tok, err)
	}
	me, err := api.NewClient(s.URL, tok.Token).WhoAmI(context.Background())
	if err != nil || me.ID != carol || !slices.Contains(me.Groups, "sre") {
		t.Fatalf("whoami with the CLI session: %+v, %v", me, err)
	}
}

// TestBrowserSSOEndsPreviousSession: signing in with SSO in a browser that
// was signed in (here with alice's token) ends that session, though the
// navigation back from the IdP's sign-in page is cross-site and does not
// carry its SameSite=Strict cookie.
func TestBrowserSSOEndsPreviousSession(t *testing.T) {
	s, op := startSSO(t)
	// The person signs in on the IdP's own page, as with a real IdP: the
	// navigation back to ajar starts there, on another site.
	op.LoginAs("")
	tb := s.newTab(t, true)
	tb.open("/signin")
	tb.signIn(s.tokens["alice"])
	if got := tb.text(".me"); got != "alice@example.com" {
		t.Fatalf("signed in as %q", got)
	}
	old := tb.cookie("ajar_session")
	tb.open("/auth/oidc/start?next=/inbox")
	tb.waitFor(`document.querySelector("#email")`)
	tb.fill("#email", carol)
	tb.do(chromedp.Click(chromedp.CSS("#signin"), chromedp.NodeVisible))
	tb.waitPath("/inbox")
	if got := tb.text(".me"); got != carol {
		t.Fatalf("after SSO signed in as %q", got)
	}
	if _, err := s.IDs.Authenticate(context.Background(), old); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Errorf("the browser's previous session still works after the SSO sign-in: %v", err)
	}
	ended := s.audit(t, "session.ended")
	if len(ended) != 1 || ended[0].Subject != "alice@example.com" || ended[0].Actor != "alice@example.com" || detail(t, ended[0], "reason") != "logout" {
		t.Errorf("session.ended events: %+v", ended)
	}
}
