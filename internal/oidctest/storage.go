package oidctest

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const loginPath = "/login"

// storage is the OP's op.Storage, all in memory under one mutex.
type storage struct {
	mu       sync.Mutex
	opts     Options
	key      *rsa.PrivateKey
	keyID    string
	client   *client
	users    map[string]*User // by subject
	loginAs  string
	requests map[string]*authRequest // by id
	codes    map[string]string       // code -> request id
	access   map[string]*accessToken // by id
	refresh  map[string]*refreshToken
	seen     []AuthRequest
	tamper   []func(*Claims)
}

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
)

func newStorage(key *rsa.PrivateKey, o Options) *storage {
	return &storage{
		opts:     o,
		key:      key,
		keyID:    randomHex(8),
		client:   &client{},
		users:    map[string]*User{},
		requests: map[string]*authRequest{},
		codes:    map[string]string{},
		access:   map[string]*accessToken{},
		refresh:  map[string]*refreshToken{},
	}
}

// findUser returns the user with this subject or (case-insensitive) email.
// The caller holds mu.
func (s *storage) findUser(emailOrSubject string) *User {
	if u, ok := s.users[emailOrSubject]; ok {
		return u
	}
	for _, u := range s.users {
		if u.Email != "" && strings.EqualFold(u.Email, emailOrSubject) {
			return u
		}
	}
	return nil
}

type accessToken struct {
	id, subject, clientID string
	scopes                []string
	expiry                time.Time
}

type refreshToken struct {
	token, subject, clientID string
	scopes, amr, audience    []string
	authTime                 time.Time
}

// authRequest is one authorization request until its code is redeemed.
type authRequest struct {
	id          string
	req         oidc.AuthRequest
	subject     string
	amr         []string
	authTime    time.Time
	done        bool
	codeChallen *oidc.CodeChallenge
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return slices.Clone(a.amr) }
func (a *authRequest) GetAudience() []string                 { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallen }
func (a *authRequest) GetNonce() string                      { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string                { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                   { return slices.Clone(a.req.Scopes) }
func (a *authRequest) GetState() string                      { return a.req.State }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// refreshRequest is a refresh token presented at the token endpoint.
type refreshRequest struct{ t *refreshToken }

func (r *refreshRequest) GetAMR() []string             { return slices.Clone(r.t.amr) }
func (r *refreshRequest) GetAudience() []string        { return slices.Clone(r.t.audience) }
func (r *refreshRequest) GetAuthTime() time.Time       { return r.t.authTime }
func (r *refreshRequest) GetClientID() string          { return r.t.clientID }
func (r *refreshRequest) GetScopes() []string          { return slices.Clone(r.t.scopes) }
func (r *refreshRequest) GetSubject() string           { return r.t.subject }
func (r *refreshRequest) SetCurrentScopes(sc []string) { r.t.scopes = sc }

// CreateAuthRequest refuses a request without an S256 PKCE challenge: the OP
// is as strict as ajar expects a good IdP to be.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := AuthRequest{
		ClientID: req.ClientID, RedirectURI: req.RedirectURI, Scopes: slices.Clone(req.Scopes),
		State: req.State, Nonce: req.Nonce, CodeChallenge: req.CodeChallenge,
		CodeChallengeMethod: string(req.CodeChallengeMethod), Prompt: slices.Clone(req.Prompt),
	}
	if req.MaxAge != nil {
		d := time.Duration(*req.MaxAge) * time.Second
		seen.MaxAge = &d
	}
	s.seen = append(s.seen, seen)
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	a := &authRequest{
		id:          randomHex(16),
		req:         *req,
		codeChallen: &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
	}
	s.requests[a.id] = a
	return a, nil
}

