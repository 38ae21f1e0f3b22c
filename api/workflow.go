package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/readmodel"
)

// WorkflowCore is the part of the core behind the workflow routes: extend,
// break-glass and its reviews, explain (dry run); the review list and explain
// are the read model's (readmodel.Reader).
// The server serves those routes only when its Core also implements it.
type WorkflowCore interface {
	Extend(ctx context.Context, u ajar.User, id string, in ajar.ExtendInput) (*ajar.ExtendOutput, error)
	Breakglass(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error)
	ListReviews(ctx context.Context, u ajar.User, in readmodel.ReviewsInput) (*readmodel.ReviewList, error)
	CloseReview(ctx context.Context, u ajar.User, id, comment string) (*ajar.ReviewTask, error)
	Explain(ctx context.Context, u ajar.User, in readmodel.ExplainInput) (*policy.Explanation, error)
}

// EvidenceCore is the read model behind the evidence route (readmodel.Reader).
// The server serves that route only when its Core also implements it.
type EvidenceCore interface {
	EvidenceReport(ctx context.Context, u ajar.User, id string) (*readmodel.Evidence, error)
}

var _ EvidenceCore = (*readmodel.Reader)(nil)

type (
	reviewBody struct {
		Comment string `json:"comment"`
	}
	reviewsResponse struct {
		Reviews []ajar.ReviewTask `json:"reviews"`
		// NextCursor is where the next page starts; absent on the last page.
		NextCursor string `json:"next_cursor,omitempty"`
	}
)

// workflowRoutes adds the workflow routes when the core has them:
//
//	POST /v1/requests/{id}/extend     {"by": "30m", "reason": "..."}  → {"request", "extension"}
//	POST /v1/breakglass               a new request's fields          → the request (201)
//	GET  /v1/reviews[?state=open|closed|all]                           → {"reviews": [...]}
//	POST /v1/requests/{id}/review     {"comment": "..."}              → the closed review
//	POST /v1/explain                  a new request's fields and "as" → the explanation
//	POST /v1/requests?dry_run=true[&as=USER]  (see handleCreateRequest) → the explanation
//
// and the evidence route when the core has the read model (EvidenceCore):
//
//	GET  /v1/requests/{id}/evidence[?format=markdown]                  → the evidence
func (s *Server) workflowRoutes(mux *http.ServeMux) {
	wc, ok := s.core.(WorkflowCore)
	if !ok {
		return
	}
	mux.HandleFunc("POST /v1/requests/{id}/extend", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		var body ajar.ExtendInput
		id, ok := s.actionInput(w, r, &body)
		if !ok {
			return
		}
		out, err := wc.Extend(r.Context(), u, id, body)
		if err == nil && (out == nil || out.Request == nil) {
			err = errors.New("core returned no request")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Request = withApprovals(out.Request)
		s.writeJSON(w, r, http.StatusOK, out)
	}))
	mux.HandleFunc("POST /v1/breakglass", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		var in ajar.CreateInput
		if err := decodeJSON(w, r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		req, err := wc.Breakglass(r.Context(), u, in)
		if err == nil && req == nil {
			err = errors.New("core returned no request")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Location", "/v1/requests/"+url.PathEscape(req.ID))
		s.writeRequest(w, r, http.StatusCreated, req)
	}))
	mux.HandleFunc("GET /v1/reviews", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		q, err := parseQuery(r, "state", "limit", "cursor")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		limit, err := q.int("limit", readmodel.MaxListLimit)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		in := readmodel.ReviewsInput{State: q.string("state"), Limit: int(limit), Cursor: q.string("cursor")}
		if err := checkCursor(in.Cursor); err != nil {
			s.writeError(w, r, err)
			return
		}
		list, err := wc.ListReviews(r.Context(), u, in)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out := reviewsResponse{Reviews: []ajar.ReviewTask{}}
		if list != nil {
			out.NextCursor = list.NextCursor
			if list.Reviews != nil {
				out.Reviews = list.Reviews
			}
		}
		s.writeJSON(w, r, http.StatusOK, out)
	}))
	mux.HandleFunc("POST /v1/requests/{id}/review", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		var body reviewBody
		id, ok := s.actionInput(w, r, &body)
		if !ok {
			return
		}
		rv, err := wc.CloseReview(r.Context(), u, id, body.Comment)
		if err == nil && rv == nil {
			err = errors.New("core returned no review")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, r, http.StatusOK, rv)
	}))
	mux.HandleFunc("POST /v1/explain", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		var in readmodel.ExplainInput
		if err := decodeJSON(w, r, &in); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.renderExplanation(w, r)(wc.Explain(r.Context(), u, in))
	}))
	ec, ok := s.core.(EvidenceCore)
	if !ok {
		return
	}
	mux.HandleFunc("GET /v1/requests/{id}/evidence", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		id := r.PathValue("id")
		if err := checkID("id", id); err != nil {
			s.writeError(w, r, err)
			return
		}
		q, err := parseQuery(r, "format")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		format := q.string("format")
		if format != "" && format != "json" && format != "markdown" {
			s.writeError(w, r, ajar.FieldErrorf("format", "must be json or markdown, not %q", format))
			return
		}
		ev, err := ec.EvidenceReport(r.Context(), u, id)
		if err == nil && ev == nil {
			err = errors.New("core returned no evidence")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if format == "markdown" {
			w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, ev.Markdown())
			return
		}
		s.writeJSON(w, r, http.StatusOK, ev)
	}))
}

