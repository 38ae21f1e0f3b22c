package web_test

import (
	"context"
	"database/sql"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver, to tamper with the audit log

	"github.com/ajar-dev/ajar"
)

// pagePaths are the signed-in pages, for checks that apply to every page.
func pagePaths(id string) []string {
	return []string{"/request", "/request/demo-ssh", "/inbox", "/access", "/requests/" + id, "/audit", "/audit/" + id}
}

func TestSecurityHeaders(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "30m", "debug")
	c := newClient(t, s.URL)
	c.signIn(s.tokens["alice"])
	for _, path := range append([]string{"/signin", "/no-such-page", "/static/app.js"}, pagePaths(r.ID)...) {
		resp := c.get(path)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		scripts := cspDirective(csp, "script-src")
		if scripts == "" || strings.Contains(scripts, "unsafe-inline") || strings.Contains(scripts, "unsafe-eval") {
			t.Errorf("%s: script-src %q in CSP %q: want it set, without unsafe-inline or unsafe-eval", path, scripts, csp)
		}
		if d := cspDirective(csp, "frame-ancestors"); d != "'none'" {
			t.Errorf("%s: frame-ancestors %q, want 'none'", path, d)
		}
		for k, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "same-origin",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		if strings.HasPrefix(path, "/static/") {
			continue
		}
		if got := h.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, got)
		}
		// No inline script for the CSP to forbid: every <script> has a src and no
		// element has an on* event handler attribute.
		for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(resp.Body, -1) {
			if !strings.Contains(m, ` src="/static/`) {
				t.Errorf("%s: inline script %s", path, m)
			}
		}
		if m := regexp.MustCompile(`<[^>]+\son[a-z]+=`).FindString(resp.Body); m != "" {
			t.Errorf("%s: inline event handler in %s", path, m)
		}
	}
	// The API keeps its own headers.
	api := c.get("/v1/whoami").Header
	if csp := api.Get("Content-Security-Policy"); csp != "default-src 'none'; frame-ancestors 'none'" {
		t.Errorf("API CSP = %q", csp)
	}
	if rp := api.Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("API Referrer-Policy = %q", rp)
	}
}

// cspDirective returns the value of one directive of a Content-Security-Policy.
func cspDirective(csp, name string) string {
	for _, d := range strings.Split(csp, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestSessionCookie(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.URL)
	page := c.get("/signin")
	signinCookie := findCookie(page.Header, "ajar_signin")
	if signinCookie == nil || !signinCookie.HttpOnly || signinCookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in CSRF cookie: %+v", signinCookie)
	}
	for _, tls := range []bool{false, true} {
		c := newClient(t, s.URL)
		var hdr []string
		if tls {
			hdr = []string{"X-Forwarded-Proto", "https"}
		}
		page := c.get("/signin", hdr...)
		// The cookie jar drops Secure cookies over http, so send the form by hand.
		token := csrf(t, page.Body)
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/signin", strings.NewReader(url.Values{"csrf": {token}, "token": {s.tokens["alice"]}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "ajar_signin", Value: token})
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := findCookie(resp.Header, "ajar_session")
		switch {
		case resp.StatusCode != http.StatusSeeOther || sc == nil:
			t.Fatalf("tls %v: sign in: %d, cookie %+v", tls, resp.StatusCode, sc)
		case !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Secure != tls || sc.Path != "/":
			t.Errorf("tls %v: session cookie %+v: want HttpOnly, SameSite=Strict, Secure only over TLS, Path /", tls, sc)
		case strings.Contains(sc.Value, s.tokens["alice"]) || len(sc.Value) < 40:
			t.Errorf("session cookie value %q: want a random id, never the token", sc.Value)
		}
	}

	// Signing in again gives a new session id (no session fixation).
	c1 := newClient(t, s.URL)
	c1.signIn(s.tokens["alice"])
	first := sessionID(t, c1)
	fresh := newClient(t, s.URL)
	form := fresh.get("/signin")
	c1.http.Jar.SetCookies(mustURL(s.URL), []*http.Cookie{findCookie(form.Header, "ajar_signin")})
	if resp := c1.post("/signin", url.Values{"csrf": {csrf(t, form.Body)}, "token": {s.tokens["bob"]}}); resp.Status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", resp.Status)
	}
	second := sessionID(t, c1)
	if first == second {
		t.Error("signing in kept the old session id")
	}
	tok := csrf(t, c1.get("/access").Body)
	old := newClient(t, s.URL)
	old.http.Jar.SetCookies(mustURL(s.URL), []*http.Cookie{{Name: "ajar_session", Value: first}})
	if resp := old.get("/access"); resp.Status != http.StatusSeeOther {
		t.Errorf("the replaced session still works: %d", resp.Status)
	}
	if resp := c1.post("/signout", url.Values{"csrf": {tok}}); resp.Status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.Status)
	}
	stale := newClient(t, s.URL)
	stale.http.Jar.SetCookies(mustURL(s.URL), []*http.Cookie{{Name: "ajar_session", Value: second}})
	if resp := stale.get("/access"); resp.Status != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Errorf("after sign-out the session still works: %d %s", resp.Status, resp.Header.Get("Location"))
	}
}

