package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/oidctest"
)

// ssoPolicy is the policy of the single sign-on tests (startSSO adds its
// server and identity sections): alice is a static engineer; approvers come
// from the IdP's groups only. prod-ssh's approval step requires a second factor.
const ssoPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
targets:
  demo-ssh: {provider: ssh-cert, config: {principals: [ajar-demo], source_address: request}}
  prod-ssh: {provider: ssh-cert, config: {principals: [ajar-prod], source_address: request}}
policies:
  - name: engineers-demo-ssh
    targets: [demo-ssh]
    requesters: [group:engineers]
    default_duration: 15m
    max_duration: 1h
    approval: {steps: [{approvers: [group:sre], count: 1}]}
  - name: prod-needs-mfa
    targets: [prod-ssh]
    requesters: [group:engineers]
    default_duration: 15m
    max_duration: 1h
    approval: {steps: [{approvers: [group:sre], count: 1, require_mfa: true}]}
`

// carol is the OP's approver: known to ajar only through the IdP, an
// approver through the IdP group sre.
const carol = "carol@example.com"

// startSSO starts a real OP with carol in group sre and the server with
// single sign-on against it. The OP's login step signs carol in.
func startSSO(t *testing.T) (*server, *oidctest.OP) {
	t.Helper()
	op := oidctest.Start(t)
	op.SetUser(oidctest.User{Email: "Carol@Example.com", EmailVerified: true, Groups: []string{"sre"}})
	op.LoginAs(carol)
	return startServerWith(t, serverConfig{Policy: ssoPolicy, OP: op}), op
}

// request files a request for target as a static user, through the core.
func (s *server) request(t testing.TB, name, target, reason string) *ajar.Request {
	t.Helper()
	r, err := s.Svc.CreateRequest(context.Background(), s.user(t, name), ajar.CreateInput{
		Target: target, Duration: "20m", Reason: reason, Params: map[string]string{"source_ip": "127.0.0.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// audit returns the audit events with this action, oldest first.
func (s *server) audit(t testing.TB, action string) []ajar.AuditEvent {
	t.Helper()
	var out []ajar.AuditEvent
	err := s.Store.View(context.Background(), func(tx ajar.ReadTx) error {
		all, err := tx.ListAudit(context.Background(), ajar.AuditFilter{Limit: 10000})
		for _, e := range all {
			if e.Action == action {
				out = append(out, e)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// detail returns a string field of an audit event's details.
func detail(t testing.TB, e ajar.AuditEvent, key string) string {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(e.Details, &d); err != nil {
		t.Fatal(err)
	}
	s, _ := d[key].(string)
	return s
}

// hop is one document response a tab received: a redirect or a page.
type hop struct {
	URL    string
	Status int64
}

// navLog records the document responses of a tab, in order.
type navLog struct {
	mu   sync.Mutex
	hops []hop
}

// recordNavigations starts recording the tab's document responses,
// redirects included.
func (tb *tab) recordNavigations() *navLog {
	tb.t.Helper()
	l := &navLog{}
	err := chromedp.Listen(tb.ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Type == network.ResourceTypeDocument && ev.RedirectResponse != nil {
				l.mu.Lock()
				l.hops = append(l.hops, hop{ev.RedirectResponse.URL, ev.RedirectResponse.Status})
				l.mu.Unlock()
			}
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument {
				l.mu.Lock()
				l.hops = append(l.hops, hop{ev.Response.URL, ev.Response.Status})
				l.mu.Unlock()
			}
		}
	})
	if err != nil {
		tb.t.Fatal(err)
	}
	return l
}

// take returns the hops recorded so far and starts a new record.
func (l *navLog) take() []hop {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.hops
	l.hops = nil
	return out
}

// waitPath waits until the tab has loaded a page at want: a path, or a path
// and query when want has one. Pages that reload themselves (the bounce after
// the IdP) may be in between (waitUntil).
func (tb *tab) waitPath(want string) {
	tb.t.Helper()
	where := "location.pathname"
	if strings.Contains(want, "?") {
		where += " + location.search"
	}
	tb.waitUntil(fmt.Sprintf(`document.readyState === "complete" && %s === %q`, where, want))
}

// waitFor waits until a JavaScript condition holds in a page that has
// finished loading; the page may reload itself (after a security key
// ceremony) while it waits.
func (tb *tab) waitFor(cond string) {
	tb.t.Helper()
	tb.waitUntil(`document.readyState === "complete" && !!(` + cond + `)`)
}

// cookie returns the value of the tab's cookie for the server, "" if none.
func (tb *tab) cookie(name string) string {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.base + "/"}})
	if err != nil {
		tb.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// hasHop reports whether hops has a response for a URL with this prefix.
func hasHop(hops []hop, prefix string) bool {
	for _, h := range hops {
		if strings.HasPrefix(h.URL, prefix) {
			return true
		}
	}
	return false
}
