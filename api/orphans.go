package api

import (
	"context"
	"net/http"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/reconcile"
)

// OrphansCore lists the open requests whose requester lost the right to them
// (package reconcile), for admins:
//
//	GET /v1/orphans  → {"orphans": [{"request": Request, "why": "..."}]}
//
// The server serves it only when its Core implements it.
type OrphansCore interface {
	ListOrphans(ctx context.Context, u ajar.User) ([]reconcile.Orphan, error)
}

var _ OrphansCore = (*reconcile.Checker)(nil)

type orphansResponse struct {
	Orphans []reconcile.Orphan `json:"orphans"`
}

func (s *Server) orphanRoutes(mux *http.ServeMux) {
	oc, ok := s.core.(OrphansCore)
	if !ok {
		return
	}
	mux.HandleFunc("GET /v1/orphans", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		if _, err := parseQuery(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		out, err := oc.ListOrphans(r.Context(), u)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, r, http.StatusOK, orphansResponse{Orphans: out})
	}))
}

// Orphans lists the open requests whose requester lost the right to them (admins).
func (c *Client) Orphans(ctx context.Context) ([]reconcile.Orphan, error) {
	var out orphansResponse
	if err := c.do(ctx, http.MethodGet, "/v1/orphans", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Orphans, nil
}