func findCookie(h http.Header, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func sessionID(t *testing.T, c *client) string {
	t.Helper()
	for _, ck := range c.http.Jar.Cookies(mustURL(c.base)) {
		if ck.Name == "ajar_session" {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

func TestSignIn(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.URL)
	resp := c.get("/inbox")
	if resp.Status != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Finbox" {
		t.Fatalf("signed out: %d %s", resp.Status, resp.Header.Get("Location"))
	}
	page := c.get("/signin?next=%2Finbox")
	resp = c.post("/signin", url.Values{"csrf": {csrf(t, page.Body)}, "token": {"ajar_wrong"}, "next": {"/inbox"}})
	if resp.Status != http.StatusUnauthorized || !strings.Contains(resp.Body, "This token was not accepted") || !strings.Contains(resp.Body, `aria-invalid="true"`) {
		t.Errorf("wrong token: %d\n%s", resp.Status, resp.Body)
	}
	resp = c.post("/signin", url.Values{"csrf": {csrf(t, resp.Body)}, "token": {s.tokens["bob"]}, "next": {"/inbox"}})
	if resp.Status != http.StatusSeeOther || resp.Header.Get("Location") != "/inbox" {
		t.Errorf("sign in: %d %s", resp.Status, resp.Header.Get("Location"))
	}
	if resp := c.get("/inbox"); resp.Status != http.StatusOK || !strings.Contains(resp.Body, "bob@example.com") {
		t.Errorf("inbox after sign-in: %d", resp.Status)
	}

	// "next" only ever leads to a page of this site.
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"} {
		c := newClient(t, s.URL)
		page := c.get("/signin")
		resp := c.post("/signin", url.Values{"csrf": {csrf(t, page.Body)}, "token": {s.tokens["bob"]}, "next": {next}})
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%q: redirected to %q", next, loc)
		}
	}

	// A link from another site (a chat message) arrives without the
	// SameSite=Strict cookie: the page reloads itself from this site.
	c.http.Jar.SetCookies(mustURL(s.URL), nil)
	cross := newClient(t, s.URL)
	resp = cross.get("/requests/req_x", "Sec-Fetch-Site", "cross-site")
	if resp.Status != http.StatusOK || resp.Header.Get("Refresh") != "0; url=/requests/req_x" {
		t.Errorf("cross-site link: %d, Refresh %q", resp.Status, resp.Header.Get("Refresh"))
	}
}

