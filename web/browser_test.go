package web_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ajar-dev/ajar"
)

// The browser tests drive headless Chromium (Debian's chromium) with chromedp:
// one browser for the whole package, started by the first test that needs it,
// and a tab in its own browser context (its own cookies) for each user.
//
// Accessibility is checked with axe-core from the npm registry, which
// scripts/test installs into .cache/axe. Both are required under CI=true; a
// local run without them skips these tests and says what to install.

// screenshotDir is where the screenshots go (the README names it).
var screenshotDir = filepath.Join("..", "test-artifacts", "screenshots")

var browser struct {
	once sync.Once
	ctx  context.Context
	err  error
	stop func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.stop != nil {
		browser.stop()
	}
	os.Exit(code)
}

// missing fails the test: a missing component is a failure, never a skip
// (scripts/test installs Chromium and axe-core).
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s; scripts/test installs it", fmt.Sprintf(format, args...))
}

// chromiumPath finds the browser: $AJAR_CHROMIUM, else Debian's chromium.
func chromiumPath() (string, error) {
	if p := os.Getenv("AJAR_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on this machine (apt-get install chromium)")
}

// needBrowser returns the browser's context, starting it on first use.
func needBrowser(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		exe, err := chromiumPath()
		if err != nil {
			browser.err = err
			return
		}
		dir, err := os.MkdirTemp("", "ajar-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		// Headless, and quiet on this machine's closed network: no background
		// connections, component updates or sync.
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(exe),
			chromedp.UserDataDir(dir),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-quic", true),
			chromedp.WindowSize(1280, 800),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		browser.stop = func() { bcancel(); acancel(); os.RemoveAll(dir) }
		if err := chromedp.Do(bctx); err != nil {
			browser.err = fmt.Errorf("start %s: %w", exe, err)
			return
		}
		browser.ctx = bctx
	})
	if browser.err != nil {
		missing(t, "headless Chromium is required: %v", browser.err)
	}
	return browser.ctx
}

// axeSource is axe-core's script, from $AJAR_AXE_JS or where scripts/test puts it.
var axeSource = sync.OnceValues(func() (string, error) {
	p := os.Getenv("AJAR_AXE_JS")
	if p == "" {
		p = filepath.Join("..", ".cache", "axe", "node_modules", "axe-core", "axe.min.js")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("axe-core: %w (npm install --no-save --prefix .cache/axe axe-core@4)", err)
	}
	return string(b), nil
})

// tab is one user's browser tab.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// newTab opens a tab with its own cookies. With js false the page's scripts
// do not run, as in a browser with JavaScript turned off.
func (s *server) newTab(t *testing.T, js bool) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(needBrowser(t), chromedp.WithNewBrowserContext())
	tb := &tab{t: t, ctx: ctx, base: s.URL}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m)
			tb.mu.Unlock()
		}
	}()
	if !js {
		if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// No page may break its own Content-Security-Policy, nor throw.
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, m := range tb.console {
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy") {
				t.Errorf("browser console: %s (%s:%d)", m.Text, m.URL, m.Line+1)
			}
		}
	})
	t.Cleanup(cancel)
	return tb
}

// do runs actions, failing the test on error.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression in the page (through the DevTools
// protocol, which the page's CSP does not restrict) and decodes its value.
func eval[T any](tb *tab, expr string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	v, err := tryEval[T](tb, expr, opts...)
	if err != nil {
		tb.t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

func tryEval[T any](tb *tab, expr string, opts ...chromedp.EvaluateOption) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
}

// navigating reports whether err says the page an evaluation ran in went
// away under it: a click on a link returns before the next page loads, and
// an evaluation made meanwhile fails with one of these (DevTools protocol
// error -32000).
func navigating(err error) bool {
	for _, m := range []string{"Inspected target navigated or closed", "Execution context was destroyed", "Cannot find context with specified id"} {
		if strings.Contains(err.Error(), m) {
			return true
		}
	}
	return false
}

// open loads a page and waits for it.
func (tb *tab) open(p string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.base + p))
}

// submit clicks a submit button and returns the status of the page it leads to.
func (tb *tab) submit(button string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button), chromedp.NodeVisible))
	if err != nil {
		tb.t.Fatalf("browser: submit %s: %v", button, err)
	}
	return resp.Status
}

// fill sets an input's value.
func (tb *tab) fill(sel, value string) {
	tb.t.Helper()
	tb.do(chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeVisible))
}

// text returns the visible text of the first element sel matches ("" if none).
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel))
}

// path returns the path of the page the tab shows.
func (tb *tab) path() string {
	tb.t.Helper()
	return eval[string](tb, `location.pathname`)
}

