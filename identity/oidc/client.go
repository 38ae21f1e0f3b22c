// Package oidc is ajar's OpenID Connect client: the one relying party that
// signs people in at the company's identity provider (Okta, Entra ID, Google,
// Keycloak, Dex, Zitadel...).
//
// It runs the authorization code flow with PKCE (S256), state and nonce,
// verifies ID tokens (the issuer's keys, audience, expiry, nonce), turns them
// into an Identity (a canonical user id and groups) and re-reads groups with a
// refresh token. It keeps no state between calls: the caller stores state,
// nonce and verifier between AuthURL and Exchange (one-use), and the refresh
// token between Exchange and Refresh. It never logs or returns a token in an
// error message.
package oidc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/ajar-dev/ajar"
)

// Defaults for the Config fields left empty.
const (
	DefaultUserClaim   = "email"
	DefaultGroupsClaim = "groups"
	// CallbackPath is where the identity provider sends people back:
	// PUBLIC_URL + CallbackPath is the one redirect URI registered there.
	CallbackPath = "/auth/oidc/callback"
)

// DefaultScopes are requested when Config.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile"}

// Config is the identity.oidc section of the policy, the client secret read
// from its environment variable.
type Config struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string // DefaultScopes when empty; must include openid
	UserClaim    string   // DefaultUserClaim when empty
	GroupsClaim  string   // DefaultGroupsClaim when empty
	// HTTPClient talks to the identity provider; a client with a 30s timeout
	// when nil.
	HTTPClient *http.Client
	// Now is the clock ID token expiry is checked against; time.Now when nil.
	Now func() time.Time
}

// Client is a configured relying party. It is safe for concurrent use.
type Client struct {
	cfg      Config
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	oauth    oauth2.Config
	offline  bool
}

// New reads the issuer's discovery document and returns a Client whose
// redirect URI is redirectURL (PUBLIC_URL + CallbackPath).
//
// An unreachable issuer, a discovery document that is not valid or that names
// another issuer, or a missing issuer or client id is an *ajar.Error with code
// EINVALID and field "identity.oidc.issuer" (or ".client_id") whose message
// names the issuer URL.
func New(ctx context.Context, cfg Config, redirectURL string) (*Client, error) {
	if cfg.Issuer == "" {
		return nil, &ajar.Error{Code: ajar.EINVALID, Field: "identity.oidc.issuer", Message: "required"}
	}
	if cfg.ClientID == "" {
		return nil, &ajar.Error{Code: ajar.EINVALID, Field: "identity.oidc.client_id", Message: "required"}
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if cfg.UserClaim == "" {
		cfg.UserClaim = DefaultUserClaim
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = DefaultGroupsClaim
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	c := &Client{cfg: cfg}
	p, err := gooidc.NewProvider(c.ctx(ctx), cfg.Issuer)
	if err != nil {
		return nil, &ajar.Error{Code: ajar.EINVALID, Field: "identity.oidc.issuer",
			Message: fmt.Sprintf("cannot read the OpenID discovery document of %s: %v", cfg.Issuer, err)}
	}
	var disc struct {
		Scopes []string `json:"scopes_supported"`
	}
	if err := p.Claims(&disc); err != nil {
		return nil, &ajar.Error{Code: ajar.EINVALID, Field: "identity.oidc.issuer",
			Message: fmt.Sprintf("the OpenID discovery document of %s cannot be read: %v", cfg.Issuer, err)}
	}
	c.provider = p
	c.offline = slices.Contains(disc.Scopes, gooidc.ScopeOfflineAccess)
	c.verifier = p.VerifierContext(c.ctx(context.Background()), &gooidc.Config{ClientID: cfg.ClientID, Now: cfg.Now})
	scopes := cfg.Scopes
	if c.offline && !slices.Contains(scopes, gooidc.ScopeOfflineAccess) {
		scopes = append(slices.Clone(scopes), gooidc.ScopeOfflineAccess)
	}
	c.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       scopes,
	}
	return c, nil
}

// ctx carries the HTTP client to go-oidc and oauth2.
func (c *Client) ctx(ctx context.Context) context.Context {
	return context.WithValue(gooidc.ClientContext(ctx, c.cfg.HTTPClient), oauth2.HTTPClient, c.cfg.HTTPClient)
}

// Issuer is the issuer URL the client was made with.
func (c *Client) Issuer() string { return c.cfg.Issuer }

// OfflineAccess reports whether the issuer's discovery document lists the
// offline_access scope, in which case it is requested (some providers issue
// refresh tokens only then).
func (c *Client) OfflineAccess() bool { return c.offline }

// Scopes are the scopes requested, offline_access included when discovery
// lists it.
func (c *Client) Scopes() []string { return slices.Clone(c.oauth.Scopes) }

// AuthOptions ask for a fresh sign-in (MFA step-up).
type AuthOptions struct {
	// MaxAge, when set, is the max_age parameter: how long ago the person may
	// have last authenticated. Zero asks for a new authentication and, when
	// Prompt is empty, adds prompt=login.
	MaxAge *time.Duration
	// Prompt is the prompt parameter ("login", "consent"...), or "".
	Prompt string
}

// AuthURL is the identity provider's authorization URL for the code flow with
// PKCE: the challenge is S256 of verifier (see NewVerifier), state and nonce
// are the caller's one-use random values, checked at the callback (state) and
// by Exchange (nonce).
func (c *Client) AuthURL(state, nonce, verifier string, o AuthOptions) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce)}
	prompt := o.Prompt
	if o.MaxAge != nil {
		secs := int64(*o.MaxAge / time.Second)
		if secs < 0 {
			secs = 0
		}
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(secs, 10)))
		if secs == 0 && prompt == "" {
			prompt = "login"
		}
	}
	if prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	return c.oauth.AuthCodeURL(state, opts...)
}

