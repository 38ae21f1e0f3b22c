package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/internal/oidctest"
)

// addAuthenticator gives the tab a virtual security key (the DevTools WebAuthn
// domain): CTAP2 over USB, with user verification, that answers at once.
func (tb *tab) addAuthenticator() webauthn.AuthenticatorID {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		tb.t.Fatal(err)
	}
	res, err := chromedp.Call(tb.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportUsb, HasUserVerification: true, IsUserVerified: true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		tb.t.Fatal(err)
	}
	return res.AuthenticatorID
}

// ssoSignIn signs the tab in with single sign-on, as the OP's LoginAs user,
// and waits for the page at next.
func (tb *tab) ssoSignIn(next string) {
	tb.t.Helper()
	tb.open("/auth/oidc/start?next=" + next)
	tb.waitPath(next)
}

// apiApprove approves a request through the HTTP API with a bearer token, as
// "ajar approve" does, and returns the status and body.
func (s *server) apiApprove(t testing.TB, token, id string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL+"/v1/requests/"+id+"/approve", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBrowserSecurityKey registers a security key in Chromium with a virtual
// authenticator and approves, with it, a step that requires MFA; before that,
// and from the CLI, the approval is refused.
func TestBrowserSecurityKey(t *testing.T) {
	s, _ := startSSO(t)
	req := s.request(t, "alice", "prod-ssh", "hotfix in prod")
	page := "/requests/" + req.ID
	approveForm := fmt.Sprintf(`form[action="/requests/%s/approve"]`, req.ID)
	verify := "#mfa-" + req.ID

	tb := s.newTab(t, true)
	tb.ssoSignIn(page)

	// Signed in with a password only: the page offers the second factor, not
	// Approve.
	if got := tb.text(verify); got != "Verify with a security key" {
		t.Fatalf("the request page offers %q; page:\n%s", got, tb.text("main"))
	}
	if n := eval[int](tb, `document.querySelectorAll('`+approveForm+`').length`); n != 0 {
		t.Fatal("an Approve form before the second factor")
	}
	// Posting the approval anyway, with a valid CSRF token, is refused.
	status := eval[int](tb, fmt.Sprintf(`fetch("/requests/%s/approve", {method: "POST", body: new URLSearchParams({
		csrf: document.querySelector("input[name=csrf]").value})}).then(r => r.status)`, req.ID), chromedp.EvalAwaitPromise)
	if status != 403 {
		t.Errorf("approving without a second factor in the page: status %d, want 403", status)
	}
	// So is the CLI, with the URL of the page where it can be done.
	cliToken, _, err := s.IDs.CreateToken(context.Background(), ajar.User{}, carol, "cli", 0)
	if err != nil {
		t.Fatal(err)
	}
	code, body := s.apiApprove(t, cliToken, req.ID)
	if code != http.StatusForbidden || !strings.Contains(body, s.URL+page) || !strings.Contains(body, "second factor") {
		t.Fatalf("CLI approval without a second factor: %d %s", code, body)
	}
	// With no key registered, Verify says so.
	tb.do(chromedp.Click(chromedp.CSS(verify), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector("#mfa-status-` + req.ID + `.error")`)
	if got := tb.text("#mfa-status-" + req.ID); !strings.Contains(got, "no security key registered") {
		t.Errorf("Verify with no key: %q", got)
	}

	// Register a key on the Security keys page.
	tb.addAuthenticator()
	tb.open("/keys")
	if got := tb.text("#no-keys"); got == "" {
		t.Errorf("keys page before registering: %q", tb.text("main"))
	}
	tb.fill("#key-name", "Test key")
	tb.do(chromedp.Click(chromedp.CSS("#add-key"), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector("table.list")`)
	if got := tb.text("table.list tbody"); !strings.Contains(got, "Test key") {
		t.Fatalf("keys page after registering: %q", tb.text("main"))
	}
	if added := s.audit(t, "mfa.key_added"); len(added) != 1 || added[0].Actor != carol || detail(t, added[0], "name") != "Test key" {
		t.Fatalf("mfa.key_added events: %+v", added)
	}
	// A second key needs a second factor first: whoever holds the session
	// alone cannot swap in a key of their own.
	tb.fill("#key-name", "Thief's key")
	tb.do(chromedp.Click(chromedp.CSS("#add-key"), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector("#key-status.error")`)
	if got := tb.text("#key-status"); !strings.Contains(got, "first verify with one of your security keys") {
		t.Errorf("adding a second key without a second factor: %q", got)
	}
	if tb.text("#verify-key") != "Verify with a security key" {
		t.Errorf("the keys page offers no Verify: %q", tb.text("main"))
	}
	if added := s.audit(t, "mfa.key_added"); len(added) != 1 {
		t.Fatalf("a second key was added without a second factor: %+v", added)
	}

	// Verify with it: the page offers Approve.
	tb.open(page)
	tb.do(chromedp.Click(chromedp.CSS(verify), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector('` + approveForm + `')`)
	if n := len(s.audit(t, "session.mfa")); n != 1 {
		t.Errorf("%d session.mfa events, want 1", n)
	}
	// A second factor counts for 5 minutes: after that, verify again (the
	// key's second assertion, with its counter moved on).
	s.Clock.Advance(6 * time.Minute)
	tb.open(page)
	if n := eval[int](tb, `document.querySelectorAll('`+approveForm+`').length`); n != 0 || tb.text(verify) == "" {
		t.Fatalf("6 minutes after verifying the page still offers Approve:\n%s", tb.text("main"))
	}
	tb.do(chromedp.Click(chromedp.CSS(verify), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector('` + approveForm + `')`)
	if n := len(s.audit(t, "session.mfa")); n != 2 {
		t.Errorf("%d session.mfa events, want 2", n)
	}
	// The CLI's session made no second factor: still refused.
	if code, body := s.apiApprove(t, cliToken, req.ID); code != http.StatusForbidden {
		t.Errorf("CLI approval after the web session's step-up: %d %s", code, body)
	}
	if status := tb.submit(approveForm + ` button[type="submit"]`); status != 200 {
		t.Fatalf("approve after verifying: status %d; page:\n%s", status, tb.text("main"))
	}
	if got := tb.text(".flash"); !strings.Contains(got, "You approved "+req.ID) {
		t.Errorf("after approving: %q", got)
	}
	s.waitState(t, req.ID, ajar.StateActive)

	// The key is listed as used; removing it is audited, and it verifies
	// nothing after.
	tb.open("/keys")
	if got := tb.text("table.list tbody"); strings.Contains(got, "never") {
		t.Errorf("the key's last use is not shown: %q", got)
	}
	if status := tb.submit(`form[action^="/keys/"][action$="/remove"] button[type="submit"]`); status != 200 {
		t.Fatalf("remove the key: status %d", status)
	}
	if got := tb.text(".flash"); got != "The key was removed." || tb.text("#no-keys") == "" {
		t.Errorf("after removing the key: %q", tb.text("main"))
	}
	if removed := s.audit(t, "mfa.key_removed"); len(removed) != 1 || removed[0].Actor != carol {
		t.Errorf("mfa.key_removed events: %+v", removed)
	}
	other := s.request(t, "alice", "prod-ssh", "second hotfix")
	s.Clock.Advance(6 * time.Minute)
	tb.open("/requests/" + other.ID)
	tb.do(chromedp.Click(chromedp.CSS("#mfa-"+other.ID), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector("#mfa-status-` + other.ID + `.error")`)
	if got := tb.text("#mfa-status-" + other.ID); !strings.Contains(got, "no security key registered") {
		t.Errorf("Verify after removing the key: %q", got)
	}
}

// TestBrowserSSOStepUp: "Sign in again with SSO" is a second factor when the
// IdP's amr names one, and is refused, with a clear message, when it does not.
func TestBrowserSSOStepUp(t *testing.T) {
	s, op := startSSO(t)
	req := s.request(t, "alice", "prod-ssh", "hotfix in prod")
	page := "/requests/" + req.ID
	approveForm := fmt.Sprintf(`form[action="/requests/%s/approve"]`, req.ID)
	again := `a[href^="/auth/oidc/start?mfa=1"]`

	tb := s.newTab(t, true)
	tb.ssoSignIn(page)
	if got := tb.text(again); got != "Sign in again with SSO" {
		t.Fatalf("the request page offers %q; page:\n%s", got, tb.text("main"))
	}

	// A password again is no second factor.
	tb.do(chromedp.Click(chromedp.CSS(again), chromedp.NodeVisible))
	tb.waitPath("/auth/oidc/callback")
	if got := tb.text("h1"); got != "Sign-in refused" {
		t.Errorf("step-up with amr [pwd] shows %q", got)
	}
	if got := tb.text("main"); !strings.Contains(got, "did not report a second factor") {
		t.Errorf("step-up with amr [pwd]: %q", got)
	}
	if ar := op.AuthRequests(); ar[len(ar)-1].MaxAge == nil || *ar[len(ar)-1].MaxAge != 0 {
		t.Errorf("the step-up did not ask the IdP for a fresh sign-in (max_age=0): %+v", ar[len(ar)-1])
	}
	refused := s.audit(t, "signin.refused")
	if len(refused) != 1 || !strings.Contains(detail(t, refused[0], "reason"), "no second factor") {
		t.Errorf("signin.refused events: %+v", refused)
	}
	tb.open(page)
	if n := eval[int](tb, `document.querySelectorAll('`+approveForm+`').length`); n != 0 || tb.text(".me") != carol {
		t.Fatalf("after a refused step-up: %q", tb.text("main"))
	}

	// With a hardware key at the IdP it is. (The person confirms on the
	// IdP's own page this time: the way back is a cross-site navigation.)
	op.SetUser(oidctest.User{Email: carol, EmailVerified: true, Groups: []string{"sre"}, AMR: []string{"pwd", "hwk"}})
	op.LoginAs("")
	tb.do(chromedp.Click(chromedp.CSS(again), chromedp.NodeVisible))
	tb.waitFor(`document.querySelector("#email")`)
	tb.fill("#email", carol)
	tb.do(chromedp.Click(chromedp.CSS("#signin"), chromedp.NodeVisible))
	tb.waitPath(page)
	tb.waitFor(`document.querySelector('` + approveForm + `')`)
	if n := len(s.audit(t, "session.mfa")); n != 1 {
		t.Errorf("%d session.mfa events, want 1", n)
	}
	if status := tb.submit(approveForm + ` button[type="submit"]`); status != 200 {
		t.Fatalf("approve after the step-up: status %d; page:\n%s", status, tb.text("main"))
	}
	s.waitState(t, req.ID, ajar.StateActive)
}

// TestBrowserSSOScreenshots takes screenshots of the single sign-on and
// security key pages at desktop and phone widths, with axe-core on each (no
// serious or critical violation, every field labelled).
func TestBrowserSSOScreenshots(t *testing.T) {
	s, _ := startSSO(t)
	req := s.request(t, "alice", "prod-ssh", "hotfix in prod")

	out := s.newTab(t, true)
	out.open("/signin")
	out.capture("signin-sso")
	dev, err := api.NewClient(s.URL, "").StartDevice(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out.do(chromedp.Navigate(dev.VerificationURIComplete))
	out.capture("device")
	out.fill("#code", "BCDF-GHJK")
	out.submit(`form[action="/auth/device"] button[type="submit"]`)
	out.capture("device-error")
	out.open("/auth/device/done")
	out.capture("device-done")
	out.open("/auth/oidc/callback?state=replayed&code=x")
	if got := out.text("h1"); got != "Sign-in refused" {
		t.Fatalf("callback without a flow: %q", got)
	}
	out.capture("signin-refused")

	carolTab := s.newTab(t, true)
	carolTab.ssoSignIn("/keys")
	carolTab.capture("keys-empty")
	carolTab.open("/requests/" + req.ID)
	carolTab.capture("request-needs-mfa")
	carolTab.addAuthenticator()
	carolTab.open("/keys")
	carolTab.do(chromedp.Click(chromedp.CSS("#add-key"), chromedp.NodeVisible))
	carolTab.waitFor(`document.querySelector("table.list")`)
	carolTab.capture("keys")
	// Text for screen readers only is not shown; inputs get the form style.
	if shown := eval[[]string](carolTab, `Array.from(document.querySelectorAll(".sr-only"))
		.filter(e => e.getBoundingClientRect().width > 1).map(e => e.outerHTML)`); len(shown) != 0 {
		t.Errorf("screen-reader-only text is visible: %v", shown)
	}
	if w := eval[float64](carolTab, `document.querySelector("#key-name").getBoundingClientRect().width`); w < 300 {
		t.Errorf("the key name input is %vpx wide: unstyled", w)
	}
}