// completeLogin signs the user in for the request id. The caller holds mu.
func (s *storage) completeLogin(id, emailOrSubject string) error {
	a, ok := s.requests[id]
	if !ok {
		return errors.New("unknown or finished authorization request")
	}
	u := s.findUser(emailOrSubject)
	if u == nil {
		return fmt.Errorf("no user %q", emailOrSubject)
	}
	a.subject, a.done, a.authTime = u.Subject, true, time.Now()
	a.amr = slices.Clone(u.AMR)
	if len(a.amr) == 0 {
		a.amr = []string{"pwd"}
	}
	return nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.requests[id]
	if !ok {
		return nil, errors.New("authorization request not found")
	}
	return a, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest makes the code one-use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) newAccess(clientID, subject string, scopes []string) *accessToken {
	t := &accessToken{id: randomHex(16), subject: subject, clientID: clientID, scopes: slices.Clone(scopes), expiry: time.Now().Add(5 * time.Minute)}
	s.access[t.id] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccess(clientID, req.GetSubject(), req.GetScopes())
	return t.id, t.expiry, nil
}

// CreateAccessAndRefreshTokens issues a refresh token with the code, and
// rotates it on each refresh: the old one stops working.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[req.GetSubject()]; !ok {
		return "", "", time.Time{}, errors.New("user not found")
	}
	t := s.newAccess(clientID, req.GetSubject(), req.GetScopes())
	rt := &refreshToken{token: randomHex(24), subject: req.GetSubject(), clientID: clientID, scopes: req.GetScopes(), audience: req.GetAudience()}
	switch r := req.(type) {
	case *authRequest:
		rt.amr, rt.authTime = r.amr, r.authTime
	case *refreshRequest:
		rt.amr, rt.authTime = r.t.amr, r.t.authTime
	}
	if current != "" {
		if _, ok := s.refresh[current]; !ok {
			return "", "", time.Time{}, errors.New("invalid refresh token")
		}
		delete(s.refresh, current)
	}
	s.refresh[rt.token] = rt
	return t.id, rt.token, t.expiry, nil
}

// TokenRequestByRefreshToken refuses the tokens of a removed user.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return nil, errors.New("invalid refresh token")
	}
	if _, ok := s.users[rt.subject]; !ok {
		delete(s.refresh, token)
		return nil, errors.New("the user no longer exists")
	}
	cp := *rt
	return &refreshRequest{&cp}, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, rt := range s.refresh {
		if rt.subject == userID {
			delete(s.refresh, k)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, token, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.access, token)
	delete(s.refresh, token)
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, _, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{s.keyID, s.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{signingKey{s.keyID, s.key}}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != clientID {
		return nil, errors.New("client not found")
	}
	c := *s.client
	c.redirectURIs = slices.Clone(c.redirectURIs)
	return &c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != clientID || secret != s.client.secret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userinfo(info, req.GetSubject(), scopes, true)
}

// SetUserinfoFromToken answers the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[tokenID]
	if !ok || time.Now().After(t.expiry) {
		return errors.New("access token invalid or expired")
	}
	return s.userinfo(info, t.subject, t.scopes, false)
}

// userinfo sets the claims the scopes ask for. The caller holds mu.
func (s *storage) userinfo(info *oidc.UserInfo, subject string, scopes []string, idToken bool) error {
	u, ok := s.users[subject]
	if !ok {
		return errors.New("user not found")
	}
	info.Subject = u.Subject
	if idToken && s.opts.ClaimsOnlyInUserinfo {
		scopes = nil
	}
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeEmail:
			if u.Email != "" {
				info.Email = u.Email
				info.EmailVerified = oidc.Bool(u.EmailVerified)
			}
		case oidc.ScopeProfile:
			info.Name = u.Email
		}
	}
	if !idToken || !s.opts.GroupsOnlyInUserinfo {
		info.AppendClaims("groups", slices.Clone(u.Groups))
	}
	return nil
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// client is the one registered client: confidential, client_secret_basic,
// code flow with refresh tokens.
type client struct {
	secret       string
	redirectURIs []string
}

func (c *client) GetID() string                       { return clientID }
func (c *client) RedirectURIs() []string              { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string           { return loginPath + "?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return time.Hour }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