// NewVerifier returns a new random PKCE code verifier (RFC 7636, 32 random
// bytes), to be kept by the caller until the code is exchanged.
func NewVerifier() string { return oauth2.GenerateVerifier() }

// Challenge is the S256 code challenge of verifier.
func Challenge(verifier string) string { return oauth2.S256ChallengeFromVerifier(verifier) }

// VerifyChallenge reports whether verifier matches an S256 challenge, in
// constant time.
func VerifyChallenge(verifier, challenge string) bool {
	return verifier != "" && subtle.ConstantTimeCompare([]byte(Challenge(verifier)), []byte(challenge)) == 1
}

// Identity is what a verified ID token (and userinfo, for claims the token
// lacks) says about the person.
type Identity struct {
	// UserID is the user claim, lower-cased (ajar.CanonicalUserID).
	UserID string
	// Groups come from the groups claim (a list of strings or one string);
	// nil when the provider sends none.
	Groups []string
	// AMR is the ID token's amr claim (how the person authenticated); see
	// HasSecondFactor.
	AMR []string
	// AuthTime is the auth_time claim, zero when absent. A step-up checks it
	// against the max_age it asked for.
	AuthTime time.Time
	// RefreshToken is the provider's refresh token, "" when it issued none. It
	// is a secret: store it sealed, never log it.
	RefreshToken string
	// Expiry is the ID token's expiry.
	Expiry time.Time
	// Subject is the provider's stable id for the person (sub).
	Subject string
}

// Exchange redeems an authorization code with its PKCE verifier and returns
// who signed in. The ID token must be signed by one of the issuer's keys, be
// for this client (audience), not be expired, and carry nonce; when the user
// claim is email, email_verified must be true.
//
// Every refusal is an *ajar.Error with code EUNAUTH whose message says what
// failed: the code refused by the provider, no ID token, a bad signature,
// another issuer, another audience, expired, the nonce, the user claim
// missing or not a valid user id, the email not verified, the groups claim not
// a list of strings, userinfo failing.
func (c *Client) Exchange(ctx context.Context, code, verifier, nonce string) (*Identity, error) {
	if code == "" {
		return nil, unauth("the identity provider sent no authorization code")
	}
	if nonce == "" || verifier == "" {
		return nil, unauth("the sign-in has no nonce or PKCE verifier to check the answer with")
	}
	ctx = c.ctx(ctx)
	tok, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, tokenError("the identity provider refused the authorization code", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, unauth("the identity provider returned no ID token (is the openid scope requested?)")
	}
	idt, err := c.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, unauth("the ID token's nonce does not match this sign-in (a replayed or injected token)")
	}
	return c.identity(ctx, idt, tok)
}

