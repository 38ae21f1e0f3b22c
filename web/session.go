package web

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
)

// Sessions and CSRF.
//
// Signing in with an API token creates a server-side session: the browser gets
// only a random 256-bit session id, in a cookie that is HttpOnly (no script can
// read it), SameSite=Strict (no other site's page sends it) and Secure when the
// connection is TLS. The token stays in this process's memory and is checked
// again on every request, so revoking it or removing its user from the policy
// ends the session at once. Sessions are per process: a restart signs everyone
// out.
//
// Every form that changes something carries a CSRF token: a random value bound
// to the session (a synchronizer token), compared in constant time. The sign-in
// form, which has no session yet, uses a double-submit cookie instead. A POST
// whose Origin or Sec-Fetch-Site header says it came from another site is
// refused too. A refused POST gets 403 and changes nothing.
//
// OIDC sign-in will be another credential: its callback calls startSession with
// a credential that re-checks the identity it was given.

const (
	sessionCookie = "ajar_session"
	signinCookie  = "ajar_signin" // double-submit CSRF token of the sign-in form
	csrfField     = "csrf"
	maxFormBytes  = 64 << 10
)

// credential is what a session was signed in with. It is asked for the user on
// every request.
type credential interface {
	user(ctx context.Context, core Core) (ajar.User, error)
}

// tokenCredential is an API token (sign-in with a token).
type tokenCredential struct{ token string }

func (c tokenCredential) user(ctx context.Context, core Core) (ajar.User, error) {
	return core.Authenticate(ctx, c.token)
}

// flash is a one-time message shown on the next page after a redirect.
type flash struct {
	Error bool
	Text  string
}

// session is one signed-in browser.
type session struct {
	id      string
	csrf    string
	cred    credential
	created time.Time
	seen    time.Time
	flash   *flash
	elem    *list.Element // in sessions.lru
}

// sessions holds the live sessions in memory, least recently used first.
type sessions struct {
	mu        sync.Mutex
	byID      map[string]*session
	lru       *list.List
	idle, max time.Duration
	limit     int
}

func newSessions(idle, max time.Duration, limit int) *sessions {
	return &sessions{byID: map[string]*session{}, lru: list.New(), idle: idle, max: max, limit: limit}
}

// randomToken returns 256 random bits, base64url-encoded.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for cred, dropping expired sessions and, past the
// limit, the least recently used one.
func (s *sessions) create(cred credential, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.lru.Front(); e != nil; {
		next := e.Next()
		if old := e.Value.(*session); s.expired(old, now) || s.lru.Len() >= s.limit {
			s.remove(old)
		}
		e = next
	}
	ss := &session{id: randomToken(), csrf: randomToken(), cred: cred, created: now, seen: now}
	ss.elem = s.lru.PushBack(ss)
	s.byID[ss.id] = ss
	return ss
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.seen) > s.idle || now.Sub(ss.created) > s.max
}

func (s *sessions) remove(ss *session) {
	delete(s.byID, ss.id)
	s.lru.Remove(ss.elem)
}

// get returns the live session with this id and marks it used, or nil.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byID[id]
	if ss == nil {
		return nil
	}
	if s.expired(ss, now) {
		s.remove(ss)
		return nil
	}
	ss.seen = now
	s.lru.MoveToBack(ss.elem)
	return ss
}

// drop ends a session.
func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.byID[id]; ss != nil {
		s.remove(ss)
	}
}

// setFlash leaves a message for the session's next page.
func (s *sessions) setFlash(ss *session, f flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.flash = &f
}

// popFlash returns and clears the session's message.
func (s *sessions) popFlash(ss *session) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := ss.flash
	ss.flash = nil
	return f
}

// secure reports whether cookies must be Secure: the connection is TLS, or a
// TLS-terminating proxy says it was. (A client that lies here only locks itself
// out: its browser will not send a Secure cookie over plain HTTP.)
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// current returns the request's live session, or nil.
func (h *Handler) current(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	return h.sessions.get(c.Value, time.Now())
}

