// Package identity authenticates people and manages their sessions and API
// tokens: every credential is a row of the store (ajar.Session) holding only
// the SHA-256 hash of its secret, with an expiry, its last use and its
// revocation. It sits beside the core: api, web and cmd/ajar call it, and the
// broker asks it who a user is through broker.Config.Users (Lookup). See
// docs/security.md, "Sessions and tokens".
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// Defaults and bounds.
const (
	DefaultTokenTTL   = 90 * 24 * time.Hour  // an API token's lifetime when none is given
	MaxTokenTTL       = 366 * 24 * time.Hour // the longest an API token may live
	MinTokenTTL       = time.Minute
	DevTokenTTL       = 365 * 24 * time.Hour // the tokens "ajar serve --dev" writes
	DefaultSessionTTL = 12 * time.Hour       // identity.session_ttl's default
	DefaultRefresh    = 10 * time.Minute     // identity.refresh's default
	// touchEvery bounds how often a session's LastUsedAt is written: at most
	// once a minute per session, not once per request.
	touchEvery = time.Minute
	maxSecret  = 256
	maxNameLen = 100
)

// GroupSource re-reads a person's groups at the IdP (implemented by
// identity/oidc.Client, adapted by the composition root).
type GroupSource interface {
	// Refresh returns the person's current groups and a possibly rotated
	// refresh token ("" keeps the old one). An error means the IdP no longer
	// vouches for them: the session is ended.
	Refresh(ctx context.Context, userID string, refreshToken string) (groups []string, newRefreshToken string, err error)
}

// Config is what a Service needs.
type Config struct {
	Store  ajar.Store
	Policy *policy.Policy
	// Sealer seals IdP refresh tokens at rest; required only when sessions
	// carry one (SignIn with a RefreshToken).
	Sealer ajar.Sealer
	// Groups re-reads groups at the IdP; nil: no IdP.
	Groups GroupSource
	// Refresh is how long a session's groups are trusted before they are read
	// again (identity.refresh; 0: DefaultRefresh).
	Refresh time.Duration
	// SessionTTL is how long a web or CLI session lasts (identity.session_ttl;
	// 0: DefaultSessionTTL).
	SessionTTL time.Duration
	// Now is the clock for checks made outside a store transaction; it must be
	// the store's clock.
	Now    func() time.Time
	Logger *slog.Logger
}

// Service authenticates secrets and manages sessions and tokens. Its methods
// are safe for concurrent use.
type Service struct {
	store      ajar.Store
	pol        *policy.Policy
	sealer     ajar.Sealer
	groups     GroupSource
	refresh    time.Duration
	sessionTTL time.Duration
	now        func() time.Time
	log        *slog.Logger
}

// New returns a Service. Store and Policy are required.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Policy == nil {
		return nil, errors.New("identity: Store and Policy are required")
	}
	if cfg.Refresh < 0 || cfg.SessionTTL < 0 {
		return nil, errors.New("identity: Refresh and SessionTTL must not be negative")
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: cfg.Store, pol: cfg.Policy, sealer: cfg.Sealer, groups: cfg.Groups,
		refresh: cfg.Refresh, sessionTTL: cfg.SessionTTL, now: cfg.Now, log: cfg.Logger}, nil
}

// SessionTTL is how long new web and CLI sessions last.
func (s *Service) SessionTTL() time.Duration { return s.sessionTTL }

// HashSecret returns the stored form of a token or session secret.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newSecret returns a fresh bearer secret: "ajar_" and 32 random bytes.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "ajar_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a public id: prefix and 16 random base32 characters.
func newID(prefix string) (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + strings.ToLower(idEncoding.EncodeToString(b[:])), nil
}

// isSystem reports whether actor is the zero user: the server itself or the
// host CLI working on the data directory ("ajar token create --data").
// Handlers always pass an authenticated user, whose ID is never empty.
func isSystem(actor ajar.User) bool { return actor.ID == "" }

func (s *Service) isAdmin(actor ajar.User) bool { return isSystem(actor) || s.pol.IsAdmin(actor) }

func actorID(actor ajar.User) string {
	if isSystem(actor) {
		return ajar.ActorSystem
	}
	return actor.ID
}

// union returns a's groups then b's not in a, without duplicates.
func union(a, b []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range append(append([]string(nil), a...), b...) {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// sourceRefused is the ajar.Identity.Source recorded when the IdP refused to
// confirm someone's groups: Lookup then knows them only from the policy file.
const sourceRefused = "oidc_refused"

// Lookup is the user directory: a user is known when the policy file lists
// them or the IdP vouched for them (a stored ajar.Identity); their groups are
// the static ones and the IdP's last known ones (none once the IdP refused to
// confirm them at a session's refresh, until it vouches again). ok is false for an unknown
// user; err only for a store failure. Without an IdP (Config.Groups nil) only
// the policy file is asked: no store read, so the broker may call it inside
// its transactions at no cost.
func (s *Service) Lookup(ctx context.Context, userID string) (ajar.User, bool, error) {
	id := ajar.CanonicalUserID(userID)
	static, known := s.pol.User(id)
	if s.groups == nil {
		if known {
			static.ID = id
		}
		return static, known, nil
	}
	var ident *ajar.Identity
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		ident, err = tx.GetIdentity(ctx, id)
		return err
	})
	switch {
	case ajar.ErrorCode(err) == ajar.ENOTFOUND:
	case err != nil:
		return ajar.User{}, false, err
	case ident.Source == sourceRefused: // the IdP's last word: it no longer vouches for them
	default:
		known = true
		static.Groups = union(static.Groups, ident.Groups)
	}
	if !known {
		return ajar.User{}, false, nil
	}
	static.ID = id
	return static, true, nil
}

// ParseTTL reads a token lifetime: a Go duration ("720h") or a whole number of
// days ("90d"); "" is 0 (the default). It returns EINVALID (field "ttl") for
// anything else or a lifetime CheckTokenTTL refuses.
func ParseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > int(MaxTokenTTL/(24*time.Hour)) {
			return 0, ajar.FieldErrorf("ttl", "%q is not a number of days between 1 and 366", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, ajar.FieldErrorf("ttl", "%q is not a duration such as 720h or 90d", s)
		}
	}
	return d, CheckTokenTTL(d)
}
