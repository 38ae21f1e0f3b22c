// Package metrics is the Prometheus registry that GET /metrics serves: the
// Go and process collectors, and the gauges read from the store at scrape
// time (requests by state, active grants, revocations that keep failing, open
// reviews), so they are right after a restart and across replicas. The
// counters are registered in it by the packages that count: broker,
// notify/outbox, sshhost, reconcile. See docs/architecture.md.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ajar-dev/ajar"
)

// New returns a registry with the Go and process collectors and the gauges
// read from st at scrape time.
func New(st ajar.Store) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := reg.Register(newWorkflowCollector(st)); err != nil { // open reviews
		return nil, err
	}
	return reg, reg.Register(&stateCollector{
		store:        st,
		byState:      prometheus.NewDesc("ajar_requests", "Requests by state.", []string{"state"}, nil),
		active:       prometheus.NewDesc("ajar_grants_active", "Grants whose access exists now.", nil, nil),
		revokeFailed: prometheus.NewDesc("ajar_revoke_failed", "Requests whose revocation keeps failing (retried on a slow timer).", nil, nil),
	})
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
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

// workflowCollector reads open reviews from the store at scrape time (the
// pending notifications are notify/outbox's).
type workflowCollector struct {
	store   ajar.Store
	reviews *prometheus.Desc
}

func newWorkflowCollector(st ajar.Store) *workflowCollector {
	return &workflowCollector{
		store:   st,
		reviews: prometheus.NewDesc("ajar_reviews_open", "Break-glass review tasks not closed yet.", nil, nil),
	}
}

func (c *workflowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reviews
}

func (c *workflowCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var open int
	err := c.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		open, err = tx.CountOpenReviews(ctx)
		return err
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.reviews, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.reviews, prometheus.GaugeValue, float64(open))
}
