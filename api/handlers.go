package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// MaxAuditLimit is the largest page of audit events one GET /v1/audit returns.
const MaxAuditLimit = 10000

// defaultAuditLimit is the page of GET /v1/audit without a limit.
const defaultAuditLimit = 1000

// Response bodies of the list routes. Lists are wrapped in an object so fields can
// be added later without breaking clients.
type (
	targetsResponse struct {
		Targets []readmodel.TargetInfo `json:"targets"`
	}
	requestsResponse struct {
		Requests []*ajar.Request `json:"requests"`
		// NextCursor is where the next page starts; absent on the last page.
		NextCursor string `json:"next_cursor,omitempty"`
	}
	auditResponse struct {
		Events []ajar.AuditEvent `json:"events"`
		// HasMore says that events follow this page: ask again with after set
		// to the last event's seq (a listing, in seq order) or with before set
		// to it (a search, newest first: api/audit.go).
		HasMore bool `json:"has_more"`
		// NextBefore, in a search with has_more, is the before of the next
		// page: the last event's seq, or where a search by someone who is not
		// an admin stopped reading (readmodel.AuditSearch.Before).
		NextBefore int64 `json:"next_before,omitempty"`
	}
)

// Request bodies of the action routes.
type (
	approveBody struct {
		Comment string `json:"comment"`
	}
	denyBody struct {
		Reason string `json:"reason"`
	}
	sshCertBody struct {
		PublicKey string `json:"public_key"`
	}
	emptyBody struct{}
)

// routes builds the router. Everything under /v1 needs a bearer token except the
// two public keys (the SSH CA and the audit verifier key), which hosts and auditors
// fetch without an account.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics)
	}

	mux.HandleFunc("GET /v1/ssh/ca", s.handleSSHCA)
	mux.HandleFunc("GET /v1/audit/key", s.handleAuditKey)

	mux.HandleFunc("GET /v1/whoami", s.authed(s.handleWhoAmI))
	mux.HandleFunc("GET /v1/targets", s.authed(s.handleTargets))
	mux.HandleFunc("POST /v1/requests", s.authed(s.handleCreateRequest))
	mux.HandleFunc("GET /v1/requests", s.authed(s.handleListRequests))
	mux.HandleFunc("GET /v1/requests/{id}", s.authed(s.handleGetRequest))
	mux.HandleFunc("POST /v1/requests/{id}/approve", s.authed(s.handleApprove))
	mux.HandleFunc("POST /v1/requests/{id}/deny", s.authed(s.handleDeny))
	mux.HandleFunc("POST /v1/requests/{id}/revoke", s.authed(s.handleRevoke))
	mux.HandleFunc("POST /v1/requests/{id}/cancel", s.authed(s.handleCancel))
	mux.HandleFunc("POST /v1/requests/{id}/ssh-cert", s.authed(s.handleSSHCert))
	mux.HandleFunc("GET /v1/audit", s.authed(s.handleAudit))
	mux.HandleFunc("GET /v1/audit/checkpoint", s.authed(s.handleCheckpoint))
	s.sshRoutes(mux)      // api/ssh.go
	s.workflowRoutes(mux) // api/workflow.go
	s.awsRoutes(mux)      // api/aws.go
	s.sessionRoutes(mux)  // api/sessions.go
	s.inboxRoutes(mux)    // api/inbox.go
	s.dbRoutes(mux)       // api/db.go
	s.loginRoutes(mux)    // api/login.go
	s.orphanRoutes(mux)   // api/orphans.go
	s.auditRoutes(mux)    // api/auditstream.go

	// Anything else under /v1 gets the JSON error envelope rather than the mux's
	// plain-text 404 and 405.
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/v1/" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.writeJSON(w, r, http.StatusMethodNotAllowed, errorEnvelope{Error: errorBody{
				Code:    ajar.EINVALID,
				Message: "method " + r.Method + " is not allowed here; use " + strings.Join(allowed, " or "),
			}})
			return
		}
		s.writeError(w, r, ajar.Errorf(ajar.ENOTFOUND, "no such API endpoint"))
	})
	if s.opts.Web != nil {
		mux.Handle("/", s.opts.Web)
	}
	return s.middleware(mux)
}

