package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// InboxCore is the read model behind what waits for a decision: the caller's
// inbox (pending requests and pending extensions they approve, and their own)
// and one request as the caller may decide on it. The server serves these
// routes only when its Core also implements it (readmodel.Reader does):
//
//	GET /v1/inbox                   → {"items": [Review...]}, longest waiting first
//	GET /v1/requests/{id}/decision  → Review: the pending extension, the step
//	                                  waiting, whether the caller may approve or
//	                                  deny now and, if not, why
type InboxCore interface {
	Inbox(ctx context.Context, u ajar.User) ([]readmodel.Review, error)
	Review(ctx context.Context, u ajar.User, id string) (*readmodel.Review, error)
}

var _ InboxCore = (*readmodel.Reader)(nil)

type inboxResponse struct {
	Items []readmodel.Review `json:"items"`
}

func (s *Server) inboxRoutes(mux *http.ServeMux) {
	ic, ok := s.core.(InboxCore)
	if !ok {
		return
	}
	mux.HandleFunc("GET /v1/inbox", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		if _, err := parseQuery(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		items, err := ic.Inbox(r.Context(), u)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if items == nil {
			items = []readmodel.Review{}
		}
		s.writeJSON(w, r, http.StatusOK, inboxResponse{Items: items})
	}))
	mux.HandleFunc("GET /v1/requests/{id}/decision", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		id := r.PathValue("id")
		if err := checkID("id", id); err != nil {
			s.writeError(w, r, err)
			return
		}
		rv, err := ic.Review(r.Context(), u, id)
		if err == nil && rv == nil {
			err = errors.New("core returned no review")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, r, http.StatusOK, rv)
	}))
}

// Inbox returns what waits for the caller's decision, and their own pending
// requests and extensions (GET /v1/inbox).
func (c *Client) Inbox(ctx context.Context) ([]readmodel.Review, error) {
	var out inboxResponse
	if err := c.do(ctx, http.MethodGet, "/v1/inbox", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Decision returns request id as the caller may decide on it, with its pending
// extension if any (GET /v1/requests/{id}/decision).
func (c *Client) Decision(ctx context.Context, id string) (*readmodel.Review, error) {
	path, err := requestPath(id, "decision")
	if err != nil {
		return nil, err
	}
	var out readmodel.Review
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
