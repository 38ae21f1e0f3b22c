// Package readmodel holds what people read about ajar's requests: the
// targets a user may request, the lists (requests, "My access", break-glass
// reviews), what the policy would do with a request (Explain, the dry run),
// one evidence type that the
// API serves as JSON, ajar evidence renders as Markdown and the web's
// evidence page shows; the searchable audit log; and the web's view models
// (an approver's inbox with why a person cannot decide, the form for
// requesting a target).
//
// It sits above package broker and decides nothing: who may see a request,
// who may decide on it and what a provider answers are the broker's rules,
// which this package asks (see docs/architecture.md). The broker never
// imports it.
package readmodel

import (
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/policy"
)

// Config is what a Reader reads from; cmd/ajar wires the same store, policy,
// providers and clock as the broker's.
type Config struct {
	// Core is the broker: who may see a request and who may decide on it.
	Core      *broker.Service
	Store     ajar.Store
	Policy    *policy.Policy
	Providers broker.Providers
	// Now is the store's clock (the broker's Config.Now).
	Now func() time.Time
	// Signer signs audit checkpoints; nil: none are signed.
	Signer CheckpointSigner
}

// CheckpointSigner signs audit checkpoints (see package audit).
type CheckpointSigner interface {
	Sign(size int64, head []byte) ([]byte, error)
	VerifierKey() string
}

// Reader answers the read model's questions. Its methods are safe for
// concurrent use.
type Reader struct {
	core      *broker.Service
	store     ajar.Store
	pol       *policy.Policy
	providers broker.Providers
	now       func() time.Time
	signer    CheckpointSigner
}

// New returns a Reader over cfg.
func New(cfg Config) *Reader {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reader{core: cfg.Core, store: cfg.Store, pol: cfg.Policy, providers: cfg.Providers, now: cfg.Now, signer: cfg.Signer}
}
