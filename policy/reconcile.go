package policy

import "time"

// ReconcileConfig is the optional "reconcile" section: the periodic drift check
// that asks each provider able to tell (ajar.Verifier) whether access is where
// the store says it is. Access missing for an active request is granted again;
// access still present for a request that ended within Lookback is removed again.
// Both are audited as drift. Zero fields take the defaults: interval 5m,
// lookback 1h.
type ReconcileConfig struct {
	Interval Duration `yaml:"interval"`
	// Lookback is how long after its end a request is still checked.
	Lookback Duration `yaml:"lookback"`
}

// Default drift check settings.
const (
	DefaultReconcileInterval = 5 * time.Minute
	DefaultReconcileLookback = time.Hour
)

func (r *ReconcileConfig) applyDefaults() {
	if r.Interval == 0 {
		r.Interval = Duration(DefaultReconcileInterval)
	}
	if r.Lookback == 0 {
		r.Lookback = Duration(DefaultReconcileLookback)
	}
}

// Reconcile returns the "reconcile" section, defaults applied.
func (p *Policy) Reconcile() ReconcileConfig { return p.cfg.Reconcile }

// reconcile checks the "reconcile" section (defaults applied).
func (c *compiler) reconcile(r ReconcileConfig) {
	c.positive("reconcile.interval", time.Duration(r.Interval))
	c.positive("reconcile.lookback", time.Duration(r.Lookback))
	if r.Interval > 0 && time.Duration(r.Interval) < time.Second {
		c.add("reconcile.interval", "must be at least 1s, not %s: every check asks each target's provider about every active grant", r.Interval)
	}
}
