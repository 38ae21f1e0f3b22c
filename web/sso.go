package web

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity/login"
)

// Single sign-on pages (docs/sso.md). The flows themselves are in package
// identity/login; these handlers only carry the browser through them.
//
//	GET  /auth/oidc/start?next=PATH      web sign-in: straight to the IdP, no page in between
//	GET  /auth/oidc/start?cli_port=...   "ajar login": the same, ending on the CLI's loopback port
//	GET  /auth/oidc/start?mfa=1&next=P   step-up: re-authenticate at the IdP with a second factor
//	GET  /auth/oidc/callback             the one redirect URI registered at the IdP
//	GET  /auth/device[?code=C]           "ajar login --headless": confirm the code shown in the terminal
//	POST /auth/device                    then sign in at the IdP
//	GET  /auth/device/done               "go back to your terminal"
//
// The flow's state is bound to the browser that began it by a random cookie
// (bindCookie). It is SameSite=Lax, unlike the session cookie: the IdP's
// redirect back is a cross-site navigation, on which a Strict cookie is not sent.

// Login is the sign-in flows (*login.Service); Options.Login. Nil: no single
// sign-on, and the sign-in page offers tokens only.
type Login interface {
	Start(ctx context.Context, b login.Begin) (string, error)
	Finish(ctx context.Context, cb login.Callback) (*login.Done, error)
	// AuthOrigin is the IdP's origin, where Start's URLs lead.
	AuthOrigin() string
}

var _ Login = (*login.Service)(nil)

const (
	bindCookie     = "ajar_oidc"
	bindCookiePath = "/auth/"
	bindMaxAge     = 600 // the server's state lives 10 minutes
)

func (h *Handler) ssoRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /auth/oidc/start", h.handleOIDCStart)
	mux.HandleFunc("GET /auth/oidc/callback", h.handleOIDCCallback)
	mux.HandleFunc("GET /auth/device", h.handleDevice)
	mux.HandleFunc("POST /auth/device", h.handleDevicePost)
	mux.HandleFunc("GET /auth/device/done", h.handleDeviceDone)
}

// noSSO answers when the server has no single sign-on.
func (h *Handler) noSSO(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusNotFound, "error", &view{Title: "No single sign-on", Data: errorPage{
		Status: http.StatusNotFound, Message: "This server has no single sign-on configured (identity.oidc in its policy). Sign in with an API token.",
	}})
}

// bind sets a fresh binding cookie and returns its value.
func bind(w http.ResponseWriter, r *http.Request) string {
	v := randomToken()
	http.SetCookie(w, &http.Cookie{
		Name: bindCookie, Value: v, Path: bindCookiePath, MaxAge: bindMaxAge,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode,
	})
	return v
}

func (h *Handler) handleOIDCStart(w http.ResponseWriter, r *http.Request) {
	if h.opts.Login == nil {
		h.noSSO(w, r)
		return
	}
	q := r.URL.Query()
	b := login.Begin{Purpose: login.ForWeb, Next: localPath(q.Get("next"), "/")}
	if old := h.current(r); old != nil {
		if u, err := h.ids.Authenticate(r.Context(), old.secret); err == nil {
			b.Previous = ajar.User{ID: u.ID, Session: u.Session}
		}
	}
	switch {
	case q.Has("cli_port"):
		port, err := strconv.Atoi(q.Get("cli_port"))
		if err != nil {
			port = -1
		}
		b = login.Begin{Purpose: login.ForCLI, CLIPort: port, CLIChallenge: q.Get("cli_challenge"), CLIState: q.Get("cli_state")}
	case q.Get("mfa") == "1":
		rq, ok := h.signedIn(w, r)
		if !ok {
			return
		}
		b = login.Begin{Purpose: login.ForStepUp, SessionID: rq.me.User.Session, UserID: rq.me.User.ID, Next: b.Next}
	}
	b.Binding = bind(w, r)
	to, err := h.opts.Login.Start(r.Context(), b)
	if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusFound)
}

