// Package login runs ajar's sign-in flows with the company's identity provider:
// the web sign-in, the CLI's loopback login ("ajar login"), the headless device
// login ("ajar login --headless") and the MFA step-up by re-authentication. ajar is
// the one OIDC client; every flow goes through its one redirect URI,
// PUBLIC_URL/auth/oidc/callback (docs/sso.md).
//
// Every step of a flow is a one-use record in the store (an ajar.AuthFlow): the
// OIDC state, the CLI's one-time code, the device code. Taking one deletes it, so
// a replayed state or code finds nothing; records expire within minutes. The
// state is also bound to the browser that began the flow by a cookie the web
// layer sets (Binding), so a sign-in link made by someone else cannot sign a
// victim in as its maker. Nothing here keeps state in memory: any replica can
// finish a flow another began.
package login

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
)

// How long each one-use step lives.
const (
	flowTTL   = 10 * time.Minute // from Begin to the IdP's callback
	codeTTL   = 2 * time.Minute  // the CLI's one-time code, from the callback to its exchange
	deviceTTL = 10 * time.Minute // a device login, from "ajar login --headless" to approval
	// DeviceInterval is how often a headless CLI polls for its device login.
	DeviceInterval = 2 * time.Second
	// MFAFresh is how long a second factor counts for a step that requires MFA.
	MFAFresh = 5 * time.Minute
)

// Kinds of flow records (ajar.AuthFlow.Kind).
const (
	kindState      = "oidc_state"
	kindCLICode    = "cli_code"
	kindDevice     = "device"
	kindDeviceUser = "device_user"
)

// Identity is what the identity provider vouched for at the end of a flow.
type Identity struct {
	UserID string   // canonical (lower-cased) id
	Groups []string // from the groups claim
	AMR    []string // authentication methods (RFC 8176)
	// AuthTime is when the IdP last authenticated the person (auth_time);
	// zero when it did not say. The AMR's second factor counts only if this
	// is recent (secondFactor).
	AuthTime     time.Time
	RefreshToken string // empty when the IdP gave none
}

// IdP is the OIDC client (identity/oidc.Client, adapted by the composition root).
type IdP interface {
	// AuthURL is the IdP's authorization URL for this state, nonce and PKCE
	// verifier; stepUp asks for a fresh authentication (max_age=0).
	AuthURL(state, nonce, verifier string, stepUp bool) string
	// Exchange redeems the code and verifies the ID token (keys, audience, expiry,
	// nonce, email_verified). Its errors are EUNAUTH and say what failed.
	Exchange(ctx context.Context, code, verifier, nonce string) (*Identity, error)
	// HasSecondFactor reports whether amr names a second factor.
	HasSecondFactor(amr []string) bool
}

// Sessions starts sessions and records refusals (identity.Service, adapted).
type Sessions interface {
	// SignIn starts a session of kind "web" or "cli" for id and returns its secret.
	SignIn(ctx context.Context, kind, name string, id *Identity, mfa bool) (secret string, expires time.Time, err error)
	// Refused audits a refused sign-in ("signin.refused") with its reason.
	Refused(ctx context.Context, userID, reason string, details map[string]any) error
	// MarkMFA records a second factor on the session with this id, which must
	// belong to userID.
	MarkMFA(ctx context.Context, sessionID, userID string) error
}

// Flows stores the one-use flow records (the store's AuthFlow methods, adapted).
type Flows interface {
	// Put stores a record; an existing record of the same kind and key is replaced.
	Put(ctx context.Context, f ajar.AuthFlow) error
	// Update takes the record (ENOTFOUND when absent or expired) and passes it to
	// fn in one transaction; when fn returns a record it is stored in its place.
	// fn's error aborts, leaving the record where it was.
	Update(ctx context.Context, kind string, key []byte, fn func(f *ajar.AuthFlow) (*ajar.AuthFlow, error)) error
}