// authed turns a handler that needs a user into one that authenticates the bearer
// token first. Whatever the core says about a token, the client only learns that
// it was not accepted.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, ajar.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, err := bearerToken(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		u, err := s.ids.Authenticate(r.Context(), token)
		if err != nil {
			if code := ajar.ErrorCode(err); code != ajar.EINTERNAL {
				err = ajar.Errorf(ajar.EUNAUTH, "API token not accepted")
			}
			s.writeError(w, r, err)
			return
		}
		noteUser(r, u.ID) // for the access log (api/access.go)
		h(w, r, u)
	}
}

// bearerToken returns the token of an "Authorization: Bearer TOKEN" header.
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", ajar.Errorf(ajar.EUNAUTH, "missing bearer token in the Authorization header")
	case 1:
	default:
		return "", ajar.Errorf(ajar.EUNAUTH, "more than one Authorization header")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", ajar.Errorf(ajar.EUNAUTH, "the Authorization header must be \"Bearer TOKEN\"")
	}
	return token, nil
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			s.log.WarnContext(r.Context(), "not ready", "err", err)
			writeText(w, http.StatusServiceUnavailable, "not ready")
			return
		}
	}
	writeText(w, http.StatusOK, "ok")
}

func (s *Server) handleSSHCA(w http.ResponseWriter, r *http.Request) {
	ca, err := s.core.SSHCA(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, ca)
}