func (h *Handler) handleOIDCCallback(w http.ResponseWriter, r *http.Request) {
	if h.opts.Login == nil {
		h.noSSO(w, r)
		return
	}
	q := r.URL.Query()
	cb := login.Callback{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), ErrorDescription: q.Get("error_description")}
	if c, err := r.Cookie(bindCookie); err == nil {
		cb.Binding = c.Value
	}
	http.SetCookie(w, &http.Cookie{Name: bindCookie, Value: "", Path: bindCookiePath, MaxAge: -1, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	done, err := h.opts.Login.Finish(r.Context(), cb)
	if err != nil {
		if c := ajar.ErrorCode(err); c != ajar.EUNAUTH && c != ajar.EFORBIDDEN && c != ajar.EINVALID {
			h.fail(w, r, nil, err)
			return
		}
		h.render(w, r, http.StatusUnauthorized, "error", &view{Title: "Sign-in refused", Data: errorPage{
			Status: http.StatusUnauthorized, Message: "Sign-in refused: " + ajar.ErrorMessage(err),
		}})
		return
	}
	switch done.Purpose {
	case login.ForWeb:
		h.signInBrowser(w, r, done.Secret, done.Previous)
		h.bounce(w, r, localPath(done.Redirect, "/access"))
	case login.ForCLI:
		// The CLI's own loopback listener; login built it from a checked port.
		if !strings.HasPrefix(done.Redirect, "http://127.0.0.1:") {
			h.fail(w, r, nil, ajar.Errorf(ajar.EINTERNAL, "unexpected CLI redirect"))
			return
		}
		http.Redirect(w, r, done.Redirect, http.StatusFound)
	default: // step-up, device
		h.bounce(w, r, localPath(done.Redirect, "/access"))
	}
}

// bounce sends the browser to a local path after the IdP's cross-site redirect.
// A plain 303 would arrive as a cross-site navigation, without the Strict session
// cookie; a page that reloads itself to the path makes a same-site one.
func (h *Handler) bounce(w http.ResponseWriter, r *http.Request, path string) {
	w.Header().Set("Refresh", "0; url="+path)
	h.render(w, r, http.StatusOK, "bounce", &view{Title: "Signing in", Data: path})
}

// devicePage is the device confirmation page.
type devicePage struct {
	Code  string
	Error string
}

func (h *Handler) handleDevice(w http.ResponseWriter, r *http.Request) {
	if h.opts.Login == nil {
		h.noSSO(w, r)
		return
	}
	h.renderDevice(w, r, http.StatusOK, devicePage{Code: clipCode(r.URL.Query().Get("code"))})
}

func (h *Handler) renderDevice(w http.ResponseWriter, r *http.Request, status int, p devicePage) {
	// The form's answer redirects to the IdP: form-action must allow it, or
	// the browser blocks the redirect.
	if o := h.opts.Login.AuthOrigin(); o != "" && !strings.ContainsAny(o, " ;,'\"\r\n") {
		w.Header().Set("Content-Security-Policy", strings.Replace(contentSecurityPolicy, "form-action 'self'", "form-action 'self' "+o, 1))
	}
	token := randomToken()
	setCookie(w, r, signinCookie, token, 3600)
	h.render(w, r, status, "device", &view{Title: "Sign in the ajar CLI", CSRF: token, Data: p})
}

func (h *Handler) handleDevicePost(w http.ResponseWriter, r *http.Request) {
	if h.opts.Login == nil {
		h.noSSO(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, nil, ajar.Errorf(ajar.EINVALID, "the form could not be read"))
		return
	}
	c, err := r.Cookie(signinCookie)
	if !sameOrigin(r) || err != nil || !tokensEqual(r.PostForm.Get(csrfField), c.Value) {
		h.refuse(w, r, "This form is missing its security token or it has expired. Reload the page and try again.")
		return
	}
	code := clipCode(r.PostForm.Get("code"))
	to, err := h.opts.Login.Start(r.Context(), login.Begin{Purpose: login.ForDevice, UserCode: code, Binding: bind(w, r)})
	if ajar.ErrorCode(err) == ajar.EINVALID {
		h.renderDevice(w, r, http.StatusBadRequest, devicePage{Code: code, Error: ajar.ErrorMessage(err)})
		return
	} else if err != nil {
		h.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, signinCookie, "", -1)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (h *Handler) handleDeviceDone(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "device-done", &view{Title: "Signed in"})
}

// clipCode keeps a user code short and printable for the form.
func clipCode(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 16 {
		s = s[:16]
	}
	return s
}

// ssoStartURL is the "Sign in with SSO" link for the sign-in page.
func ssoStartURL(next string) string {
	return "/auth/oidc/start?next=" + url.QueryEscape(next)
}

// signInBrowser gives the browser the cookie of a session the IdP vouched
// for, ending the session it had, if any (no session fixation, no two sessions
// in one browser): prev, the one it had when the sign-in began (the callback,
// a cross-site navigation from the IdP's page, usually comes without the
// SameSite=Strict cookie), or the one its cookie names.
func (h *Handler) signInBrowser(w http.ResponseWriter, r *http.Request, secret string, prev ajar.User) {
	if old := h.current(r); prev.Session == "" && old != nil {
		if ou, err := h.ids.Authenticate(r.Context(), old.secret); err == nil {
			prev = ou
		}
	}
	if prev.Session != "" {
		if err := h.ids.Logout(r.Context(), prev); err != nil && ajar.ErrorCode(err) != ajar.ECONFLICT {
			h.log.WarnContext(r.Context(), "end the previous web session", "err", err)
		}
	}
	setCookie(w, r, sessionCookie, secret, 0)
}
