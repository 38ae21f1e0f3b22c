package ajar

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// GrantRequest is everything a provider needs to create access. It is saved inside
// the Handle before Grant is called, so a later Revoke never depends on today's config.
type GrantRequest struct {
	RequestID string            `json:"request_id"`
	Target    string            `json:"target"`
	Requester string            `json:"requester"`
	Params    map[string]string `json:"params,omitempty"`
	ExpiresAt time.Time         `json:"expires_at"`
	// NotAfter is the latest instant this access may ever reach, extensions
	// included: the window's start plus the rule's extend.max_total (or its
	// duration when it cannot be extended). Zero in grants recorded before it
	// existed. Providers never set an expiry past it (see Until).
	NotAfter time.Time `json:"not_after,omitzero"`
	// Config is the target's provider config as it was when the grant was made.
	Config json.RawMessage `json:"config,omitempty"`
}

// Handle is the typed, versioned record of what a provider created: everything its
// Revoke needs. A Handle with empty Data is an intent: it was written before Grant was
// called and the outcome is unknown (a crash in between), so Revoke must remove any
// access tagged with the request ID.
type Handle struct {
	Provider string          `json:"provider"`
	Version  int             `json:"version"`
	Grant    GrantRequest    `json:"grant"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Provider creates and removes access on a real system.
//
// Grant must be idempotent: granting the same request twice gives one access.
// Revoke must be idempotent: revoking what is already gone returns nil. A provider
// never removes access it did not create. Errors are retried by the scheduler with
// backoff; a provider returns an *Error with EINVALID only when retrying can never help.
type Provider interface {
	Grant(ctx context.Context, req GrantRequest) (Handle, error)
	Revoke(ctx context.Context, h Handle) error
}

// LocalGranter is an optional Provider capability of providers whose Grant
// changes nothing outside ajar: it only computes the handle from the grant
// request and the provider's config (ssh-cert, whose access is the
// certificates ajar signs and records). Such a Grant must not block or do
// I/O. The broker calls it inside the transaction that records the grant
// intent, so an auto-approved request is created, granted and activated in one
// commit (docs/architecture.md, "The common path in one commit").
type LocalGranter interface {
	Provider
	GrantsLocally() bool
}

// Verifier is an optional Provider capability: it reports whether the access
// described by h exists right now (for drift checks and evidence).
type Verifier interface {
	Verify(ctx context.Context, h Handle) (bool, error)
}

// Renewer is an optional Provider capability: it moves the expiry of existing
// access in place without a gap.
type Renewer interface {
	Renew(ctx context.Context, h Handle, expiresAt time.Time) (Handle, error)
}

// ParamsValidator is an optional Provider capability: it checks a request's
// parameters at the edge, before anything is stored. It returns an EINVALID *Error
// whose Field is "params.NAME".
type ParamsValidator interface {
	ValidateParams(params map[string]string) error
}

// SSHCertIssuer is an optional Provider capability for providers that hand out
// OpenSSH user certificates for an active grant.
type SSHCertIssuer interface {
	// SignCert certifies publicKey (authorized_keys format) for the grant in h,
	// valid from now-1m until the grant's expiry, with the given non-zero serial.
	// It returns the certificate in authorized_keys format and what was issued.
	// A grant whose hosts take plain keys (see SSHHosts) gets no certificate: cert
	// is nil and info records the authorized key under serial. It returns
	// EINVALID (field "public_key") for a key it cannot parse.
	SignCert(h Handle, publicKey []byte, serial uint64, now time.Time) (cert []byte, info SSHCert, err error)
	// PrepareCert is SignCert in two steps: it checks what SignCert checks and
	// returns what it would issue, and sign makes that certificate (nil for a
	// grant that takes plain keys). A caller records info in its transaction
	// and calls sign once, after the commit, so that the signature takes none
	// of the store's writer time; sign fails only if the CA cannot sign.
	PrepareCert(h Handle, publicKey []byte, serial uint64, now time.Time) (info SSHCert, sign func() ([]byte, error), err error)
	// CheckPublicKey returns the EINVALID error SignCert would return for
	// publicKey, or nil, so that bad input is refused before anything is stored.
	CheckPublicKey(publicKey []byte) error
}

// SSHHosts is an optional Provider capability of targets whose SSH hosts run the
// ajar host agent ("ajar node").
type SSHHosts interface {
	// AllowsNode reports whether u may act as a host agent of the provider's
	// target: read its authorized keys and report its SSH sessions.
	AllowsNode(u User) bool
	// TakesPlainKeys reports whether the hosts of the grant in h let its
	// requester in with a plain public key (checked with AuthorizedKeys) rather
	// than a certificate.
	TakesPlainKeys(h Handle) bool
	// AuthorizedKeys returns the authorized_keys lines (each with an expiry-time
	// option) that let the keys recorded for the grant in h log in as user at now.
	// It returns none when h's hosts do not take plain keys, when the grant does
	// not allow user, or when every key has expired.
	AuthorizedKeys(h Handle, keys []SSHCert, user string, now time.Time) ([]string, error)
}

// CredentialIssuer is an optional Provider capability for providers that vend
// short-lived cloud credentials for an active grant (aws-sts). The broker returns
// them once to the requester and never stores, logs or audits them.
type CredentialIssuer interface {
	// IssueCredentials returns new credentials for the grant in h that expire no
	// later than the grant, unless the target's minimum lifetime is longer (the
	// provider's Revoke then cuts them off at the end). It returns ECONFLICT if h
	// is only an intent or the grant has expired at now.
	IssueCredentials(ctx context.Context, h Handle, now time.Time) (Credentials, error)
}

// Credentials are short-lived cloud credentials. They are secrets: String and
// LogValue show only the access key id, which is not secret (CloudTrail logs it).
type Credentials struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token"`
	Expiration      time.Time `json:"expiration"`
	// Region is the target's region, for clients that need one.
	Region string `json:"region,omitempty"`
}

// String shows the access key id and the expiry, never the secrets.
func (c Credentials) String() string {
	return "credentials " + c.AccessKeyID + " (expire " + c.Expiration.UTC().Format(time.RFC3339) + ")"
}

// LogValue keeps the secrets out of structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access_key_id", c.AccessKeyID), slog.Time("expiration", c.Expiration))
}

// Sharer is an optional Provider capability for providers whose grants for
// different requests can be one and the same access on the target, which the
// target cannot tag with the requests holding it (one Identity Center account
// assignment for the same user's requests). The broker counts the holders: it
// does not call Revoke while another live request of the same requester (active,
// or with a grant in flight) has a handle with the same key, and the drift check
// does not treat access that such a request holds as drift.
type Sharer interface {
	// ShareKey names the access that req maps to; "" means never shared.
	ShareKey(req GrantRequest) string
}

// SharedAccess is an optional Provider capability for providers whose grants
// for different requests can be one and the same access on the target, whose
// holders the provider counts itself (a security group rule tagged with every
// request holding it). Deciding whether a revocation removes the access or only
// lets go of it, and whether a grant creates it or joins it, takes more than one
// call to the target, so those calls must not interleave across replicas: the
// broker holds one store lease per key (ajar.Tx.AcquireLease) around every Grant
// and Revoke of such access. A Sharer's ShareKey is locked the same way.
type SharedAccess interface {
	// AccessKey names the access that req maps to; "" means never shared.
	AccessKey(req GrantRequest) string
}
