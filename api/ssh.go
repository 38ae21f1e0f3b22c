package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/sshhost"
	"github.com/ajar-dev/ajar/sshhost/wire"
)

// The SSH routes: what hosts and their agents ("ajar node") fetch and report,
// and the one-round-trip access "ajar ssh" asks for.
//
//	GET  /v1/ssh/krl                     the revocation list for sshd's RevokedKeys (public; ETag)
//	POST /v1/ssh/access                  find or create a request for a target and certify a key
//	GET  /v1/ssh/keys?target=T&user=U    authorized_keys lines for sshd's AuthorizedKeysCommand (host agents)
//	POST /v1/ssh/sessions                report a host's SSH sessions; answers which must end (host agents)

// SSHCore is what POST /v1/ssh/access needs from the core, beyond Core
// (*sshaccess.Service, as cmd/ajar/serve.go combines it). A core without it (a
// test fake) answers it with not_found.
type SSHCore interface {
	SSHAccess(ctx context.Context, u ajar.User, in sshaccess.Input) (*sshaccess.Output, error)
	// CreateWithCert is POST /v1/requests with "ssh_public_key".
	CreateWithCert(ctx context.Context, u ajar.User, in ajar.CreateInput, publicKey string) (*ajar.Request, *ajar.SSHCertOutput, error)
}

var _ SSHCore = (*sshaccess.Service)(nil)

// SSHHosts is the host-agent protocol (package sshhost) behind the KRL, keys and
// sessions routes; the server gets it as Options.SSHHosts. A server without one
// answers those routes with not_found.
type SSHHosts interface {
	SSHKRL(ctx context.Context) (*sshhost.SSHKRL, error)
	SSHAuthorizedKeys(ctx context.Context, node ajar.User, target, user string) ([]string, error)
	ReportSSHSessions(ctx context.Context, node ajar.User, rep wire.SSHSessionReport) (*wire.SSHSessionsOutput, error)
}

var _ SSHHosts = (*sshhost.Service)(nil)

// KRLContentType is the media type of GET /v1/ssh/krl.
const KRLContentType = "application/octet-stream"

// sshRoutes adds the SSH routes to mux.
func (s *Server) sshRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/ssh/krl", s.handleSSHKRL)
	mux.HandleFunc("POST /v1/ssh/access", s.authed(s.handleSSHAccess))
	mux.HandleFunc("GET /v1/ssh/keys", s.authed(s.handleSSHKeys))
	mux.HandleFunc("POST /v1/ssh/sessions", s.authed(s.handleSSHSessions))
}

func (s *Server) sshCore() (SSHCore, error) {
	c, ok := s.core.(SSHCore)
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "this server does not serve SSH hosts")
	}
	return c, nil
}

func (s *Server) sshHosts() (SSHHosts, error) {
	if s.opts.SSHHosts == nil {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "this server does not serve SSH hosts")
	}
	return s.opts.SSHHosts, nil
}

func (s *Server) handleSSHKRL(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	core, err := s.sshHosts()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	krl, err := core.SSHKRL(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("ETag", krl.ETag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, krl.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", KRLContentType)
	h.Set("Content-Disposition", `attachment; filename="ajar.krl"`)
	w.WriteHeader(http.StatusOK)
	w.Write(krl.Data)
}

// etagMatches reports whether an If-None-Match header names etag.
func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		if v = strings.TrimSpace(v); v == etag || v == "*" {
			return true
		}
	}
	return false
}

