package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity/login"
)

// The CLI login routes: what "ajar login" calls after the browser part of the
// sign-in (package identity/login; docs/sso.md). They need no token: the
// one-time code with its PKCE verifier, or the device code, is the credential.
//
//	POST /v1/auth/cli/token       {code, verifier} -> a CLI session token
//	POST /v1/auth/device          start a headless login: a device code and a user code
//	POST /v1/auth/device/token    {device_code} -> {status: "pending"} or a CLI session token

// Login is the sign-in flows; the server gets it as Options.Login. A server
// without one (no single sign-on configured) answers these routes with
// not_found and a message saying so.
type Login interface {
	CLIToken(ctx context.Context, code, verifier string) (*login.Token, error)
	StartDevice(ctx context.Context) (*login.Device, error)
	DevicePoll(ctx context.Context, deviceCode string) (*login.Token, error)
}

var _ Login = (*login.Service)(nil)

type (
	cliTokenBody struct {
		Code     string `json:"code"`
		Verifier string `json:"verifier"`
	}
	deviceTokenBody struct {
		DeviceCode string `json:"device_code"`
	}
	// DeviceToken is POST /v1/auth/device/token's answer: Status "pending" until
	// the person approved the code, then "approved" with the token.
	DeviceToken struct {
		Status string `json:"status"`
		*login.Token
	}
)

// loginRoutes adds the CLI login routes to mux.
func (s *Server) loginRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/auth/cli/token", s.handleCLIToken)
	mux.HandleFunc("POST /v1/auth/device", s.handleDeviceStart)
	mux.HandleFunc("POST /v1/auth/device/token", s.handleDeviceToken)
}

func (s *Server) login() (Login, error) {
	if s.opts.Login == nil {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "this server has no single sign-on (identity.oidc in its policy); sign in with an API token in AJAR_TOKEN")
	}
	return s.opts.Login, nil
}

func (s *Server) handleCLIToken(w http.ResponseWriter, r *http.Request) {
	l, err := s.login()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body cliTokenBody
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	tok, err := l.CLIToken(r.Context(), body.Code, body.Verifier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusOK, tok)
}

func (s *Server) handleDeviceStart(w http.ResponseWriter, r *http.Request) {
	l, err := s.login()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body emptyBody
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	d, err := l.StartDevice(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusOK, d)
}

func (s *Server) handleDeviceToken(w http.ResponseWriter, r *http.Request) {
	l, err := s.login()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body deviceTokenBody
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	tok, err := l.DevicePoll(r.Context(), body.DeviceCode)
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case errors.Is(err, login.ErrPending):
		s.writeJSON(w, r, http.StatusOK, DeviceToken{Status: "pending"})
	case err != nil:
		s.writeError(w, r, err)
	default:
		s.writeJSON(w, r, http.StatusOK, DeviceToken{Status: "approved", Token: tok})
	}
}

// CLIToken redeems the one-time code of "ajar login" with its PKCE verifier.
func (c *Client) CLIToken(ctx context.Context, code, verifier string) (*login.Token, error) {
	var out login.Token
	if err := c.do(ctx, http.MethodPost, "/v1/auth/cli/token", nil, cliTokenBody{Code: code, Verifier: verifier}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StartDevice begins a headless login.
func (c *Client) StartDevice(ctx context.Context) (*login.Device, error) {
	var out login.Device
	if err := c.do(ctx, http.MethodPost, "/v1/auth/device", nil, emptyBody{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PollDevice asks whether a headless login was approved: Status "pending", or
// "approved" with the token.
func (c *Client) PollDevice(ctx context.Context, deviceCode string) (*DeviceToken, error) {
	var out DeviceToken
	if err := c.do(ctx, http.MethodPost, "/v1/auth/device/token", nil, deviceTokenBody{DeviceCode: deviceCode}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