// waitUntil polls a JavaScript condition without reloading the page: what
// changes must come from the page's own script, or from a navigation under
// way (an evaluation that fails because the page went away, or that did not
// finish in time on a loaded machine, counts as not yet). (chromedp.Poll
// builds its predicate with new Function, which the pages' CSP rightly
// forbids.) It waits on the page, not for a set time: after hangGuard it
// fails, only so that a broken page stops the test with what it shows.
func (tb *tab) waitUntil(cond string) {
	tb.t.Helper()
	start := time.Now()
	for {
		ok, err := tryEval[bool](tb, "!!("+cond+")")
		switch {
		case err != nil && !navigating(err) && !(errors.Is(err, context.DeadlineExceeded) && tb.ctx.Err() == nil):
			tb.t.Fatalf("browser: evaluate %s: %v", cond, err)
		case err == nil && ok:
			return
		case time.Since(start) > hangGuard:
			where, _ := tryEval[string](tb, `location.pathname + location.search`)
			tb.t.Fatalf("browser: %s did not become true in %s; the page (%s) shows:\n%s", cond, hangGuard, where, tb.text("main"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hangGuard is how long waitUntil waits before it calls a page broken.
const hangGuard = 2 * time.Minute

// signIn signs in from the sign-in page and returns where it led.
func (tb *tab) signIn(token string) {
	tb.t.Helper()
	if !strings.HasPrefix(tb.path(), "/signin") {
		tb.open("/signin")
	}
	tb.fill("#token", token)
	if status := tb.submit(`form[action="/signin"] button[type="submit"]`); status != 200 {
		tb.t.Fatalf("sign in: status %d", status)
	}
}

// axeViolation is what the test reads of an axe-core result.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// axe runs axe-core in the page and returns its violations.
func (tb *tab) axe() []axeViolation {
	tb.t.Helper()
	src, err := axeSource()
	if err != nil {
		missing(tb.t, "%v", err)
	}
	if !eval[bool](tb, `typeof axe !== "undefined"`) {
		eval[chromedp.Void](tb, src) // Runtime.evaluate: not subject to the page's CSP
	}
	return eval[[]axeViolation](tb, `axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help,
		nodes: v.nodes.map(n => ({target: n.target, html: n.html}))})))`, chromedp.EvalAwaitPromise)
}

// checkAccessibility fails on any serious or critical axe-core violation (and
// logs the others), and on any form field without a <label>.
func (tb *tab) checkAccessibility(name string) {
	tb.t.Helper()
	for _, v := range tb.axe() {
		report := tb.t.Logf
		if v.Impact == "serious" || v.Impact == "critical" {
			report = tb.t.Errorf
		}
		for _, n := range v.Nodes {
			report("axe %s: %s (%s): %s at %v: %s", name, v.ID, v.Impact, v.Help, n.Target, n.HTML)
		}
	}
	unlabeled := eval[[]string](tb, `Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea"))
		.filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)`)
	for _, f := range unlabeled {
		tb.t.Errorf("%s: field without a label: %s", name, f)
	}
}

// TestAxeSeesViolations checks the checker: axe-core runs in our pages despite
// their CSP and reports a field without a label as critical.
func TestAxeSeesViolations(t *testing.T) {
	s := startServer(t)
	tb := s.newTab(t, true)
	tb.open("/signin")
	eval[chromedp.Void](tb, `document.querySelector("main").insertAdjacentHTML("beforeend", '<input type="text" name="nolabel">')`)
	found := false
	for _, v := range tb.axe() {
		found = found || (v.ID == "label" && v.Impact == "critical")
	}
	if !found {
		t.Error("axe-core did not report an input without a label")
	}
}

// An evaluation the page's navigation cuts short fails with the errors
// navigating knows, and waitUntil waits through them: a click on a link
// returns before the next page loads, so the first evaluations after it may
// run in a page that goes away under them (as TestBrowserFlow's did on a
// loaded machine).
func TestWaitUntilOutlastsNavigation(t *testing.T) {
	s := startServer(t)
	tb := s.newTab(t, true)
	tb.open("/signin")
	// An evaluation still running when the page is replaced.
	errc := make(chan error, 1)
	go func() {
		_, err := tryEval[bool](tb, `new Promise(() => {})`, chromedp.EvalAwaitPromise)
		errc <- err
	}()
	tb.waitUntil(`document.readyState === "complete"`)
	eval[chromedp.Void](tb, `setTimeout(() => { location.href = "/signin?next=%2Finbox" }, 0)`)
	err := <-errc
	if err == nil || !navigating(err) {
		t.Fatalf("an evaluation cut short by a navigation gave %v, which navigating does not recognize", err)
	}
	// waitUntil through navigations: from here on every page the tab loads
	// reloads itself at once, 20 times in all, while waitUntil evaluates its
	// condition every 100 ms. (The script goes in through the DevTools
	// protocol: the pages' CSP forbids inline script.)
	const hop = `(() => {
		const n = Number(sessionStorage.getItem("hops") || 0);
		if (n < 20) { sessionStorage.setItem("hops", String(n + 1)); setTimeout(() => location.reload(), 0); }
	})()`
	if _, err := chromedp.Call(tb.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: hop}); err != nil {
		t.Fatal(err)
	}
	eval[chromedp.Void](tb, `location.reload()`)
	tb.waitUntil(`sessionStorage.getItem("hops") === "20" && document.readyState === "complete"`)
}

// viewports are the widths the screenshots are taken at.
var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"desktop", 1280, 800, false},
	{"phone", 390, 844, true},
}

// capture saves a full-page screenshot of the current page at each width to
// test-artifacts/screenshots/NAME-WIDTH.png and checks its accessibility there.
func (tb *tab) capture(name string) {
	tb.t.Helper()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	for _, vp := range viewports {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
		if vp.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		tb.do(chromedp.EmulateViewport(vp.width, vp.height, opts...))
		ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			tb.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(screenshotDir, name+"-"+vp.name+".png"), png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
		tb.checkAccessibility(name + " (" + vp.name + ")")
	}
	tb.do(chromedp.EmulateViewport(1280, 800))
}

// TestBrowserFlow is the whole story in a real browser: alice requests, bob
// approves, alice watches it count down and expire, the audit log shows it,
// and alice cannot approve her own request.
func TestBrowserFlow(t *testing.T) {
	s := startServer(t)
	alice, bob, admin := s.newTab(t, true), s.newTab(t, true), s.newTab(t, true)

	// alice signs in from the home page.
	alice.open("/")
	if p := alice.path(); p != "/signin" {
		t.Fatalf("signed out, / leads to %s", p)
	}
	alice.signIn(s.tokens["alice"])
	if p := alice.path(); p != "/access" {
		t.Fatalf("after sign-in alice is on %s", p)
	}

	// bob watches his inbox.
	bob.open("/inbox")
	bob.signIn(s.tokens["bob"])
	if p := bob.path(); p != "/inbox" {
		t.Fatalf("bob landed on %s, not back on /inbox", p)
	}
	if got := bob.text("#inbox"); !strings.Contains(got, "Nothing is waiting") {
		t.Fatalf("bob's inbox: %q", got)
	}

	// alice requests access; a wrong duration is shown at its field first.
	alice.open("/request")
	alice.do(chromedp.Click(chromedp.CSS(`a[href="/request/demo-ssh"]`), chromedp.NodeVisible))
	alice.waitUntil(`document.querySelector("#f-param-source-ip")`)
	if ip := eval[string](alice, `document.querySelector("#f-param-source-ip").value`); ip != "127.0.0.1" {
		t.Errorf("source_ip prefilled with %q, want the browser's address 127.0.0.1", ip)
	}
	alice.fill("#f-duration", "2h")
	alice.fill("#f-reason", "debug the deploy")
	if status := alice.submit(`form[action="/request/demo-ssh"] button[type="submit"]`); status != 400 {
		t.Fatalf("a 2h request: status %d, want 400", status)
	}
	if got := alice.text("#f-duration-error"); !strings.Contains(got, "2h is longer than the maximum 1h") {
		t.Errorf("duration error: %q", got)
	}
	if inv := eval[string](alice, `document.querySelector("#f-duration").getAttribute("aria-invalid")`); inv != "true" {
		t.Errorf("the duration input is not marked invalid")
	}
	alice.fill("#f-duration", "30m")
	if status := alice.submit(`form[action="/request/demo-ssh"] button[type="submit"]`); status != 200 {
		t.Fatalf("request: status %d", status)
	}
	id := path.Base(alice.path())
	if !strings.HasPrefix(id, "req_") || !strings.Contains(alice.text(".flash"), "is pending") {
		t.Fatalf("after requesting alice is on %s: %q", alice.path(), alice.text("main"))
	}

	// alice cannot approve her own request in the page: no button, and why.
	alice.open("/inbox")
	card := fmt.Sprintf("#req-%s", id)
	if got := alice.text(card + " .blocked"); !strings.Contains(got, "nobody approves their own request") {
		t.Errorf("alice's own request in her inbox: %q", alice.text(card))
	}
	if n := eval[int](alice, `document.querySelectorAll('form[action$="/approve"], form[action$="/deny"]').length`); n != 0 {
		t.Errorf("alice's inbox has %d approve or deny forms", n)
	}
	// Sending the approval anyway, with her valid CSRF token, is refused.
	status := eval[int](alice, fmt.Sprintf(`fetch("/requests/%s/approve", {method: "POST", body: new URLSearchParams({
		csrf: document.querySelector("input[name=csrf]").value})}).then(r => r.status)`, id), chromedp.EvalAwaitPromise)
	if status != 403 {
		t.Errorf("alice approving her own request: status %d, want 403", status)
	}

	// bob's inbox shows the request by itself, without a reload.
	bob.waitUntil(fmt.Sprintf(`document.getElementById("req-%s")`, id))
	for _, want := range []string{"alice@example.com", "debug the deploy", "\t30m\t", "demo-ssh"} {
		if got := bob.text(card); !strings.Contains(got, want) {
			t.Errorf("bob's inbox card lacks %q: %q", want, got)
		}
	}
	if got := bob.text(card + ` [data-seconds-ago]`); !regexp.MustCompile(`^\d+s$`).MatchString(got) {
		t.Errorf("waited for: %q", got)
	}

	// A form posted without its CSRF token is refused, in the browser too. The
	// form is a copy outside the inbox list, which refreshes itself and would
	// put a fresh form, token included, in place of one edited in the list.
	eval[chromedp.Void](bob, fmt.Sprintf(`(() => {
		const f = document.querySelector('form[action="/requests/%s/approve"]').cloneNode(true);
		f.id = "approve-without-csrf";
		f.querySelector("input[name=csrf]").remove();
		document.body.appendChild(f);
	})()`, id))
	if status := bob.submit(`#approve-without-csrf button[type="submit"]`); status != 403 {
		t.Errorf("approve without the CSRF token: status %d, want 403", status)
	}
	if got := bob.text("main"); !strings.Contains(got, "missing its security token") {
		t.Errorf("refusal page: %q", got)
	}
	s.waitState(t, id, ajar.StatePending)

	// bob approves with a comment.
	bob.open("/inbox")
	bob.fill("#approve-"+id, "go ahead")
	if status := bob.submit(fmt.Sprintf(`form[action="/requests/%s/approve"] button[type="submit"]`, id)); status != 200 {
		t.Fatalf("approve: status %d", status)
	}
	if got := bob.text(".flash"); !strings.Contains(got, "You approved "+id) {
		t.Errorf("after approving: %q", got)
	}

	// alice sees it active with a live countdown and the command to connect.
	alice.open("/access")
	left := card + " .countdown"
	first := alice.text(left)
	alice.do(chromedp.Sleep(1500 * time.Millisecond))
	second := alice.text(left)
	countdown := regexp.MustCompile(`^(29m \d\ds|30m 00s) left$`)
	if !countdown.MatchString(first) || !countdown.MatchString(second) || first == second {
		t.Errorf("countdown %q then %q: want it to count down from 30m", first, second)
	}
	if got := alice.text(card + " code.cmd"); got != "ajar ssh demo-ssh" {
		t.Errorf("connect command %q", got)
	}
	if n := eval[int](alice, fmt.Sprintf(`document.querySelectorAll('form[action="/requests/%s/revoke"]').length`, id)); n != 1 {
		t.Errorf("%d revoke forms", n)
	}

	// Its time runs out: the page moves it to the history by itself.
	s.Clock.Advance(31 * time.Minute)
	s.Svc.Kick()
	alice.waitUntil(fmt.Sprintf(`document.getElementById("hist-%s") && !document.getElementById("req-%s")`, id, id))
	if got := alice.text("#hist-" + id); !strings.Contains(got, "expired") {
		t.Errorf("history row: %q", got)
	}

	// The audit page shows the events; the evidence page verifies the chain.
	admin.open("/audit?request=" + id)
	admin.signIn(s.tokens["admin"])
	events := admin.text("#events")
	for _, action := range []string{"request.created", "approval.refused", "request.approved", "request.activated", "request.expired"} {
		if !strings.Contains(events, action) {
			t.Errorf("audit page lacks %s:\n%s", action, events)
		}
	}
	admin.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#events a[href="/audit/%s"]`, id)), chromedp.NodeVisible))
	admin.waitUntil(`document.querySelector("#h-chain")`)
	if got := admin.text(".chain"); !strings.Contains(got, "Audit chain: verified") || !strings.Contains(got, "The whole audit log verifies") {
		t.Errorf("evidence chain status: %q", got)
	}
	if got := admin.text("main"); !strings.Contains(got, "bob@example.com approved") || !strings.Contains(got, "go ahead") {
		t.Errorf("evidence lacks bob's approval: %q", got)
	}
	alice.open("/audit")
	if got := alice.text("#events"); !strings.Contains(got, id) || strings.Contains(got, "token.created") {
		t.Errorf("alice's audit page: %q", got)
	}
}

// TestBrowserWithoutJavaScript walks the same path with scripts turned off:
// every page works, it only does not refresh by itself.
func TestBrowserWithoutJavaScript(t *testing.T) {
	s := startServer(t)
	alice, bob := s.newTab(t, false), s.newTab(t, false)
	alice.open("/request/demo-ssh")
	alice.signIn(s.tokens["alice"])
	if p := alice.path(); p != "/request/demo-ssh" {
		t.Fatalf("after sign-in: %s", p)
	}
	alice.fill("#f-duration", "20m")
	alice.fill("#f-reason", "no script")
	if status := alice.submit(`form[action="/request/demo-ssh"] button[type="submit"]`); status != 200 {
		t.Fatalf("request: %d", status)
	}
	id := path.Base(alice.path())
	bob.open("/inbox")
	bob.signIn(s.tokens["bob"])
	if status := bob.submit(fmt.Sprintf(`form[action="/requests/%s/approve"] button[type="submit"]`, id)); status != 200 {
		t.Fatalf("approve: %d", status)
	}
	alice.open("/access")
	if got := alice.text("#req-" + id + " .countdown"); !regexp.MustCompile(`^(19m \d\ds|20m 00s) left$`).MatchString(got) {
		t.Errorf("time left without script: %q", got)
	}
	if status := alice.submit(fmt.Sprintf(`form[action="/requests/%s/revoke"] button[type="submit"]`, id)); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	if got := alice.text("#hist-" + id); !strings.Contains(got, "revoked") {
		t.Errorf("after revoking: %q", alice.text("main"))
	}
}

// TestBrowserScreenshots takes a screenshot of each page at desktop and phone
// widths into test-artifacts/screenshots, and runs axe-core on each.
func TestBrowserScreenshots(t *testing.T) {
	s := startServer(t)
	bobUser := s.user(t, "bob")
	// Some history: one expired, one denied; one active and one pending now.
	expired := s.createRequest(t, "alice", "1m", "check the deploy")
	s.waitState(t, expired.ID, ajar.StateActive)
	s.Clock.Advance(2 * time.Minute)
	s.Svc.Kick()
	s.waitState(t, expired.ID, ajar.StateExpired)
	denied := s.createRequest(t, "alice", "45m", "look around prod")
	if _, err := s.Svc.Deny(context.Background(), bobUser, denied.ID, "use staging"); err != nil {
		t.Fatal(err)
	}
	active := s.createRequest(t, "alice", "5m", "restart the worker")
	s.waitState(t, active.ID, ajar.StateActive)
	pending := s.createRequest(t, "alice", "30m", "debug the payment queue")

	out := s.newTab(t, true)
	out.open("/signin")
	out.capture("signin")

	alice := s.newTab(t, true)
	alice.open("/signin")
	alice.signIn(s.tokens["alice"])
	for _, p := range []struct{ name, path string }{
		{"request-targets", "/request"},
		{"request-form", "/request/demo-ssh"},
		{"my-access", "/access"},
		{"request-own-pending", "/requests/" + pending.ID},
		{"inbox-requester", "/inbox"},
		{"audit-requester", "/audit"},
		{"evidence-requester", "/audit/" + expired.ID},
		{"not-found", "/nowhere"},
	} {
		alice.open(p.path)
		alice.capture(p.name)
	}
	alice.open("/request/demo-ssh")
	alice.fill("#f-duration", "3h")
	alice.fill("#f-param-source-ip", "10.0.0.0/8")
	alice.submit(`form[action="/request/demo-ssh"] button[type="submit"]`)
	alice.capture("request-form-errors")

	bob := s.newTab(t, true)
	bob.open("/signin")
	bob.signIn(s.tokens["bob"])
	bob.open("/inbox")
	bob.capture("inbox-approver")
	bob.open("/requests/" + pending.ID)
	bob.capture("request-approver")

	admin := s.newTab(t, true)
	admin.open("/signin")
	admin.signIn(s.tokens["admin"])
	admin.open("/audit")
	admin.capture("audit-admin")
	admin.open("/audit/" + expired.ID)
	admin.capture("evidence-admin")
}