func (s *Server) handleSSHAccess(w http.ResponseWriter, r *http.Request, u ajar.User) {
	core, err := s.sshCore()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var in sshaccess.Input
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := core.SSHAccess(r.Context(), u, in)
	if err == nil && (out == nil || out.Request == nil) {
		err = errors.New("core returned no request")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out.Request = withApprovals(out.Request)
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleSSHKeys(w http.ResponseWriter, r *http.Request, u ajar.User) {
	core, err := s.sshHosts()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseQuery(r, "target", "user")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	target, user := q.string("target"), q.string("user")
	if err := checkID("target", target); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkID("user", user); err != nil {
		s.writeError(w, r, err)
		return
	}
	lines, err := core.SSHAuthorizedKeys(r.Context(), u, target, user)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	for _, l := range lines {
		io.WriteString(w, l+"\n")
	}
}

// sessionsBody is POST /v1/ssh/sessions: the report with its sessions kept raw,
// so that each is decoded as strictly as the body itself.
type sessionsBody struct {
	Target   string            `json:"target"`
	Host     string            `json:"host"`
	Sessions []json.RawMessage `json:"sessions"`
}

func (s *Server) handleSSHSessions(w http.ResponseWriter, r *http.Request, u ajar.User) {
	core, err := s.sshHosts()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body sessionsBody
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	rep := wire.SSHSessionReport{Target: body.Target, Host: body.Host, Sessions: make([]wire.SSHSession, len(body.Sessions))}
	for i, raw := range body.Sessions {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep.Sessions[i]); err != nil {
			s.writeError(w, r, ajar.FieldErrorf(fmt.Sprintf("sessions[%d]", i), "must be a session object with known fields: %s", jsonProblem(err)))
			return
		}
	}
	out, err := core.ReportSSHSessions(r.Context(), u, rep)
	if err == nil && out == nil {
		err = errors.New("core returned no verdicts")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s must be %s", te.Field, describeType(te.Type))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return strings.TrimPrefix(msg, "json: ")
	}
	return "malformed JSON"
}

// Client side.

// SSHKRL fetches the revocation list. When etag is the ETag of the list the
// caller already has and it has not changed, it returns notModified and no data.
// It needs no token.
func (c *Client) SSHKRL(ctx context.Context, etag string) (data []byte, newETag string, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+"/v1/ssh/krl", nil)
	if err != nil {
		return nil, "", false, fmt.Errorf("GET /v1/ssh/krl: %w", err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return nil, etag, true, nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", false, responseError(resp)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, "", false, fmt.Errorf("GET /v1/ssh/krl: read response: %w", err)
	}
	if len(data) > maxResponseBytes {
		return nil, "", false, errors.New("GET /v1/ssh/krl: response too large")
	}
	return data, resp.Header.Get("ETag"), false, nil
}

// SSHAccess finds or creates the caller's request for a target and, when it is
// active and in.PublicKey is set, certifies the key, in one round trip.
func (c *Client) SSHAccess(ctx context.Context, in sshaccess.Input) (*sshaccess.Output, error) {
	var out sshaccess.Output
	if err := c.do(ctx, http.MethodPost, "/v1/ssh/access", nil, in, &out); err != nil {
		return nil, err
	}
	if out.Request == nil {
		return nil, errors.New("POST /v1/ssh/access: response has no request")
	}
	return &out, nil
}

// SSHAuthorizedKeys returns the authorized_keys lines that let user log in to a
// host of target now. Only the target's host agents may ask.
func (c *Client) SSHAuthorizedKeys(ctx context.Context, target, user string) ([]string, error) {
	q := url.Values{"target": {target}, "user": {user}}
	resp, err := c.send(ctx, http.MethodGet, "/v1/ssh/keys", q, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("GET /v1/ssh/keys: read response: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// ReportSSHSessions reports a host's SSH sessions and returns what to do about
// each one. Only the target's host agents may report.
func (c *Client) ReportSSHSessions(ctx context.Context, rep wire.SSHSessionReport) (*wire.SSHSessionsOutput, error) {
	if rep.Sessions == nil {
		rep.Sessions = []wire.SSHSession{}
	}
	var out wire.SSHSessionsOutput
	if err := c.do(ctx, http.MethodPost, "/v1/ssh/sessions", nil, rep, &out); err != nil {
		return nil, err
	}
	if len(out.Sessions) != len(rep.Sessions) {
		return nil, fmt.Errorf("POST /v1/ssh/sessions: %d verdicts for %d sessions", len(out.Sessions), len(rep.Sessions))
	}
	return &out, nil
}