// Refresh uses a refresh token to read the person's current claims: from the
// new ID token when the provider returns one (verified like Exchange's, less
// the nonce), else from userinfo. The Identity's RefreshToken is the rotated
// token when the provider rotated it, else the one given.
//
// An error (EUNAUTH) means the provider no longer vouches for the person (the
// token is refused: user removed, session revoked, token expired) or its
// answer cannot be trusted: the caller ends the session. The caller must also
// check that the returned UserID is the session's.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*Identity, error) {
	if refreshToken == "" {
		return nil, unauth("no refresh token to re-read the identity with")
	}
	ctx = c.ctx(ctx)
	ts := c.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := ts.Token()
	if err != nil {
		return nil, tokenError("the identity provider refused the refresh token", err)
	}
	var idt *gooidc.IDToken
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if idt, err = c.verify(ctx, raw); err != nil {
			return nil, err
		}
	}
	return c.identity(ctx, idt, tok)
}

// verify checks the ID token's signature, issuer, audience and expiry.
func (c *Client) verify(ctx context.Context, raw string) (*gooidc.IDToken, error) {
	idt, err := c.verifier.Verify(ctx, raw)
	if err == nil {
		return idt, nil
	}
	var expired *gooidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return nil, unauth("the ID token expired at %s", expired.Expiry.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "expected audience"):
		return nil, unauth("the ID token is for another client (audience), not %q", c.cfg.ClientID)
	case strings.Contains(msg, "issued by a different provider"):
		return nil, unauth("the ID token was issued by another issuer, not %s", c.cfg.Issuer)
	case strings.Contains(msg, "signature"):
		return nil, unauth("the ID token's signature does not verify with the keys of %s", c.cfg.Issuer)
	}
	return nil, unauth("the ID token is not valid: %v", err)
}

// identity builds the Identity from the ID token's claims (idt may be nil
// after a refresh), reading userinfo for the user or groups claims it lacks.
func (c *Client) identity(ctx context.Context, idt *gooidc.IDToken, tok *oauth2.Token) (*Identity, error) {
	claims := map[string]any{}
	id := &Identity{RefreshToken: tok.RefreshToken}
	if idt != nil {
		if err := idt.Claims(&claims); err != nil {
			return nil, unauth("the ID token's claims cannot be read: %v", err)
		}
		id.Subject, id.Expiry = idt.Subject, idt.Expiry
	}
	_, hasUser := claims[c.cfg.UserClaim]
	_, hasGroups := claims[c.cfg.GroupsClaim]
	if !hasUser || !hasGroups {
		info, err := c.userinfo(ctx, tok)
		if err != nil {
			return nil, err
		}
		if idt != nil && info["sub"] != idt.Subject {
			return nil, unauth("userinfo names another subject than the ID token")
		}
		if idt == nil {
			id.Subject, _ = info["sub"].(string)
		}
		if !hasUser {
			// The user claim and email_verified come from the same answer.
			claims[c.cfg.UserClaim] = info[c.cfg.UserClaim]
			claims["email_verified"] = info["email_verified"]
			if info[c.cfg.UserClaim] == nil {
				delete(claims, c.cfg.UserClaim)
			}
		}
		if !hasGroups && info[c.cfg.GroupsClaim] != nil {
			claims[c.cfg.GroupsClaim] = info[c.cfg.GroupsClaim]
		}
	}
	user, ok := claims[c.cfg.UserClaim].(string)
	if !ok || strings.TrimSpace(user) == "" {
		return nil, unauth("the identity provider sent no %q claim to name the user by", c.cfg.UserClaim)
	}
	if c.cfg.UserClaim == "email" && !isTrue(claims["email_verified"]) {
		return nil, unauth("the email %s is not verified at the identity provider (email_verified is not true)", user)
	}
	if err := checkUserID(user); err != nil {
		return nil, err
	}
	id.UserID = ajar.CanonicalUserID(user)
	groups, err := stringList(claims[c.cfg.GroupsClaim])
	if err != nil {
		return nil, unauth("the %q claim %v", c.cfg.GroupsClaim, err)
	}
	id.Groups = groups
	id.AMR, _ = stringList(claims["amr"])
	if at, ok := claims["auth_time"].(float64); ok && at > 0 {
		id.AuthTime = time.Unix(int64(at), 0)
	}
	return id, nil
}