func TestCSRF(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "30m", "debug")
	bob := newClient(t, s.URL)
	token := bob.signIn(s.tokens["bob"])
	other := newClient(t, s.URL)
	otherToken := other.signIn(s.tokens["admin"])
	approve := "/requests/" + r.ID + "/approve"

	for _, tt := range []struct {
		name   string
		c      *client
		path   string
		form   url.Values
		header []string
	}{
		{"no token", bob, approve, url.Values{"comment": {"x"}}, nil},
		{"empty token", bob, approve, url.Values{"csrf": {""}}, nil},
		{"wrong token", bob, approve, url.Values{"csrf": {"AAAA" + token[4:]}}, nil},
		{"another session's token", bob, approve, url.Values{"csrf": {otherToken}}, nil},
		{"from another site (Origin)", bob, approve, url.Values{"csrf": {token}}, []string{"Origin", "https://evil.example"}},
		{"from another site (Sec-Fetch-Site)", bob, approve, url.Values{"csrf": {token}}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"no session", newClient(t, s.URL), approve, url.Values{"csrf": {token}}, nil},
		{"deny without token", bob, "/requests/" + r.ID + "/deny", url.Values{"reason": {"no"}}, nil},
		{"create without token", bob, "/request/demo-ssh", url.Values{"reason": {"x"}}, nil},
		{"sign out without token", bob, "/signout", url.Values{}, nil},
		{"sign in without the cookie", newClient(t, s.URL), "/signin", url.Values{"csrf": {token}, "token": {s.tokens["bob"]}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.c.post(tt.path, tt.form, tt.header...)
			if resp.Status != http.StatusForbidden {
				t.Errorf("status %d, want 403\n%s", resp.Status, resp.Body)
			}
		})
	}
	// Nothing happened: the request is still pending and bob is still signed in.
	if got := s.waitState(t, r.ID, ajar.StatePending); len(got.Approvals) != 0 {
		t.Errorf("approvals recorded: %+v", got.Approvals)
	}
	if resp := bob.get("/inbox"); resp.Status != http.StatusOK {
		t.Errorf("bob was signed out: %d", resp.Status)
	}
	// With the token the same form works.
	resp := bob.post(approve, url.Values{"csrf": {token}, "comment": {"ok"}, "return": {"/inbox"}}, "Origin", s.URL, "Sec-Fetch-Site", "same-origin")
	if resp.Status != http.StatusSeeOther || resp.Header.Get("Location") != "/inbox" {
		t.Fatalf("approve with the token: %d\n%s", resp.Status, resp.Body)
	}
	s.waitState(t, r.ID, ajar.StateActive)
}

