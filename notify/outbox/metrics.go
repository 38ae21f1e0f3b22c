package outbox

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
)

// metrics are the counters of notification delivery.
type metrics struct {
	delivered, failed, dropped *prometheus.CounterVec
}

// newMetrics registers the delivery counters and the pending gauge in reg.
func newMetrics(reg prometheus.Registerer, st ajar.Store) (*metrics, error) {
	m := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ajar_notifications_delivered_total", Help: "Notifications a sink accepted, by sink.",
		}, []string{"sink"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ajar_notification_failures_total", Help: "Notification delivery attempts that failed (retried), by sink.",
		}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ajar_notifications_dropped_total", Help: "Notifications given up on after retrying for too long, by sink.",
		}, []string{"sink"}),
	}
	for _, c := range []prometheus.Collector{m.delivered, m.failed, m.dropped, newPendingCollector(st)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// pendingCollector reads pending notifications from the store at scrape time.
type pendingCollector struct {
	store   ajar.Store
	pending *prometheus.Desc
}

func newPendingCollector(st ajar.Store) *pendingCollector {
	return &pendingCollector{
		store:   st,
		pending: prometheus.NewDesc("ajar_notifications_pending", "Notifications not delivered yet, by sink.", []string{"sink"}, nil),
	}
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pending map[string]int
	err := c.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		pending, err = tx.CountPendingNotifications(ctx)
		return err
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	for sink, n := range pending {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(n), sink)
	}
}
