package ajar

import "time"

// Session kinds.
const (
	SessionToken = "token" // an API token: made by "ajar token create", default lifetime 90 days
	SessionWeb   = "web"   // a web sign-in (the cookie's secret)
	SessionCLI   = "cli"   // a CLI sign-in ("ajar login")
)

// Session is a sign-in or an API token as stored: only the SHA-256 hash of its
// secret, never the secret. Lists and revocation name it by ID.
type Session struct {
	ID          string    // public id: "ses_" or "tok_" and 16 random characters
	Hash        []byte    // SHA-256 of the secret (bearer token or cookie value)
	Kind        string    // SessionToken, SessionWeb or SessionCLI
	UserID      string    // canonical user id
	Name        string    // a token's name; a sign-in's short description
	Groups      []string  // groups from the IdP at the last read; nil for static users and tokens
	CreatedAt   time.Time //
	ExpiresAt   time.Time // always set
	LastUsedAt  time.Time // zero: never used; written at most once a minute
	RefreshedAt time.Time // last time Groups were read from the IdP; a minute ahead of now while a refresh is at the IdP (the claim holds off other callers)
	Refresh     []byte    // the IdP refresh token sealed with the master key ("session-refresh:"+ID); nil if none
	MFAAt       time.Time // last MFA step-up in this session (zero: never)
	RevokedAt   time.Time // zero while not revoked
	RevokedBy   string    // who revoked it
	// Parent is the id of the API token a web session was signed in with ("" for
	// none): the session works only while that token does.
	Parent string
}

// Ended reports whether s can no longer be used at now: revoked or expired.
func (s *Session) Ended(now time.Time) bool {
	return !s.RevokedAt.IsZero() || !now.Before(s.ExpiresAt)
}

// SessionFilter selects sessions in ReadTx.ListSessions. Zero fields match anything.
type SessionFilter struct {
	Kinds  []string // keep these kinds only
	UserID string   // keep one user's sessions
	// IncludeEnded keeps revoked and expired sessions too (expiry is decided by the
	// store's clock); without it only sessions still valid at Now are listed.
	IncludeEnded bool
	Limit        int // 0 means the store's default (1000)
}

// Identity is what ajar last learned about a person from the IdP (groups), for
// decisions made when that person is not the one calling (re-checks at grant and
// extension time, orphan reports).
type Identity struct {
	UserID    string
	Groups    []string
	Source    string // "oidc"
	UpdatedAt time.Time
}

// AuthFlow is one short-lived, one-use step of a sign-in: an OIDC state, a CLI
// one-time code, a device code.
type AuthFlow struct {
	Kind      string // "oidc_state", "cli_code", "device"
	KeyHash   []byte // SHA-256 of the secret the browser or CLI presents
	Data      []byte // JSON owned by the caller
	ExpiresAt time.Time
}

// WebAuthnCredential is a security key or passkey registered by a user.
type WebAuthnCredential struct {
	UserID     string
	ID         []byte // the credential id
	Name       string
	Data       []byte // JSON of the webauthn library's credential (public key, sign count)
	CreatedAt  time.Time
	LastUsedAt time.Time
}