// handleDryRun answers POST /v1/requests?dry_run=true: the explanation of the
// request in the body, created nowhere. ?as=USER explains it for another user
// (admins only).
func (s *Server) handleDryRun(w http.ResponseWriter, r *http.Request, u ajar.User) {
	q, err := parseQuery(r, "dry_run", "as")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if dry, err := q.bool("dry_run"); err != nil || !dry {
		s.writeError(w, r, ajar.FieldErrorf("dry_run", "must be true (leave it out to create the request)"))
		return
	}
	wc, ok := s.core.(WorkflowCore)
	if !ok {
		s.writeError(w, r, ajar.Errorf(ajar.ENOTFOUND, "this server cannot explain requests"))
		return
	}
	var in ajar.CreateInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.renderExplanation(w, r)(wc.Explain(r.Context(), u, readmodel.ExplainInput{
		Target: in.Target, Duration: in.Duration, Reason: in.Reason, Ticket: in.Ticket,
		Start: in.Start, Params: in.Params, As: q.string("as"),
	}))
}

func (s *Server) renderExplanation(w http.ResponseWriter, r *http.Request) func(*policy.Explanation, error) {
	return func(ex *policy.Explanation, err error) {
		if err == nil && ex == nil {
			err = errors.New("core returned no explanation")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, r, http.StatusOK, ex)
	}
}

// Extend asks for more time on the caller's active request id.
func (c *Client) Extend(ctx context.Context, id string, in ajar.ExtendInput) (*ajar.ExtendOutput, error) {
	path, err := requestPath(id, "extend")
	if err != nil {
		return nil, err
	}
	var out ajar.ExtendOutput
	if err := c.do(ctx, http.MethodPost, path, nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Breakglass takes access at once, without approval, where the policy allows
// the caller to.
func (c *Client) Breakglass(ctx context.Context, in ajar.CreateInput) (*ajar.Request, error) {
	var out ajar.Request
	if err := c.do(ctx, http.MethodPost, "/v1/breakglass", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Reviews lists break-glass review tasks: state "open" (or ""), "closed" or
// "all". It follows the server's pages to the last.
func (c *Client) Reviews(ctx context.Context, state string) ([]ajar.ReviewTask, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	var all []ajar.ReviewTask
	for {
		var out reviewsResponse
		if err := c.do(ctx, http.MethodGet, "/v1/reviews", q, nil, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Reviews...)
		if out.NextCursor == "" {
			return all, nil
		}
		if out.NextCursor == q.Get("cursor") {
			return nil, errors.New("list reviews: the server returned the same cursor twice")
		}
		q.Set("cursor", out.NextCursor)
	}
}

// CloseReview closes the break-glass review of request id with a comment.
func (c *Client) CloseReview(ctx context.Context, id, comment string) (*ajar.ReviewTask, error) {
	path, err := requestPath(id, "review")
	if err != nil {
		return nil, err
	}
	var out ajar.ReviewTask
	if err := c.do(ctx, http.MethodPost, path, nil, reviewBody{Comment: comment}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Explain says what the policy would do with a request, creating nothing.
func (c *Client) Explain(ctx context.Context, in readmodel.ExplainInput) (*policy.Explanation, error) {
	var out policy.Explanation
	if err := c.do(ctx, http.MethodPost, "/v1/explain", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Evidence returns the evidence of request id.
func (c *Client) Evidence(ctx context.Context, id string) (*readmodel.Evidence, error) {
	path, err := requestPath(id, "evidence")
	if err != nil {
		return nil, err
	}
	var out readmodel.Evidence
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EvidenceMarkdown returns the evidence of request id rendered as Markdown by
// the server.
func (c *Client) EvidenceMarkdown(ctx context.Context, id string) (string, error) {
	path, err := requestPath(id, "evidence")
	if err != nil {
		return "", err
	}
	b, err := c.text(ctx, path+"?format=markdown")
	return string(b), err
}