func (s *Server) handleAuditKey(w http.ResponseWriter, r *http.Request) {
	key := s.core.AuditKey()
	if key == "" {
		s.writeError(w, r, ajar.Errorf(ajar.ENOTFOUND, "the audit verifier key is not available"))
		return
	}
	writeText(w, http.StatusOK, key)
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request, u ajar.User) {
	id, err := s.core.WhoAmI(r.Context(), u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := WhoAmI{User: id.User, Admin: id.Admin}
	if out.Groups == nil {
		out.Groups = []string{}
	}
	if u.Session != "" {
		sess, err := s.ids.Current(r.Context(), u)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		info := sessionInfo(sess)
		out.Session = &info
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleTargets(w http.ResponseWriter, r *http.Request, u ajar.User) {
	targets, err := s.core.Targets(r.Context(), u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if targets == nil {
		targets = []readmodel.TargetInfo{}
	}
	s.writeJSON(w, r, http.StatusOK, targetsResponse{Targets: targets})
}

func (s *Server) handleCreateRequest(w http.ResponseWriter, r *http.Request, u ajar.User) {
	if r.URL.RawQuery != "" {
		s.handleDryRun(w, r, u) // api/workflow.go: ?dry_run=true explains instead
		return
	}
	var in ajar.CreateInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	var req *ajar.Request
	var cert *ajar.SSHCertOutput
	var err error
	if in.SSHPublicKey != "" {
		// The certificate in the same response and, for ssh-cert targets,
		// in the same commit (package sshaccess).
		var core SSHCore
		if core, err = s.sshCore(); err == nil {
			req, cert, err = core.CreateWithCert(r.Context(), u, in, in.SSHPublicKey)
		}
	} else {
		req, err = s.core.CreateRequest(r.Context(), u, in)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req == nil {
		s.writeError(w, r, errors.New("core returned no request"))
		return
	}
	w.Header().Set("Location", "/v1/requests/"+url.PathEscape(req.ID))
	s.writeJSON(w, r, http.StatusCreated, ajar.CreateOutput{Request: withApprovals(req), SSHCert: cert})
}

func (s *Server) handleListRequests(w http.ResponseWriter, r *http.Request, u ajar.User) {
	q, err := parseQuery(r, "mine", "state", "limit", "cursor")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var in readmodel.ListInput
	if in.Mine, err = q.bool("mine"); err != nil {
		s.writeError(w, r, err)
		return
	}
	limit, err := q.int("limit", readmodel.MaxListLimit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in.Limit, in.Cursor = int(limit), q.string("cursor")
	if err := checkCursor(in.Cursor); err != nil {
		s.writeError(w, r, err)
		return
	}
	in.State = ajar.State(q.string("state"))
	if in.State != "" && !in.State.Valid() {
		s.writeError(w, r, ajar.FieldErrorf("state", "unknown state %q (one of: %s)", in.State, stateList()))
		return
	}
	list, err := s.core.ListRequests(r.Context(), u, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		s.writeError(w, r, errors.New("core returned no list"))
		return
	}
	out := make([]*ajar.Request, 0, len(list.Requests))
	for _, req := range list.Requests {
		if req != nil {
			out = append(out, withApprovals(req))
		}
	}
	s.writeJSON(w, r, http.StatusOK, requestsResponse{Requests: out, NextCursor: list.NextCursor})
}

func (s *Server) handleGetRequest(w http.ResponseWriter, r *http.Request, u ajar.User) {
	id := r.PathValue("id")
	if err := checkID("id", id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.renderRequest(w, r, http.StatusOK)(s.core.GetRequest(r.Context(), u, id))
}

func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request, u ajar.User) {
	var body approveBody
	id, ok := s.actionInput(w, r, &body)
	if ok {
		s.renderRequest(w, r, http.StatusOK)(s.core.Approve(r.Context(), u, id, body.Comment))
	}
}

func (s *Server) handleDeny(w http.ResponseWriter, r *http.Request, u ajar.User) {
	var body denyBody
	id, ok := s.actionInput(w, r, &body)
	if ok {
		s.renderRequest(w, r, http.StatusOK)(s.core.Deny(r.Context(), u, id, body.Reason))
	}
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, u ajar.User) {
	id, ok := s.actionInput(w, r, &emptyBody{})
	if ok {
		s.renderRequest(w, r, http.StatusOK)(s.core.Revoke(r.Context(), u, id))
	}
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request, u ajar.User) {
	id, ok := s.actionInput(w, r, &emptyBody{})
	if ok {
		s.renderRequest(w, r, http.StatusOK)(s.core.Cancel(r.Context(), u, id))
	}
}

func (s *Server) handleSSHCert(w http.ResponseWriter, r *http.Request, u ajar.User) {
	var body sshCertBody
	id, ok := s.actionInput(w, r, &body)
	if !ok {
		return
	}
	if strings.TrimSpace(body.PublicKey) == "" {
		s.writeError(w, r, ajar.FieldErrorf("public_key", "is required"))
		return
	}
	out, err := s.core.IssueSSHCert(r.Context(), u, id, []byte(body.PublicKey))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out == nil {
		s.writeError(w, r, errors.New("core returned no certificate"))
		return
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleCheckpoint(w http.ResponseWriter, r *http.Request, u ajar.User) {
	note, err := s.core.Checkpoint(r.Context(), u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(note) // a signed note ends with its signatures' newline; keep it byte for byte
}

// actionInput reads the {id} path value and the JSON body of a POST on a request.
// It renders the error and returns false if either is bad.
func (s *Server) actionInput(w http.ResponseWriter, r *http.Request, body any) (string, bool) {
	id := r.PathValue("id")
	if err := checkID("id", id); err != nil {
		s.writeError(w, r, err)
		return "", false
	}
	if err := decodeJSON(w, r, body); err != nil {
		s.writeError(w, r, err)
		return "", false
	}
	return id, true
}

// renderRequest returns a function that renders a core call's (request, error)
// result, so handlers can pass the call straight through.
func (s *Server) renderRequest(w http.ResponseWriter, r *http.Request, status int) func(*ajar.Request, error) {
	return func(req *ajar.Request, err error) {
		if err == nil && req == nil {
			err = errors.New("core returned no request")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeRequest(w, r, status, req)
	}
}

func (s *Server) writeRequest(w http.ResponseWriter, r *http.Request, status int, req *ajar.Request) {
	s.writeJSON(w, r, status, withApprovals(req))
}

// withApprovals returns req, copied if needed so that approvals encode as [] rather
// than null: clients can rely on the key being a list.
func withApprovals(req *ajar.Request) *ajar.Request {
	if req.Approvals != nil {
		return req
	}
	c := *req
	c.Approvals = []ajar.Approval{}
	return &c
}

func stateList() string {
	names := make([]string, len(ajar.States))
	for i, st := range ajar.States {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}
