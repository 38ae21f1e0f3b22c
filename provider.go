package ajar

import (
	"context"
	"encoding/json"
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
	// It returns EINVALID (field "public_key") for a key it cannot parse.
	SignCert(h Handle, publicKey []byte, serial uint64, now time.Time) (cert []byte, info SSHCert, err error)
}
