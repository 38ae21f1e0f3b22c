// Package reconcile checks that the access ajar holds is what the world has:
// the drift check asks the providers (drift.go), and the report of grants of
// users removed from the policy asks the policy (orphans.go). It sits above
// package broker and uses its provider calls, which respect shared access, and
// its audit append; the broker never imports it. See docs/architecture.md.
package reconcile

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/policy"
)

// Config is what a Checker needs; cmd/ajar wires it.
type Config struct {
	Store     ajar.Store
	Policy    *policy.Policy
	Providers broker.Providers
	// Core is the broker: its provider calls and its audit append.
	Core *broker.Service
	// Registerer receives ajar_drift_total and ajar_grants_orphaned.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Checker runs the drift check and the orphan report. Its methods are safe
// for concurrent use.
type Checker struct {
	store     ajar.Store
	pol       *policy.Policy
	providers broker.Providers
	core      *broker.Service
	log       *slog.Logger
	timeout   time.Duration // the bound on one provider call, the scheduler's
	drift     *prometheus.CounterVec
	orphans   *orphanCollector
}

// New returns a Checker and registers its metrics.
func New(cfg Config) (*Checker, error) {
	if cfg.Store == nil || cfg.Policy == nil || cfg.Providers == nil || cfg.Core == nil || cfg.Registerer == nil {
		return nil, errors.New("reconcile: Store, Policy, Providers, Core and Registerer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checker{
		store: cfg.Store, pol: cfg.Policy, providers: cfg.Providers, core: cfg.Core, log: cfg.Logger,
		timeout: cfg.Core.ProviderTimeout(),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ajar_drift_total",
			Help: "Drift found by the periodic check, by target: access missing for an active request, or present for an ended one.",
		}, []string{"target"}),
		orphans: newOrphanCollector(cfg.Store),
	}
	if err := cfg.Registerer.Register(c.drift); err != nil {
		return nil, err
	}
	if err := cfg.Registerer.Register(c.orphans); err != nil {
		return nil, err
	}
	return c, nil
}