// Config is what a Service needs.
type Config struct {
	IdP      IdP
	Sessions Sessions
	Flows    Flows
	// PublicURL is where people reach this server, without a trailing slash.
	PublicURL string
	Now       func() time.Time
}

// Service runs the flows. Its methods are safe for concurrent use.
type Service struct {
	cfg    Config
	origin func() string // AuthOrigin, worked out once
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.IdP == nil || cfg.Sessions == nil || cfg.Flows == nil || cfg.PublicURL == "" {
		return nil, errors.New("login: IdP, Sessions, Flows and PublicURL are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Service{cfg: cfg}
	s.origin = sync.OnceValue(func() string {
		u, err := url.Parse(cfg.IdP.AuthURL("origin", "origin", "origin", false))
		if err != nil || u.Scheme == "" || u.Host == "" {
			return ""
		}
		return u.Scheme + "://" + u.Host
	})
	return s, nil
}

// AuthOrigin is the origin (scheme://host[:port]) of the IdP's authorization
// endpoint, where Start sends browsers; "" if AuthURL gives no absolute URL.
// A page whose form leads there (the device page) must allow it in its
// Content-Security-Policy's form-action, which browsers apply to a form's
// redirects too.
func (s *Service) AuthOrigin() string { return s.origin() }

// Purpose is what a flow signs in for.
type Purpose string

const (
	ForWeb    Purpose = "web"    // a browser session
	ForCLI    Purpose = "cli"    // "ajar login": a one-time code sent to the CLI's loopback port
	ForDevice Purpose = "device" // "ajar login --headless": approves a device code
	ForStepUp Purpose = "stepup" // a second factor for the signed-in session
)

// Begin is the start of a flow.
type Begin struct {
	Purpose Purpose
	// Binding is the random value of the cookie the web layer set on the browser
	// that began; the callback must present the same value.
	Binding string
	// Next is the local path to return to (web, step-up).
	Next string
	// Previous is the session the browser was signed in with when it began
	// (web; zero if none), to be ended when the sign-in succeeds: the IdP's
	// cross-site redirect back does not bring its cookie.
	Previous ajar.User
	// CLI: the loopback port, the CLI's PKCE challenge (S256) and its state.
	CLIPort      int
	CLIChallenge string
	CLIState     string
	// Device: the user code the person confirmed.
	UserCode string
	// Step-up: the session to mark and its user.
	SessionID, UserID string
}

// state is what the OIDC state record holds.
type state struct {
	Purpose      Purpose `json:"purpose"`
	Binding      []byte  `json:"binding"` // SHA-256 of the binding cookie
	Nonce        string  `json:"nonce"`
	Verifier     string  `json:"verifier"`
	Next         string  `json:"next,omitempty"`
	PrevSession  string  `json:"prev_session,omitempty"`
	PrevUser     string  `json:"prev_user,omitempty"`
	CLIPort      int     `json:"cli_port,omitempty"`
	CLIChallenge string  `json:"cli_challenge,omitempty"`
	CLIState     string  `json:"cli_state,omitempty"`
	Device       []byte  `json:"device,omitempty"` // hash of the device code
	SessionID    string  `json:"session_id,omitempty"`
	UserID       string  `json:"user_id,omitempty"`
}

// Start validates a flow's start, records its state and returns the IdP URL to
// send the browser to.
func (s *Service) Start(ctx context.Context, b Begin) (string, error) {
	if len(b.Binding) < 32 {
		return "", errors.New("login: a binding cookie value is required")
	}
	st := state{Purpose: b.Purpose, Binding: hash(b.Binding), Nonce: random(), Verifier: random()}
	switch b.Purpose {
	case ForWeb:
		st.Next, st.PrevSession, st.PrevUser = b.Next, b.Previous.Session, b.Previous.ID
	case ForCLI:
		if b.CLIPort < 1024 || b.CLIPort > 65535 {
			return "", ajar.FieldErrorf("cli_port", "must be a port between 1024 and 65535, the CLI's loopback listener")
		}
		if !isChallenge(b.CLIChallenge) {
			return "", ajar.FieldErrorf("cli_challenge", "must be a PKCE S256 challenge (43 base64url characters)")
		}
		if !isOpaque(b.CLIState) {
			return "", ajar.FieldErrorf("cli_state", "must be 16 to 128 URL-safe characters")
		}
		st.CLIPort, st.CLIChallenge, st.CLIState = b.CLIPort, b.CLIChallenge, b.CLIState
	case ForDevice:
		code, ok := normalizeUserCode(b.UserCode)
		if !ok {
			return "", ajar.FieldErrorf("code", "must be the 8-letter code shown by ajar login --headless, such as BCDF-GHJK")
		}
		var device []byte
		err := s.cfg.Flows.Update(ctx, kindDeviceUser, hash(code), func(f *ajar.AuthFlow) (*ajar.AuthFlow, error) {
			device = append([]byte(nil), f.Data...)
			return f, nil // keep it: the device is approved only at the callback
		})
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			return "", ajar.FieldErrorf("code", "no login is waiting for this code (it may have expired: run ajar login --headless again)")
		} else if err != nil {
			return "", err
		}
		st.Device, st.Next = device, "/auth/device/done"
	case ForStepUp:
		if b.SessionID == "" || b.UserID == "" {
			return "", errors.New("login: a step-up needs the signed-in session")
		}
		st.SessionID, st.UserID, st.Next = b.SessionID, b.UserID, b.Next
	default:
		return "", fmt.Errorf("login: unknown purpose %q", b.Purpose)
	}
	key := random()
	data, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	if err := s.cfg.Flows.Put(ctx, ajar.AuthFlow{Kind: kindState, KeyHash: hash(key), Data: data, ExpiresAt: s.cfg.Now().Add(flowTTL)}); err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return s.cfg.IdP.AuthURL(key, st.Nonce, st.Verifier, b.Purpose == ForStepUp), nil
}

// Callback is what the IdP sent back to PUBLIC_URL/auth/oidc/callback.
type Callback struct {
	State, Code string
	// Error and ErrorDescription are the IdP's own refusal (the person cancelled,
	// the client is not allowed ...).
	Error, ErrorDescription string
	Binding                 string // the binding cookie, "" when the browser sent none
}

// Done is where a finished flow sends the browser.
type Done struct {
	Purpose Purpose
	// Secret is the new web session's secret (ForWeb), for the session cookie.
	Secret  string
	Expires time.Time
	// Redirect is the next location: the local path (web, step-up, device) or the
	// CLI's loopback URL with its one-time code.
	Redirect string
	UserID   string
	// Previous is Begin.Previous (web): the caller ends that session.
	Previous ajar.User
}

// Finish ends a flow at the callback. Every refusal is audited (signin.refused)
// and returned as EUNAUTH or EINVALID with a message a person can act on; nothing
// is half-made: a refused flow starts no session and leaves no code.
func (s *Service) Finish(ctx context.Context, cb Callback) (*Done, error) {
	if cb.State == "" || len(cb.State) > 200 {
		return nil, s.refuse(ctx, "", "the sign-in has no valid state", nil,
			ajar.Errorf(ajar.EUNAUTH, "this sign-in link is incomplete; start again"))
	}
	var st state
	err := s.cfg.Flows.Update(ctx, kindState, hash(cb.State), func(f *ajar.AuthFlow) (*ajar.AuthFlow, error) {
		return nil, json.Unmarshal(f.Data, &st) // taken: one use, whatever follows
	})
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, s.refuse(ctx, "", "unknown, used or expired state", nil,
			ajar.Errorf(ajar.EUNAUTH, "this sign-in was already used or has expired; start again"))
	} else if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	details := map[string]any{"purpose": string(st.Purpose)}
	if subtle.ConstantTimeCompare(hash(cb.Binding), st.Binding) != 1 || cb.Binding == "" {
		return nil, s.refuse(ctx, "", "the sign-in was finished in another browser than the one that began it", details,
			ajar.Errorf(ajar.EUNAUTH, "this sign-in was started in another browser; start again here"))
	}
	if cb.Error != "" {
		details["idp_error"] = clip(cb.Error, 100)
		return nil, s.refuse(ctx, "", "the identity provider refused: "+clip(cb.Error, 100), details,
			ajar.Errorf(ajar.EUNAUTH, "the identity provider did not sign you in (%s). %s", clip(cb.Error, 100), clip(cb.ErrorDescription, 300)))
	}
	if cb.Code == "" {
		return nil, s.refuse(ctx, "", "no authorization code", details, ajar.Errorf(ajar.EUNAUTH, "the identity provider sent no code; start again"))
	}
	id, err := s.cfg.IdP.Exchange(ctx, cb.Code, st.Verifier, st.Nonce)
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EUNAUTH {
			return nil, s.refuse(ctx, "", ajar.ErrorMessage(err), details, err)
		}
		return nil, fmt.Errorf("login: %w", err)
	}
	switch st.Purpose {
	case ForWeb:
		secret, exp, err := s.cfg.Sessions.SignIn(ctx, "web", "web sign-in", id, s.secondFactor(id))
		if err != nil {
			return nil, err
		}
		return &Done{Purpose: ForWeb, Secret: secret, Expires: exp, Redirect: st.Next, UserID: id.UserID,
			Previous: ajar.User{ID: st.PrevUser, Session: st.PrevSession}}, nil
	case ForCLI:
		code := random()
		data, err := json.Marshal(cliCode{Challenge: st.CLIChallenge, Identity: *id, MFA: s.secondFactor(id)})
		if err != nil {
			return nil, err
		}
		if err := s.cfg.Flows.Put(ctx, ajar.AuthFlow{Kind: kindCLICode, KeyHash: hash(code), Data: data, ExpiresAt: s.cfg.Now().Add(codeTTL)}); err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
		q := url.Values{"code": {code}, "state": {st.CLIState}}
		return &Done{Purpose: ForCLI, Redirect: "http://127.0.0.1:" + strconv.Itoa(st.CLIPort) + "/callback?" + q.Encode(), UserID: id.UserID}, nil
	case ForDevice:
		err := s.cfg.Flows.Update(ctx, kindDevice, st.Device, func(f *ajar.AuthFlow) (*ajar.AuthFlow, error) {
			var d device
			if err := json.Unmarshal(f.Data, &d); err != nil {
				return nil, err
			}
			if d.Identity != nil {
				return nil, ajar.Errorf(ajar.ECONFLICT, "this code was already used to sign in")
			}
			d.Identity, d.MFA = id, s.secondFactor(id)
			b, err := json.Marshal(d)
			if err != nil {
				return nil, err
			}
			f.Data = b
			return f, nil
		})
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			return nil, s.refuse(ctx, id.UserID, "the device login expired before it was approved", details,
				ajar.Errorf(ajar.EUNAUTH, "the CLI's login expired; run ajar login --headless again"))
		} else if err != nil {
			return nil, err
		}
		return &Done{Purpose: ForDevice, Redirect: st.Next, UserID: id.UserID}, nil
	case ForStepUp:
		if !ajar.SameUser(id.UserID, st.UserID) {
			details["signed_in_as"] = st.UserID
			return nil, s.refuse(ctx, id.UserID, "step-up by another person than the one signed in", details,
				ajar.Errorf(ajar.EUNAUTH, "you confirmed as %s but are signed in as %s", id.UserID, st.UserID))
		}
		if !s.cfg.IdP.HasSecondFactor(id.AMR) {
			details["amr"] = id.AMR
			return nil, s.refuse(ctx, id.UserID, "the identity provider reported no second factor", details,
				ajar.Errorf(ajar.EFORBIDDEN, "your identity provider did not report a second factor for this sign-in (amr %v); use a security key instead", id.AMR))
		}
		if !s.secondFactor(id) {
			details["auth_time"] = id.AuthTime
			return nil, s.refuse(ctx, id.UserID, "the identity provider did not authenticate the person again (stale or missing auth_time)", details,
				ajar.Errorf(ajar.EFORBIDDEN, "your identity provider did not ask for your second factor again (it reported no recent auth_time); use a security key instead"))
		}
		if err := s.cfg.Sessions.MarkMFA(ctx, st.SessionID, st.UserID); err != nil {
			return nil, err
		}
		return &Done{Purpose: ForStepUp, Redirect: st.Next, UserID: id.UserID}, nil
	}
	return nil, fmt.Errorf("login: unknown purpose %q", st.Purpose)
}