func TestRequestForm(t *testing.T) {
	s := startServer(t)
	c := newClient(t, s.URL)
	token := c.signIn(s.tokens["alice"])
	page := c.get("/request/demo-ssh")
	for _, want := range []string{
		`<label for="f-param-source-ip">Your IP address (source_ip) <span class="req">(required)</span></label>`,
		`id="f-param-source-ip" name="param.source_ip" type="text" value="127.0.0.1"`, // prefilled from the connection
		`placeholder="15m"`, "Empty means 15m; at most 1h, at least 5s.",
	} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("form lacks %s", want)
		}
	}

	valid := url.Values{"csrf": {token}, "duration": {"30m"}, "reason": {"debug"}, "param.source_ip": {"127.0.0.1"}}
	for _, tt := range []struct {
		name, key, value string
		status           int
		input, message   string
	}{
		{"duration too long", "duration", "2h", 400, "f-duration", "2h is longer than the maximum 1h"},
		{"duration not a duration", "duration", "soon", 400, "f-duration", "is not a duration"},
		{"reason missing", "reason", "", 400, "f-reason", "required by policy"},
		{"start not a time", "start", "tomorrow", 400, "f-start", "is not a date and time"},
		{"start in the past", "start", "2020-01-01T10:00", 400, "f-start", "is in the past"},
		{"source_ip a prefix", "param.source_ip", "10.0.0.0/8", 400, "f-param-source-ip", "is a network prefix"},
		{"unknown parameter", "params", "color=blue", 400, "f-params", "unknown parameter"},
		{"parameter line", "params", "just text", 400, "f-params", "write name=value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range valid {
				form[k] = v
			}
			form.Set(tt.key, tt.value)
			resp := c.post("/request/demo-ssh", form)
			if resp.Status != tt.status {
				t.Fatalf("status %d, want %d\n%s", resp.Status, tt.status, resp.Body)
			}
			// The message is next to its input, which is marked invalid and
			// described by it, and the summary links to the input.
			errRE := regexp.MustCompile(`id="` + tt.input + `"[^>]*aria-describedby="[^"]*` + tt.input + `-error"[^>]*aria-invalid="true"`)
			if !errRE.MatchString(resp.Body) {
				t.Errorf("input %s is not marked invalid and described by its error\n%s", tt.input, resp.Body)
			}
			msgRE := regexp.MustCompile(`<p class="error" id="` + tt.input + `-error">[^<]*` + regexp.QuoteMeta(tt.message))
			if !msgRE.MatchString(resp.Body) {
				t.Errorf("no error %q at %s\n%s", tt.message, tt.input, resp.Body)
			}
			if !strings.Contains(resp.Body, `href="#`+tt.input+`"`) {
				t.Errorf("the error summary does not link to %s", tt.input)
			}
			if tt.key != "reason" && !strings.Contains(resp.Body, ">debug</textarea>") {
				t.Errorf("the reason typed was lost")
			}
		})
	}

	resp := c.post("/request/demo-ssh", valid)
	if resp.Status != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/requests/req_") {
		t.Fatalf("valid request: %d %s\n%s", resp.Status, resp.Header.Get("Location"), resp.Body)
	}
	page = c.get(resp.Header.Get("Location"))
	if !strings.Contains(page.Body, "is pending.") || !strings.Contains(page.Body, `state-pending`) {
		t.Errorf("request page after creating:\n%s", page.Body)
	}
	if resp := c.get("/request/nope"); resp.Status != http.StatusNotFound {
		t.Errorf("unknown target: %d", resp.Status)
	}
	bob := newClient(t, s.URL)
	bob.signIn(s.tokens["bob"])
	if resp := bob.get("/request/demo-ssh"); resp.Status != http.StatusForbidden {
		t.Errorf("a target bob may not request: %d", resp.Status)
	}
}

