package web

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity/mfa"
)

// Security keys (WebAuthn) and the MFA step-up (package identity/mfa).
//
//	GET  /keys                    the person's keys, with "Add a security key"
//	POST /keys/register/begin     JSON: options for navigator.credentials.create
//	POST /keys/register/finish    JSON: {name, credential} -> the key is stored
//	POST /keys/{id}/remove        form: remove a key
//	POST /mfa/begin               JSON: options for navigator.credentials.get
//	POST /mfa/finish              JSON: {credential} -> the session is stepped up
//
// The JSON routes are called by static/webauthn.js with the session's CSRF
// token in the X-CSRF-Token header, and only from this site's pages.

// MFA is the second factor (*mfa.Service with identity's MarkMFA; see
// cmd/ajar/serve.go). Nil: no security keys (no server.public_url).
type MFA interface {
	List(ctx context.Context, u ajar.User) ([]mfa.Key, error)
	Remove(ctx context.Context, u ajar.User, id string) error
	BeginRegistration(ctx context.Context, u ajar.User) (json.RawMessage, error)
	FinishRegistration(ctx context.Context, u ajar.User, name string, credential []byte) (*mfa.Key, error)
	BeginAssertion(ctx context.Context, u ajar.User) (json.RawMessage, error)
	FinishAssertion(ctx context.Context, u ajar.User, credential []byte) error
	// MarkMFA records the second factor on u's session.
	MarkMFA(ctx context.Context, u ajar.User) error
}

func (h *Handler) keyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /keys", h.page(h.handleKeys))
	mux.HandleFunc("POST /keys/register/begin", h.jsonAction(h.handleKeyBegin))
	mux.HandleFunc("POST /keys/register/finish", h.jsonAction(h.handleKeyFinish))
	mux.HandleFunc("POST /keys/{id}/remove", h.action(h.handleKeyRemove))
	mux.HandleFunc("POST /mfa/begin", h.jsonAction(h.handleMFABegin))
	mux.HandleFunc("POST /mfa/finish", h.jsonAction(h.handleMFAFinish))
}

// keysPage is the Security keys page's data.
type keysPage struct {
	Keys    []mfa.Key
	Enabled bool
}

func (h *Handler) handleKeys(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Security keys", "keys")
	p := keysPage{Enabled: h.opts.MFA != nil}
	if h.opts.MFA != nil {
		keys, err := h.opts.MFA.List(rq.Context(), rq.me.User)
		if err != nil {
			h.fail(w, rq.Request, v, err)
			return
		}
		p.Keys = keys
	}
	v.Data = p
	h.render(w, rq.Request, http.StatusOK, "keys", v)
}

func (h *Handler) handleKeyRemove(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Security keys", "keys")
	if h.opts.MFA == nil {
		h.failAction(w, rq, v, ajar.Errorf(ajar.ENOTFOUND, "security keys are not enabled on this server"), "/keys")
		return
	}
	if err := h.opts.MFA.Remove(rq.Context(), rq.me.User, rq.PathValue("id")); err != nil {
		h.failAction(w, rq, v, err, "/keys")
		return
	}
	h.setFlash(rq, flash{Text: "The key was removed."})
	http.Redirect(w, rq.Request, "/keys", http.StatusSeeOther)
}

// jsonAction wraps the JSON routes of static/webauthn.js: a JSON body from one
// of our own pages, with the session's CSRF token in X-CSRF-Token. Errors are
// answered as the API's error envelope.
func (h *Handler) jsonAction(fn func(*req, []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		answer := func(status int, v any) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(v)
		}
		fail := func(err error) {
			code := ajar.ErrorCode(err)
			status := statusOf(code)
			msg := ajar.ErrorMessage(err)
			if status == http.StatusInternalServerError {
				h.log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
				code, msg = ajar.EINTERNAL, "internal error"
			}
			answer(status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
		}
		if h.opts.MFA == nil {
			fail(ajar.Errorf(ajar.ENOTFOUND, "security keys are not enabled on this server (it needs server.public_url)"))
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			fail(ajar.Errorf(ajar.EINVALID, "send application/json"))
			return
		}
		ss := h.current(r)
		switch {
		case !sameOrigin(r) || r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Site") == "":
			fail(ajar.Errorf(ajar.EFORBIDDEN, "this call must come from ajar's own pages"))
			return
		case ss == nil:
			fail(ajar.Errorf(ajar.EUNAUTH, "you are not signed in"))
			return
		case !tokensEqual(r.Header.Get("X-CSRF-Token"), ss.csrf):
			fail(ajar.Errorf(ajar.EFORBIDDEN, "missing or stale security token; reload the page"))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
		if err != nil {
			fail(ajar.Errorf(ajar.EINVALID, "the body could not be read (64 KiB at most)"))
			return
		}
		rq, ok := h.signedInQuiet(w, r)
		if !ok {
			fail(ajar.Errorf(ajar.EUNAUTH, "your sign-in is no longer valid; sign in again"))
			return
		}
		out, err := fn(rq, body)
		if err != nil {
			fail(err)
			return
		}
		answer(http.StatusOK, out)
	}
}

func (h *Handler) handleKeyBegin(rq *req, _ []byte) (any, error) {
	return h.opts.MFA.BeginRegistration(rq.Context(), rq.me.User)
}

func (h *Handler) handleKeyFinish(rq *req, body []byte) (any, error) {
	var in struct {
		Name       string          `json:"name"`
		Credential json.RawMessage `json:"credential"`
	}
	if err := json.Unmarshal(body, &in); err != nil || len(in.Credential) == 0 {
		return nil, ajar.Errorf(ajar.EINVALID, "send {name, credential}")
	}
	return h.opts.MFA.FinishRegistration(rq.Context(), rq.me.User, in.Name, in.Credential)
}

func (h *Handler) handleMFABegin(rq *req, _ []byte) (any, error) {
	return h.opts.MFA.BeginAssertion(rq.Context(), rq.me.User)
}

func (h *Handler) handleMFAFinish(rq *req, body []byte) (any, error) {
	var in struct {
		Credential json.RawMessage `json:"credential"`
	}
	if err := json.Unmarshal(body, &in); err != nil || len(in.Credential) == 0 {
		return nil, ajar.Errorf(ajar.EINVALID, "send {credential}")
	}
	if err := h.opts.MFA.FinishAssertion(rq.Context(), rq.me.User, in.Credential); err != nil {
		return nil, err
	}
	if err := h.opts.MFA.MarkMFA(rq.Context(), rq.me.User); err != nil {
		return nil, err
	}
	return map[string]bool{"verified": true}, nil
}

// signedInQuiet is signedIn for the JSON routes: it answers nothing itself.
func (h *Handler) signedInQuiet(w http.ResponseWriter, r *http.Request) (*req, bool) {
	ss := h.current(r)
	if ss == nil {
		return nil, false
	}
	u, err := h.ids.Authenticate(r.Context(), ss.secret)
	if err != nil {
		return nil, false
	}
	me, err := h.core.WhoAmI(r.Context(), u)
	if err != nil {
		return nil, false
	}
	me.User = u // with its session id and second factor
	return &req{Request: r, w: w, me: me, session: ss}, true
}