// secondFactor reports whether the IdP vouched for a second factor made
// within MFAFresh: amr names one and auth_time is that recent. An IdP keeps
// the amr of the sign-in that opened its own session, possibly hours ago, and
// may ignore max_age=0: without the auth_time check, a second factor made in
// the morning would count as a fresh one all day (docs/security.md).
func (s *Service) secondFactor(id *Identity) bool {
	now, at := s.cfg.Now(), id.AuthTime
	return s.cfg.IdP.HasSecondFactor(id.AMR) && !at.IsZero() && !at.After(now.Add(time.Minute)) && now.Sub(at) <= MFAFresh
}

// cliCode is the one-time code record a CLI redeems.
type cliCode struct {
	Challenge string   `json:"challenge"`
	Identity  Identity `json:"identity"`
	MFA       bool     `json:"mfa"`
}

// Token is a session made for the CLI.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      string    `json:"user"`
}

// CLIToken redeems the CLI's one-time code with the PKCE verifier whose S256
// challenge began the flow. The code is gone after one try, right or wrong.
func (s *Service) CLIToken(ctx context.Context, code, verifier string) (*Token, error) {
	if !isOpaque(code) {
		return nil, ajar.FieldErrorf("code", "is not a code ajar gave")
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		return nil, ajar.FieldErrorf("verifier", "must be a PKCE verifier of 43 to 128 characters")
	}
	var c cliCode
	err := s.cfg.Flows.Update(ctx, kindCLICode, hash(code), func(f *ajar.AuthFlow) (*ajar.AuthFlow, error) {
		return nil, json.Unmarshal(f.Data, &c)
	})
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, s.refuse(ctx, "", "unknown, used or expired CLI code", nil, ajar.Errorf(ajar.EUNAUTH, "this login code was already used or has expired; run ajar login again"))
	} else if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(Challenge(verifier)), []byte(c.Challenge)) != 1 {
		return nil, s.refuse(ctx, c.Identity.UserID, "the CLI's PKCE verifier does not match its challenge", nil,
			ajar.Errorf(ajar.EUNAUTH, "this login code belongs to another ajar login; run ajar login again"))
	}
	secret, exp, err := s.cfg.Sessions.SignIn(ctx, "cli", "ajar login", &c.Identity, c.MFA)
	if err != nil {
		return nil, err
	}
	return &Token{Token: secret, ExpiresAt: exp, User: c.Identity.UserID}, nil
}