func TestSelfApprovalInPage(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "30m", "debug")
	c := newClient(t, s.URL)
	token := c.signIn(s.tokens["alice"])
	for _, path := range []string{"/inbox", "/requests/" + r.ID} {
		page := c.get(path)
		if !strings.Contains(page.Body, "You cannot approve this request.") || !strings.Contains(page.Body, "nobody approves their own request") {
			t.Errorf("%s does not say why alice cannot approve\n%s", path, page.Body)
		}
		if strings.Contains(page.Body, "/approve") || strings.Contains(page.Body, "/deny") {
			t.Errorf("%s offers alice a decision on her own request", path)
		}
	}
	// Posting the form anyway is refused by the core, and audited.
	resp := c.post("/requests/"+r.ID+"/approve", url.Values{"csrf": {token}})
	if resp.Status != http.StatusForbidden || !strings.Contains(resp.Body, "you cannot approve your own request") {
		t.Errorf("self-approval: %d\n%s", resp.Status, resp.Body)
	}
	var evs []ajar.AuditEvent
	err := s.Store.View(context.Background(), func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(context.Background(), ajar.AuditFilter{Subject: r.ID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Action != "approval.refused" || last.Actor != "alice@example.com" {
		t.Errorf("last event %s by %s, want approval.refused by alice", last.Action, last.Actor)
	}
	s.waitState(t, r.ID, ajar.StatePending)
}

// TestEveryFieldHasALabel checks each page's HTML: every input, select and
// textarea that is not hidden has a <label for> naming its id. (The browser
// test checks the same in the live page, with axe-core.)
func TestEveryFieldHasALabel(t *testing.T) {
	s := startServer(t)
	active := s.createRequest(t, "alice", "1m", "check")
	s.createRequest(t, "alice", "30m", "debug")
	s.waitState(t, active.ID, ajar.StateActive)
	fieldRE := regexp.MustCompile(`<(input|select|textarea)\b[^>]*>`)
	idRE := regexp.MustCompile(`\sid="([^"]+)"`)
	for _, user := range []string{"alice", "bob", "admin"} {
		c := newClient(t, s.URL)
		signin := c.get("/signin").Body
		c.signIn(s.tokens[user])
		pages := map[string]string{"/signin": signin}
		for _, path := range pagePaths(active.ID) {
			pages[path] = c.get(path).Body
		}
		for path, body := range pages {
			for _, f := range fieldRE.FindAllString(body, -1) {
				if strings.Contains(f, `type="hidden"`) {
					continue
				}
				m := idRE.FindStringSubmatch(f)
				if m == nil || !strings.Contains(body, `<label for="`+m[1]+`"`) {
					t.Errorf("%s as %s: %s has no label", path, user, f)
				}
			}
		}
	}
}

func TestEvidenceShowsChainStatus(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "1m", "check")
	s.waitState(t, r.ID, ajar.StateActive)
	admin, alice := newClient(t, s.URL), newClient(t, s.URL)
	admin.signIn(s.tokens["admin"])
	alice.signIn(s.tokens["alice"])
	if page := admin.get("/audit/" + r.ID).Body; !strings.Contains(page, "Audit chain: verified") || !strings.Contains(page, "The whole audit log verifies") {
		t.Errorf("admin's evidence page:\n%s", page)
	}
	if page := alice.get("/audit/" + r.ID).Body; !strings.Contains(page, "Audit chain: verified") || !strings.Contains(page, "needs an admin") {
		t.Errorf("alice's evidence page:\n%s", page)
	}

	// Edit one of the request's events behind ajar's back.
	// The server writes too (its scheduler): wait for its lock rather than
	// failing with SQLITE_BUSY.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, "ajar.db")+"?_pragma=busy_timeout(60000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{
		"DROP TRIGGER IF EXISTS audit_events_no_update",
		"UPDATE audit_events SET details = CAST('{\"reason\":\"forged\"}' AS BLOB) WHERE subject = '" + r.ID + "' AND action = 'request.created'",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if page := admin.get("/audit/" + r.ID).Body; !strings.Contains(page, "Audit chain: BROKEN") || !strings.Contains(page, "hash mismatch") {
		t.Errorf("admin's evidence page after tampering:\n%s", page)
	}
	if page := alice.get("/audit/" + r.ID).Body; !strings.Contains(page, "Audit chain: BROKEN") {
		t.Errorf("alice's evidence page after tampering:\n%s", page)
	}
}

func TestAuditPage(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "1m", "check")
	s.waitState(t, r.ID, ajar.StateActive)
	admin, alice := newClient(t, s.URL), newClient(t, s.URL)
	admin.signIn(s.tokens["admin"])
	alice.signIn(s.tokens["alice"])

	page := admin.get("/audit").Body
	for _, want := range []string{"<code>token.created</code>", "<code>request.created</code>", "<code>request.activated</code>", `href="/audit/` + r.ID + `"`, "you search the whole log"} {
		if !strings.Contains(page, want) {
			t.Errorf("admin's audit page lacks %q", want)
		}
	}
	// Details read as key: value, not raw JSON.
	if !strings.Contains(page, "<dt>target</dt><dd>demo-ssh</dd>") || !strings.Contains(page, "<dt>reason</dt><dd>check</dd>") {
		t.Errorf("admin's audit page lacks readable details\n%s", page)
	}
	page = alice.get("/audit").Body
	if strings.Contains(page, "<code>token.created</code>") || !strings.Contains(page, "<code>request.created</code>") {
		t.Errorf("alice's audit page shows other events, or not hers\n%s", page)
	}
	page = admin.get("/audit?action=request.created&user=alice%40example.com&target=demo-ssh").Body
	if n := strings.Count(page, "<code>request.created</code>"); n != 1 || strings.Contains(page, "<code>request.activated</code>") {
		t.Errorf("filtered search: %d request.created rows\n%s", n, page)
	}
	resp := admin.get("/audit?from=2026-01-02T00:00&to=2026-01-01T00:00")
	if resp.Status != http.StatusBadRequest || !regexp.MustCompile(`id="f-to-error">must be after from`).MatchString(resp.Body) {
		t.Errorf("bad range: %d\n%s", resp.Status, resp.Body)
	}
	if resp := alice.get("/audit?request=req_unknown"); resp.Status != http.StatusNotFound {
		t.Errorf("a request alice cannot see: %d", resp.Status)
	}
}