// userinfo reads the userinfo endpoint with the access token.
func (c *Client) userinfo(ctx context.Context, tok *oauth2.Token) (map[string]any, error) {
	if tok.AccessToken == "" {
		return nil, unauth("the identity provider returned no access token to read userinfo with")
	}
	info, err := c.provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken, TokenType: "Bearer"}))
	if err != nil {
		return nil, unauth("the identity provider's userinfo endpoint refused: %s", firstLine(err.Error()))
	}
	m := map[string]any{}
	if err := info.Claims(&m); err != nil {
		return nil, unauth("the userinfo answer cannot be read: %v", err)
	}
	return m, nil
}

// HasSecondFactor reports whether an amr claim (RFC 8176) names a second
// factor or a phishing-resistant method: mfa, otp, hwk, swk, fpt, sc, face,
// iris, retina, vbm, pop or sms.
func HasSecondFactor(amr []string) bool {
	for _, m := range amr {
		switch strings.ToLower(m) {
		case "mfa", "otp", "hwk", "swk", "fpt", "sc", "face", "iris", "retina", "vbm", "pop", "sms":
			return true
		}
	}
	return false
}

// GroupSource re-reads a person's groups at the identity provider. Its
// Refresh method has the shape of identity.GroupSource.
type GroupSource struct{ Client *Client }

// Refresh returns userID's current groups and the (possibly rotated) refresh
// token. An error (EUNAUTH) means the provider no longer vouches for userID,
// including when the token now names someone else.
func (g GroupSource) Refresh(ctx context.Context, userID, refreshToken string) ([]string, string, error) {
	id, err := g.Client.Refresh(ctx, refreshToken)
	if err != nil {
		return nil, "", err
	}
	if !ajar.SameUser(id.UserID, userID) {
		return nil, "", unauth("the refresh token now names %s, not %s", id.UserID, ajar.CanonicalUserID(userID))
	}
	return id.Groups, id.RefreshToken, nil
}

func unauth(format string, args ...any) *ajar.Error {
	return ajar.Errorf(ajar.EUNAUTH, format, args...)
}

// tokenError describes a token endpoint failure by its OAuth error code and
// description only: the raw response is never echoed.
func tokenError(what string, err error) *ajar.Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			if re.ErrorDescription != "" {
				return unauth("%s: %s (%s)", what, re.ErrorCode, firstLine(re.ErrorDescription))
			}
			return unauth("%s: %s", what, re.ErrorCode)
		}
		if re.Response != nil {
			return unauth("%s: HTTP %d", what, re.Response.StatusCode)
		}
	}
	var ue interface{ Timeout() bool }
	if errors.As(err, &ue) {
		return unauth("%s: the provider could not be reached: %s", what, firstLine(err.Error()))
	}
	return unauth("%s: the provider could not be reached", what)
}

// checkUserID refuses what cannot be an ajar user id.
func checkUserID(id string) error {
	switch {
	case strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return unauth("the user claim %q contains spaces or control characters", id)
	case strings.ContainsFunc(id, func(r rune) bool { return r > unicode.MaxASCII && unicode.ToLower(r) <= unicode.MaxASCII }):
		// The canonical id is lower-cased: U+212A (Kelvin) would become k and
		// U+0130 i, making someone else's id (kate@, admin@).
		return unauth("the user claim %q has a character that lower-cases to a plain letter: it would name someone else", id)
	case strings.HasPrefix(strings.ToLower(id), "group:"):
		return unauth("the user claim %q starts with \"group:\", which names a group", id)
	case len(id) > 320:
		return unauth("the user claim is longer than 320 characters")
	}
	return nil
}

// isTrue reads a boolean claim that some providers send as a string.
func isTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// stringList reads a claim that is a list of strings or one string.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		if v == "" {
			return nil, nil
		}
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("must be a list of strings, not a list holding %T", e)
			}
			if s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("must be a list of strings or a string, not %T", v)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