// device is the device login record, found by the device code's hash.
type device struct {
	UserCode string    `json:"user_code"`
	Identity *Identity `json:"identity,omitempty"` // set once approved
	MFA      bool      `json:"mfa,omitempty"`
}

// Device is a started headless login: the CLI shows VerificationURI and UserCode
// and polls with DeviceCode.
type Device struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// StartDevice begins a headless login.
func (s *Service) StartDevice(ctx context.Context) (*Device, error) {
	dc, uc := random(), userCode()
	data, err := json.Marshal(device{UserCode: uc})
	if err != nil {
		return nil, err
	}
	exp := s.cfg.Now().Add(deviceTTL)
	if err := s.cfg.Flows.Put(ctx, ajar.AuthFlow{Kind: kindDevice, KeyHash: hash(dc), Data: data, ExpiresAt: exp}); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if err := s.cfg.Flows.Put(ctx, ajar.AuthFlow{Kind: kindDeviceUser, KeyHash: hash(uc), Data: hash(dc), ExpiresAt: exp}); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	shown := uc[:4] + "-" + uc[4:]
	return &Device{
		DeviceCode: dc, UserCode: shown,
		VerificationURI:         s.cfg.PublicURL + "/auth/device",
		VerificationURIComplete: s.cfg.PublicURL + "/auth/device?code=" + shown,
		ExpiresIn:               int(deviceTTL / time.Second), Interval: int(DeviceInterval / time.Second),
	}, nil
}

