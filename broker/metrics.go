package broker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the broker's counters. The gauges read from the store at scrape
// time, and the registry that serves them all, are package metrics'.
type Metrics struct {
	created        prometheus.Counter
	revocationLag  prometheus.Histogram
	providerErrors *prometheus.CounterVec
	limits         *prometheus.CounterVec
}

// NewMetrics creates the broker's counters in reg (a new registry when nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ajar_requests_created_total", Help: "Access requests created.",
		}),
		revocationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ajar_revocation_lag_seconds",
			Help:    "Time from a grant's expiry to the provider's Revoke call.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}),
		providerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ajar_provider_errors_total", Help: "Provider calls that failed, by provider and operation.",
		}, []string{"provider", "op"}),
	}
	reg.MustRegister(m.created, m.revocationLag, m.providerErrors)
	m.limits = newLimitCounter(reg)
	return m
}
