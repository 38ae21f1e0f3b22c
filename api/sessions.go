package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
)

// Identity is what the API needs of *identity.Service: authentication, API
// tokens and sessions. Errors are *ajar.Error values, as with Core.
type Identity interface {
	// Authenticate returns the user of a bearer token or session secret, or EUNAUTH.
	Authenticate(ctx context.Context, secret string) (ajar.User, error)
	CreateToken(ctx context.Context, actor ajar.User, userID, name string, ttl time.Duration) (string, *ajar.Session, error)
	List(ctx context.Context, actor ajar.User, f ajar.SessionFilter) ([]*ajar.Session, error)
	Revoke(ctx context.Context, actor ajar.User, id string) error
	Logout(ctx context.Context, u ajar.User) error
	Current(ctx context.Context, u ajar.User) (*ajar.Session, error)
}

var _ Identity = (*identity.Service)(nil)

// SessionInfo is a session or API token as the API shows it: never its
// secret nor the secret's hash.
type SessionInfo struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	User       string     `json:"user"`
	Name       string     `json:"name"`
	Groups     []string   `json:"groups,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"` // null: never used
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
}

func sessionInfo(s *ajar.Session) SessionInfo {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return SessionInfo{ID: s.ID, Kind: s.Kind, User: s.UserID, Name: s.Name, Groups: s.Groups,
		CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, LastUsedAt: opt(s.LastUsedAt),
		RevokedAt: opt(s.RevokedAt), RevokedBy: s.RevokedBy}
}

// CreateTokenInput is the body of POST /v1/tokens.
type CreateTokenInput struct {
	User string `json:"user"`
	Name string `json:"name,omitempty"`
	TTL  string `json:"ttl,omitempty"` // "720h" or "90d"; empty: 90 days
}

// CreatedToken is the answer of POST /v1/tokens: the token is shown once.
type CreatedToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

type sessionsResponse struct {
	Sessions []SessionInfo `json:"sessions"`
}

type tokensResponse struct {
	Tokens []SessionInfo `json:"tokens"`
}

// WhoAmI is the answer of GET /v1/whoami: the caller, whether they are an
// admin, and the session or token they called with.
type WhoAmI struct {
	ajar.User
	Admin   bool         `json:"admin"`
	Session *SessionInfo `json:"session,omitempty"`
}

func (s *Server) sessionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tokens", s.authed(s.handleCreateToken))
	mux.HandleFunc("GET /v1/tokens", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		s.handleListSessions(w, r, u, []string{ajar.SessionToken})
	}))
	mux.HandleFunc("DELETE /v1/tokens/{id}", s.authed(s.handleRevokeSession))
	mux.HandleFunc("POST /v1/tokens/{id}/revoke", s.authed(s.handleRevokeSession))
	mux.HandleFunc("GET /v1/sessions", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		s.handleListSessions(w, r, u, []string{ajar.SessionWeb, ajar.SessionCLI})
	}))
	mux.HandleFunc("POST /v1/sessions/{id}/revoke", s.authed(s.handleRevokeSession))
	mux.HandleFunc("POST /v1/auth/logout", s.authed(s.handleLogout))
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request, u ajar.User) {
	var in CreateTokenInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	ttl, err := identity.ParseTTL(in.TTL)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tok, sess, err := s.ids.CreateToken(r.Context(), u, in.User, in.Name, ttl)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusCreated, CreatedToken{Token: tok, ID: sess.ID, User: sess.UserID, ExpiresAt: sess.ExpiresAt})
}

func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request, u ajar.User, kinds []string) {
	q := r.URL.Query()
	for k := range q {
		if k != "user" && k != "all" {
			s.writeError(w, r, ajar.FieldErrorf(k, "unknown query parameter"))
			return
		}
	}
	f := ajar.SessionFilter{Kinds: kinds, UserID: q.Get("user"), IncludeEnded: q.Get("all") == "true"}
	if f.UserID != "" {
		if err := checkID("user", f.UserID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	list, err := s.ids.List(r.Context(), u, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]SessionInfo, 0, len(list))
	for _, x := range list {
		out = append(out, sessionInfo(x))
	}
	if kinds[0] == ajar.SessionToken {
		s.writeJSON(w, r, http.StatusOK, tokensResponse{Tokens: out})
		return
	}
	s.writeJSON(w, r, http.StatusOK, sessionsResponse{Sessions: out})
}

func (s *Server) handleRevokeSession(w http.ResponseWriter, r *http.Request, u ajar.User) {
	var body struct{}
	id, ok := s.actionInput(w, r, &body)
	if !ok {
		return
	}
	if err := s.ids.Revoke(r.Context(), u, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"id": id, "revoked": true})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, u ajar.User) {
	if err := s.ids.Logout(r.Context(), u); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]any{"logged_out": true})
}

// Client methods.

// CreateToken mints an API token (admins). The token is in the answer only.
func (c *Client) CreateToken(ctx context.Context, in CreateTokenInput) (*CreatedToken, error) {
	var out CreatedToken
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTokens lists API tokens, one user's when user is not empty; with all,
// revoked and expired ones too.
func (c *Client) ListTokens(ctx context.Context, user string, all bool) ([]SessionInfo, error) {
	var out tokensResponse
	if err := c.do(ctx, http.MethodGet, "/v1/tokens", listQuery(user, all), nil, &out); err != nil {
		return nil, err
	}
	return out.Tokens, nil
}

// RevokeToken revokes an API token by id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, &map[string]any{})
}

// ListSessions lists web and CLI sessions, one user's when user is not empty.
func (c *Client) ListSessions(ctx context.Context, user string, all bool) ([]SessionInfo, error) {
	var out sessionsResponse
	if err := c.do(ctx, http.MethodGet, "/v1/sessions", listQuery(user, all), nil, &out); err != nil {
		return nil, err
	}
	return out.Sessions, nil
}

// RevokeSession ends a web or CLI session by id.
func (c *Client) RevokeSession(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/sessions/"+url.PathEscape(id)+"/revoke", nil, nil, &map[string]any{})
}

// Logout ends the session or token the client calls with.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/auth/logout", nil, nil, &map[string]any{})
}

func listQuery(user string, all bool) url.Values {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if all {
		q.Set("all", "true")
	}
	return q
}
