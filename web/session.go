package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
)

// Sessions and CSRF.
//
// Signing in creates a session in the store (identity.Service.SignIn, kind
// "web"): the browser gets its random 256-bit secret, in a cookie that is
// HttpOnly (no script can read it), SameSite=Strict (no other site's page
// sends it) and Secure when the connection is TLS; the store keeps only its
// hash. Every request authenticates the secret again (identity.Service.
// Authenticate), so a revoked or expired session, or a user no longer known,
// is refused at once, on every replica, and sessions survive a restart. A
// session signed in with an API token works only while that token does
// (ajar.Session.Parent): revoking the token ends it at once.
//
// Every form that changes something carries a CSRF token derived from the
// session's secret (HMAC-SHA256 of a fixed label), compared in constant time,
// so nothing extra is stored. The sign-in form, which has no session yet, uses
// a double-submit cookie instead. A POST whose Origin or Sec-Fetch-Site header
// says it came from another site is refused too. A refused POST gets 403 and
// changes nothing.

const (
	sessionCookie = "ajar_session"
	signinCookie  = "ajar_signin" // double-submit CSRF token of the sign-in form
	flashCookie   = "ajar_flash"  // the one-time message of the next page
	csrfField     = "csrf"
	maxFormBytes  = 64 << 10
	csrfLabel     = "ajar web csrf v1"
)

// flash is a one-time message shown on the next page after a redirect.
type flash struct {
	Error bool   `json:"e,omitempty"`
	Text  string `json:"t"`
}

// session is the browser's session as this request brought it: the cookie's
// secret and the CSRF token derived from it.
type session struct {
	secret string
	csrf   string
}

// csrfFor derives a session's CSRF token from its secret.
func csrfFor(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(csrfLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// randomToken returns 256 random bits, base64url-encoded.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// setFlash leaves a message for the next page (a short-lived cookie).
func (h *Handler) setFlash(rq *req, f flash) {
	b, err := json.Marshal(f)
	if err != nil {
		return
	}
	setCookie(rq.w, rq.Request, flashCookie, base64.RawURLEncoding.EncodeToString(b), 300)
}

// popFlash returns and clears the message left for this page, if any.
func (h *Handler) popFlash(rq *req) *flash {
	c, err := rq.Cookie(flashCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	setCookie(rq.w, rq.Request, flashCookie, "", -1)
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	var f flash
	if err != nil || json.Unmarshal(b, &f) != nil || f.Text == "" {
		return nil
	}
	f.Text = truncateText(f.Text, 500)
	return &f
}

func truncateText(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
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

// current returns the session the request's cookie names, or nil. It is not
// authenticated yet (signedIn does that).
func (h *Handler) current(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 256 {
		return nil
	}
	return &session{secret: c.Value, csrf: csrfFor(c.Value)}
}

// startSession signs the browser in as u under a new session (never one the
// browser brought: no session fixation), ending the one it had, if any.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, u ajar.User) error {
	if old := h.current(r); old != nil {
		if ou, err := h.ids.Authenticate(r.Context(), old.secret); err == nil {
			if err := h.ids.Logout(r.Context(), ou); err != nil && ajar.ErrorCode(err) != ajar.ECONFLICT {
				return err
			}
		}
	}
	secret, _, err := h.ids.SignIn(r.Context(), identity.SignIn{
		Kind: ajar.SessionWeb, UserID: u.ID, Name: truncateText(r.UserAgent(), 200), Source: "token", Parent: u.Session,
	})
	if err != nil {
		return err
	}
	setCookie(w, r, sessionCookie, secret, 0)
	return nil
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
	w       http.ResponseWriter
	me      ajar.Caller
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
	u, err := h.ids.Authenticate(r.Context(), ss.secret)
	if err == nil {
		var me ajar.Caller
		if me, err = h.core.WhoAmI(r.Context(), u); err == nil {
			me.User = u // with its session id
			return &req{Request: r, w: w, me: me, session: ss}, true
		}
	}
	if code := ajar.ErrorCode(err); code != ajar.EUNAUTH {
		h.fail(w, r, nil, err)
		return nil, false
	}
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