// TestExtendFromMyAccess extends an active grant from "My access": the form is
// there, the extension within the policy's limits is applied (the demo policy
// auto-approves a window of at most 5m), and a bad duration is refused.
func TestExtendFromMyAccess(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "1m", "check")
	r = s.waitState(t, r.ID, ajar.StateActive)
	c := newClient(t, s.URL)
	token := c.signIn(s.tokens["alice"])
	page := c.get("/access").Body
	if !strings.Contains(page, `action="/requests/`+r.ID+`/extend"`) || !strings.Contains(page, `<label for="extend-`+r.ID+`">`) {
		t.Fatalf("no extend form on an active grant\n%s", page)
	}
	if !strings.Contains(page, "/revoke") || !strings.Contains(page, "<code class=\"cmd\">ajar ssh demo-ssh</code>") {
		t.Errorf("no revoke button or connect command on an active grant\n%s", page)
	}
	resp := c.post("/requests/"+r.ID+"/extend", url.Values{"csrf": {token}, "by": {"2m"}, "return": {"/access"}})
	if resp.Status != http.StatusSeeOther {
		t.Fatalf("extend: %d\n%s", resp.Status, resp.Body)
	}
	alice, _ := s.Svc.Policy().User("alice@example.com")
	got, err := s.Svc.GetRequest(t.Context(), alice, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ajar.StateActive || !got.ExpiresAt.Equal(r.ExpiresAt.Add(2*time.Minute)) {
		t.Errorf("after extending by 2m: %s, expires %v (was %v)", got.State, got.ExpiresAt, r.ExpiresAt)
	}
	if resp := c.post("/requests/"+r.ID+"/extend", url.Values{"csrf": {token}, "by": {"-5m"}}); resp.Status != http.StatusBadRequest {
		t.Errorf("a negative extension: %d", resp.Status)
	}
}

