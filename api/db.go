package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/credentials"
)

// The database routes.
//
//	POST /v1/requests/{id}/db-credentials   a fresh database login for the caller's active request (postgres-role, mysql-user)
//
// The password is a secret: the response is marked no-store, and the server
// keeps no copy.

// DBLoginCore is what the database routes need from the core, beyond Core. A
// core without it (a test fake) answers them with not_found.
type DBLoginCore interface {
	IssueDBLogin(ctx context.Context, u ajar.User, id string) (*credentials.DBLoginOutput, error)
}

// dbRoutes adds the database routes to mux.
func (s *Server) dbRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/requests/{id}/db-credentials", s.authed(s.handleDBCredentials))
}

func (s *Server) handleDBCredentials(w http.ResponseWriter, r *http.Request, u ajar.User) {
	id, ok := s.actionInput(w, r, &emptyBody{})
	if !ok {
		return
	}
	c, isCore := s.core.(DBLoginCore)
	if !isCore {
		s.writeError(w, r, ajar.Errorf(ajar.ENOTFOUND, "this server does not give database logins"))
		return
	}
	out, err := c.IssueDBLogin(r.Context(), u, id)
	if err == nil && out == nil {
		err = errors.New("core returned no login")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusOK, out)
}

// IssueDBLogin sets a fresh password on the database login of the caller's
// active request id and returns it. It is shown once: keep it only as long as
// needed.
func (c *Client) IssueDBLogin(ctx context.Context, id string) (*credentials.DBLoginOutput, error) {
	path, err := requestPath(id, "db-credentials")
	if err != nil {
		return nil, err
	}
	var out credentials.DBLoginOutput
	if err := c.do(ctx, http.MethodPost, path, nil, emptyBody{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
