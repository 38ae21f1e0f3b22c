package broker

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ajar-dev/ajar"
)

// Metrics are the Prometheus metrics of the broker. Counts by state are read from
// the store at scrape time, so they are right after a restart and across replicas.
type Metrics struct {
	reg            *prometheus.Registry
	created        prometheus.Counter
	revocationLag  prometheus.Histogram
	providerErrors *prometheus.CounterVec
	limits         *prometheus.CounterVec
}

// NewMetrics creates the broker's metrics in reg (a new registry with the Go and
// process collectors when nil).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Metrics{
		reg: reg,
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

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// stateCollector reads request counts by state from the store at scrape time.
type stateCollector struct {
	store        ajar.Store
	byState      *prometheus.Desc
	active       *prometheus.Desc
	revokeFailed *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.active
	ch <- c.revokeFailed
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var counts map[ajar.State]int
	err := c.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		counts, err = tx.CountByState(ctx)
		return err
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.byState, err)
		return
	}
	for _, st := range ajar.States {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(counts[ajar.StateActive]))
	ch <- prometheus.MustNewConstMetric(c.revokeFailed, prometheus.GaugeValue, float64(counts[ajar.StateRevokeFailed]))
}

func (m *Metrics) registerStore(st ajar.Store) error {
	if err := m.reg.Register(newWorkflowCollector(st)); err != nil { // open reviews
		return err
	}
	return m.reg.Register(&stateCollector{
		store:        st,
		byState:      prometheus.NewDesc("ajar_requests", "Requests by state.", []string{"state"}, nil),
		active:       prometheus.NewDesc("ajar_grants_active", "Grants whose access exists now.", nil, nil),
		revokeFailed: prometheus.NewDesc("ajar_revoke_failed", "Requests whose revocation keeps failing (retried on a slow timer).", nil, nil),
	})
}