// TestExtensionDecisionInPage: with an extension waiting for approval, the
// request's page offers its approver approve and deny for the extension, and
// tells the requester why she cannot decide it, as Approve and Deny would.
func TestExtensionDecisionInPage(t *testing.T) {
	s := startServer(t)
	r := s.createRequest(t, "alice", "5m", "check") // auto-approved
	r = s.waitState(t, r.ID, ajar.StateActive)
	if _, err := s.Svc.Extend(context.Background(), s.user(t, "alice"), r.ID, ajar.ExtendInput{By: "30m", Reason: "more"}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s.URL)
	c.signIn(s.tokens["alice"])
	page := c.get("/requests/" + r.ID).Body
	if !strings.Contains(page, "You cannot approve this extension.") || !strings.Contains(page, "You asked for this extension") ||
		strings.Contains(page, "/approve") || strings.Contains(page, "/deny") {
		t.Errorf("alice's page of her extension\n%s", page)
	}
	c = newClient(t, s.URL)
	c.signIn(s.tokens["bob"])
	page = c.get("/requests/" + r.ID).Body
	if !strings.Contains(page, `action="/requests/`+r.ID+`/approve"`) || !strings.Contains(page, `action="/requests/`+r.ID+`/deny"`) ||
		!strings.Contains(page, "<dt>Extension</dt>") || strings.Contains(page, "nothing left to decide") ||
		!strings.Contains(page, "<dt>Can approve</dt><dd>bob@example.com</dd>") {
		t.Errorf("bob's page of alice's extension\n%s", page)
	}
	// The extension is in bob's inbox, with approve and deny.
	page = c.get("/inbox").Body
	if !strings.Contains(page, `id="req-`+r.ID+`"`) || !strings.Contains(page, "extension</span>") || !strings.Contains(page, "30m more: “more”") ||
		!strings.Contains(page, `action="/requests/`+r.ID+`/approve"`) || !strings.Contains(page, `action="/requests/`+r.ID+`/deny"`) {
		t.Errorf("bob's inbox lacks alice's extension\n%s", page)
	}
	// It is counted on "Inbox" in the navigation, on every page.
	if page := c.get("/audit").Body; !strings.Contains(page, `<span class="nav-count">1<span class="sr-only"> waiting for you</span>`) {
		t.Errorf("the extension is not counted on Inbox\n%s", page)
	}
}

// TestAuditPaged: the audit search shows its events a page at a time, newest
// first, with a link to the older ones (the next page starts below the last
// event of this one) until the oldest; following the links shows every event
// once.
func TestAuditPaged(t *testing.T) {
	s := startServer(t)
	alice := s.user(t, "alice")
	for i := range 40 { // each: request.created, request.cancelled
		if i == 20 {
			s.Clock.Advance(2 * time.Minute) // past limits.requests_per_minute_per_user
		}
		r := s.createRequest(t, "alice", "30m", fmt.Sprintf("page %d", i))
		if _, err := s.Svc.Cancel(context.Background(), alice, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, s.URL)
	c.signIn(s.tokens["admin"])
	seqRE := regexp.MustCompile(`<td data-label="#">(\d+)</td>`)
	olderRE := regexp.MustCompile(`<a href="([^"]+)" rel="next">Older events</a>`)
	var seqs []int
	pages := 0
	for next := "/audit?action=request."; next != ""; pages++ {
		if pages > 10 {
			t.Fatalf("more than %d pages", pages)
		}
		page := c.get(next)
		if page.Status != http.StatusOK {
			t.Fatalf("%s: status %d\n%s", next, page.Status, page.Body)
		}
		rows := seqRE.FindAllStringSubmatch(page.Body, -1)
		if len(rows) == 0 || len(rows) > 50 {
			t.Fatalf("%s: %d events on the page, want 1 to 50", next, len(rows))
		}
		for _, m := range rows {
			n, _ := strconv.Atoi(m[1])
			seqs = append(seqs, n)
		}
		if pages > 0 && !strings.Contains(page.Body, `">Newest events</a>`) {
			t.Errorf("%s: no link back to the newest events", next)
		}
		next = ""
		if m := olderRE.FindStringSubmatch(page.Body); m != nil {
			next = html.UnescapeString(m[1])
			if !strings.Contains(next, "action=request.") {
				t.Errorf("the link to older events %q drops the search", next)
			}
		}
	}
	if pages < 2 {
		t.Errorf("%d page(s) of %d events, want them paged 50 at a time", pages, len(seqs))
	}
	if len(seqs) != 80 {
		t.Errorf("%d events over %d pages, want the 80 request events", len(seqs), pages)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] >= seqs[i-1] {
			t.Fatalf("event %d after %d: not newest first, or shown twice", seqs[i], seqs[i-1])
		}
	}
	// A broken page link is an error on the page, not every event.
	if page := c.get("/audit?before=x"); page.Status != http.StatusBadRequest || !strings.Contains(page.Body, "page link is broken") {
		t.Errorf("before=x: status %d", page.Status)
	}
}