// ErrPending is DevicePoll's answer while nobody has approved the code yet.
var ErrPending = errors.New("login: the device login is not approved yet")

// DevicePoll returns the CLI's session once the person approved the code;
// ErrPending before that; EUNAUTH when the code is unknown or expired. A code
// gives one session.
func (s *Service) DevicePoll(ctx context.Context, deviceCode string) (*Token, error) {
	if !isOpaque(deviceCode) {
		return nil, ajar.FieldErrorf("device_code", "is not a code ajar gave")
	}
	var d device
	err := s.cfg.Flows.Update(ctx, kindDevice, hash(deviceCode), func(f *ajar.AuthFlow) (*ajar.AuthFlow, error) {
		if err := json.Unmarshal(f.Data, &d); err != nil {
			return nil, err
		}
		if d.Identity == nil {
			return f, nil // still waiting: keep it
		}
		return nil, nil // approved: taken
	})
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, ajar.Errorf(ajar.EUNAUTH, "this login expired or was already used; run ajar login --headless again")
	} else if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if d.Identity == nil {
		return nil, ErrPending
	}
	secret, exp, err := s.cfg.Sessions.SignIn(ctx, "cli", "ajar login --headless", d.Identity, d.MFA)
	if err != nil {
		return nil, err
	}
	return &Token{Token: secret, ExpiresAt: exp, User: d.Identity.UserID}, nil
}

