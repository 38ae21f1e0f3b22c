// Package web serves ajar's pages for requesters, approvers and auditors:
// server-rendered HTML (html/template) whose CSS and one small script are
// embedded in the binary, so building ajar needs no Node. Every page works
// without JavaScript; with it, lists refresh by themselves and grants count
// down to their expiry.
//
// Like the JSON API, the handlers decode and validate input, call the core and
// render; the rules live in package broker. People sign in with an API token
// that never leaves the server: the browser holds only the secret of a session
// stored by package identity, in an HttpOnly, SameSite=Strict cookie (Secure
// over TLS), and every form carries a CSRF token bound to that session (see
// session.go).
package web

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/readmodel"
)

// Core is what the pages need from ajar's core: methods of *broker.Service and
// of the read model beside it (*readmodel.Reader, see cmd/ajar/serve.go), so
// tests can substitute a fake. Errors are *ajar.Error values whose codes the
// pages map to statuses; any other error is shown as an internal error.
type Core interface {
	WhoAmI(ctx context.Context, u ajar.User) (ajar.Caller, error)
	Targets(ctx context.Context, u ajar.User) ([]readmodel.TargetInfo, error)
	TargetForm(ctx context.Context, u ajar.User, target string) (*readmodel.TargetForm, error)
	CreateRequest(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error)
	MyAccess(ctx context.Context, u ajar.User) (*readmodel.Access, error)
	Review(ctx context.Context, u ajar.User, id string) (*readmodel.Review, error)
	Inbox(ctx context.Context, u ajar.User) ([]readmodel.Review, error)
	Approve(ctx context.Context, u ajar.User, id, comment string) (*ajar.Request, error)
	Deny(ctx context.Context, u ajar.User, id, reason string) (*ajar.Request, error)
	Revoke(ctx context.Context, u ajar.User, id string) (*ajar.Request, error)
	Cancel(ctx context.Context, u ajar.User, id string) (*ajar.Request, error)
	SearchAudit(ctx context.Context, u ajar.User, q readmodel.AuditQuery) (*readmodel.AuditSearch, error)
	Evidence(ctx context.Context, u ajar.User, id string) (*readmodel.Evidence, error)
}

// Extender is the core's extend operation ("ajar extend ID --by 30m"). When the
// Core passed to New implements it (broker.Service does), "My access" shows an
// extend form on active grants and POST /requests/{id}/extend calls it.
type Extender interface {
	Extend(ctx context.Context, u ajar.User, id string, in ajar.ExtendInput) (*ajar.ExtendOutput, error)
}

// Counter counts what waits for a user's decision (readmodel.Reader.Awaiting).
// When the Core passed to New implements it, the navigation shows the count
// on "Inbox" and signing in lands on the inbox when it is not zero.
type Counter interface {
	Awaiting(ctx context.Context, u ajar.User) (int, error)
}

// Options configures the pages. The zero value works.
type Options struct {
	// Logger receives internal errors. Nil discards them.
	Logger *slog.Logger
	// Now is the core's clock, used for "waited for" and time left (default
	// time.Now). Countdowns in the browser run from the server's figure, so a
	// browser with a wrong clock still counts down correctly.
	Now func() time.Time
	// Refresh is how often lists refresh themselves in the browser (default 5s).
	Refresh time.Duration
	// Login runs single sign-on (web/sso.go); nil: tokens only.
	Login Login
	// MFA is the security keys and step-up (web/keys.go); nil: none.
	MFA MFA
	// DevTokens is, in dev mode, the file holding each demo user's API token,
	// which the sign-in page points at; "" outside dev mode, where the page
	// says nothing about dev mode.
	DevTokens string
}

// Handler serves the pages. Mount it at "/" (api.Options.Web does).
type Handler struct {
	core     Core
	ids      Identity
	extender Extender // nil when the core cannot extend
	counter  Counter  // nil when the core cannot count what waits
	opts     Options
	log      *slog.Logger
	pages    *pages
	mux      *http.ServeMux
}

// Identity is what the pages need of *identity.Service: sessions in the store.
type Identity interface {
	// Authenticate returns the user of an API token or a session secret, or EUNAUTH.
	Authenticate(ctx context.Context, secret string) (ajar.User, error)
	// SignIn starts a session and returns its secret.
	SignIn(ctx context.Context, in identity.SignIn) (string, *ajar.Session, error)
	// Logout ends the session u was authenticated with.
	Logout(ctx context.Context, u ajar.User) error
	// SignInRefused audits a refused sign-in.
	SignInRefused(ctx context.Context, userID, reason string, details map[string]any) error
}

var _ Identity = (*identity.Service)(nil)

// New returns the pages for core; people sign in through ids.
func New(core Core, ids Identity, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	h := &Handler{
		core:  core,
		ids:   ids,
		opts:  opts,
		log:   opts.Logger,
		pages: loadPages(),
	}
	h.extender, _ = core.(Extender)
	h.counter, _ = core.(Counter)
	h.mux = h.routes()
	return h
}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/{file}", serveStatic)

	mux.HandleFunc("GET /{$}", h.handleHome)
	mux.HandleFunc("GET /signin", h.handleSignin)
	mux.HandleFunc("POST /signin", h.handleSigninPost)
	mux.HandleFunc("POST /signout", h.action(h.handleSignout))
	h.ssoRoutes(mux) // sso.go
	h.keyRoutes(mux) // keys.go

	mux.HandleFunc("GET /request", h.page(h.handleTargets))
	mux.HandleFunc("GET /request/{target}", h.page(h.handleRequestForm))
	mux.HandleFunc("POST /request/{target}", h.action(h.handleCreate))
	mux.HandleFunc("GET /inbox", h.page(h.handleInbox))
	mux.HandleFunc("GET /access", h.page(h.handleAccess))
	mux.HandleFunc("GET /requests/{id}", h.page(h.handleRequest))
	mux.HandleFunc("POST /requests/{id}/{action}", h.action(h.handleRequestAction))
	mux.HandleFunc("GET /audit", h.page(h.handleAudit))
	mux.HandleFunc("GET /audit/{id}", h.page(h.handleEvidence))

	mux.HandleFunc("/", h.handleNotFound)
	return mux
}

// contentSecurityPolicy allows only the pages' own script, styles and images:
// no inline script or event handler, no framing, forms post only here (the
// device page's form may also lead on to the IdP: sso.go).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP sets the security headers every page carries and routes the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	// Our own origin only: links out carry nothing, and forms keep a real
	// Origin header (no-referrer makes browsers send "Origin: null").
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		hd.Set("Cache-Control", "no-store") // pages show who has access to what
	}
	h.mux.ServeHTTP(w, r)
}
