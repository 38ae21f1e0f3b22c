// Package sshhost is the server side of the SSH host-agent protocol: the
// revocation list hosts install for sshd, the authorized keys sshd asks for in
// authorized-keys mode, and the session reports host agents ("ajar node") send,
// judged against the requests in the store. It sits beside the core (package
// broker), which never imports it; the messages it shares with the agent are in
// sshhost/wire. See docs/architecture.md and docs/security.md.
package sshhost

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
)

// Limits on what hosts send, checked at the edge.
const (
	// maxSessionsPerReport bounds one session report.
	maxSessionsPerReport = 500
	// maxKeyRequests bounds the active requests of one target read for
	// AuthorizedKeysCommand; beyond it the oldest ones cannot log in (fail closed).
	maxKeyRequests = 10000
	maxHostLen     = 255
	maxUserLen     = 256
	maxSessionID   = 128
	maxReasonText  = 500
	// maxTargetLen is the limit on a target name of a new request.
	maxTargetLen = ajar.MaxTargetLen
)

// Providers finds the provider of a target or of a grant's handle (the core's
// broker.Providers has these methods).
type Providers interface {
	// ForTarget returns the provider configured for a target, or ENOTFOUND.
	ForTarget(target string) (ajar.Provider, error)
	// ForHandle returns the provider able to act on h.
	ForHandle(h ajar.Handle) (ajar.Provider, error)
}

// AuditFunc appends one audit event in tx, as the core records its own changes
// (broker.Service.AppendAudit). An error fails the transaction.
type AuditFunc func(ctx context.Context, tx ajar.Tx, actor, action, subject string, details any) error

// Config is what a Service needs. Store, Providers and Audit are required.
type Config struct {
	Store     ajar.Store
	Providers Providers
	Audit     AuditFunc
	// SSHCA returns the SSH CA public key line; nil when no CA is configured.
	SSHCA func() string
	// SSHKRL encodes a KRL revoking the given serials of the SSH CA's
	// certificates (see Service.SSHKRL); nil when no CA is configured.
	SSHKRL func(serials []uint64, generated time.Time) ([]byte, error)
	// Metrics is where the session-event counter is registered (the registry
	// the server's /metrics serves); nil: it is not registered.
	Metrics prometheus.Registerer
}

// Service serves the host-agent protocol. Its methods are safe for concurrent
// use.
type Service struct {
	store     ajar.Store
	providers Providers
	audit     AuditFunc
	sshCA     func() string
	sshKRL    func(serials []uint64, generated time.Time) ([]byte, error)
	krl       krlCache
	sessions  *prometheus.CounterVec // session events by event
}

// New returns a Service. It fails if a required field of cfg is missing or the
// metric cannot be registered.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Providers == nil || cfg.Audit == nil {
		return nil, errors.New("sshhost: Store, Providers and Audit are required")
	}
	sessions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ajar_ssh_session_events_total",
		Help: "SSH session events reported by host agents: opened, and ended (by the agent, because access ended).",
	}, []string{"event"})
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(sessions); err != nil {
			return nil, fmt.Errorf("sshhost: metrics: %w", err)
		}
	}
	return &Service{
		store:     cfg.Store,
		providers: cfg.Providers,
		audit:     cfg.Audit,
		sshCA:     cfg.SSHCA,
		sshKRL:    cfg.SSHKRL,
		sessions:  sessions,
	}, nil
}