// refuse audits a refused sign-in and returns err. An audit failure fails the
// operation (the refusal must be on record).
func (s *Service) refuse(ctx context.Context, userID, reason string, details map[string]any, err error) error {
	if aerr := s.cfg.Sessions.Refused(ctx, userID, reason, details); aerr != nil {
		return fmt.Errorf("login: audit a refused sign-in: %w", aerr)
	}
	return err
}

// random returns 256 random bits, base64url-encoded (43 characters).
func random() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// Challenge is the PKCE S256 challenge of a verifier (RFC 7636).
func Challenge(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// NewVerifier returns a fresh PKCE verifier.
func NewVerifier() string { return random() }

func isChallenge(s string) bool { return len(s) == 43 && isURLSafe(s) }

func isOpaque(s string) bool { return len(s) >= 16 && len(s) <= 128 && isURLSafe(s) }

func isURLSafe(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// userCodeAlphabet has no vowels (no words) and no look-alikes.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCode returns 8 uniformly random letters of userCodeAlphabet: 20^8 (2.6e10)
// codes, each usable only through a sign-in at the IdP within its 10 minutes.
func userCode() string {
	out := make([]byte, 0, 8)
	var b [16]byte
	for len(out) < 8 {
		rand.Read(b[:])
		for _, v := range b {
			if v < 240 && len(out) < 8 { // 240 = 12*20: no modulo bias
				out = append(out, userCodeAlphabet[int(v)%len(userCodeAlphabet)])
			}
		}
	}
	return string(out)
}

// normalizeUserCode accepts "bcdf-ghjk", "BCDF GHJK" or "BCDFGHJK".
func normalizeUserCode(s string) (string, bool) {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(s)))
	if len(s) != 8 {
		return "", false
	}
	for _, c := range s {
		if !strings.ContainsRune(userCodeAlphabet, c) {
			return "", false
		}
	}
	return s, true
}

func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return s
}