// startSession signs the browser in with cred under a new session id (never one
// the browser brought: no session fixation).
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, cred credential) *session {
	if old := h.current(r); old != nil {
		h.sessions.drop(old.id)
	}
	ss := h.sessions.create(cred, time.Now())
	setCookie(w, r, sessionCookie, ss.id, 0)
	return ss
}

// sameOrigin reports whether a POST came from one of our own pages, as far as
// the browser says. Sec-Fetch-Site decides when the browser sends it; else the
// Origin header, when there is one, must be this host. Requests that carry
// neither (old browsers, scripts) rely on the CSRF token alone.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default: // same-site (another port or subdomain) and cross-site
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// tokensEqual compares CSRF tokens in constant time; an empty token never matches.
func tokensEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// req is a signed-in request: the user as the core sees them now, and their session.
type req struct {
	*http.Request
	me      broker.Identity
	session *session
}

// signedIn authenticates the session's credential. It returns false, having
// answered, when there is no usable session: a GET goes to the sign-in page
// (and back here after), anything else gets 403.
func (h *Handler) signedIn(w http.ResponseWriter, r *http.Request) (*req, bool) {
	ss := h.current(r)
	if ss == nil {
		if r.Method != http.MethodGet {
			h.refuse(w, r, "You are not signed in (or your session ended). Sign in and try again.")
			return nil, false
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			// A link from another site (a chat message) does not carry our
			// SameSite=Strict cookie; loading it again from our own page does.
			w.Header().Set("Refresh", "0; url="+r.URL.RequestURI())
			h.render(w, r, http.StatusOK, "bounce", &view{Title: "Opening", Data: r.URL.RequestURI()})
			return nil, false
		}
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil, false
	}
	u, err := ss.cred.user(r.Context(), h.core)
	if err == nil {
		var me broker.Identity
		if me, err = h.core.WhoAmI(r.Context(), u); err == nil {
			return &req{Request: r, me: me, session: ss}, true
		}
	}
	if code := ajar.ErrorCode(err); code != ajar.EUNAUTH {
		h.fail(w, r, nil, err)
		return nil, false
	}
	h.sessions.drop(ss.id)
	setCookie(w, r, sessionCookie, "", -1)
	if r.Method != http.MethodGet {
		h.refuse(w, r, "Your sign-in is no longer valid. Sign in again.")
		return nil, false
	}
	http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	return nil, false
}

// page wraps a GET handler that needs a signed-in user.
func (h *Handler) page(fn func(http.ResponseWriter, *req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rq, ok := h.signedIn(w, r); ok {
			fn(w, rq)
		}
	}
}

// action wraps a POST handler: the form must come from our own page with the
// session's CSRF token, and the session must still be signed in.
func (h *Handler) action(fn func(http.ResponseWriter, *req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			h.fail(w, r, nil, ajar.Errorf(ajar.EINVALID, "the form could not be read"))
			return
		}
		ss := h.current(r)
		switch {
		case !sameOrigin(r):
			h.refuse(w, r, "This form was sent from another site, so it was refused.")
			return
		case ss == nil:
			h.refuse(w, r, "You are not signed in (or your session ended). Sign in and try again.")
			return
		case !tokensEqual(r.PostForm.Get(csrfField), ss.csrf):
			h.refuse(w, r, "This form is missing its security token or it has expired. Reload the page and try again.")
			return
		}
		if rq, ok := h.signedIn(w, r); ok {
			fn(w, rq)
		}
	}
}

// refuse answers 403 to a form that failed the CSRF or session checks.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, why string) {
	h.render(w, r, http.StatusForbidden, "error", &view{
		Title: "Refused", Data: errorPage{Status: http.StatusForbidden, Message: why},
	})
}

// localPath returns p if it is a path on this site ("/inbox"), else def. It
// keeps "next" and "return" fields from sending people elsewhere.
func localPath(p, def string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return def
	}
	if u, err := url.Parse(p); err != nil || u.Host != "" || u.Scheme != "" {
		return def
	}
	return p
}
