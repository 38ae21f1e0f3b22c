package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/credentials"
)

// The AWS routes.
//
//	POST /v1/requests/{id}/credentials   short-lived cloud credentials for the caller's active request (aws-sts)
//
// Credentials are secrets: the response is marked no-store, and the server keeps
// no copy.

// CredentialsCore is what the AWS routes need from the core, beyond Core. A core
// without it (a test fake) answers them with not_found.
type CredentialsCore interface {
	IssueCredentials(ctx context.Context, u ajar.User, id string) (*credentials.Output, error)
}

var _ CredentialsCore = (*credentials.Service)(nil)

// awsRoutes adds the AWS routes to mux.
func (s *Server) awsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/requests/{id}/credentials", s.authed(s.handleCredentials))
}

func (s *Server) handleCredentials(w http.ResponseWriter, r *http.Request, u ajar.User) {
	id, ok := s.actionInput(w, r, &emptyBody{})
	if !ok {
		return
	}
	c, isCore := s.core.(CredentialsCore)
	if !isCore {
		s.writeError(w, r, ajar.Errorf(ajar.ENOTFOUND, "this server does not vend credentials"))
		return
	}
	out, err := c.IssueCredentials(r.Context(), u, id)
	if err == nil && out == nil {
		err = errors.New("core returned no credentials")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusOK, out)
}

// IssueCredentials returns new short-lived cloud credentials for the caller's
// active request id. They are shown once: keep them only as long as needed.
func (c *Client) IssueCredentials(ctx context.Context, id string) (*credentials.Output, error) {
	path, err := requestPath(id, "credentials")
	if err != nil {
		return nil, err
	}
	var out credentials.Output
	if err := c.do(ctx, http.MethodPost, path, nil, emptyBody{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
