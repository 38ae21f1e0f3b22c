package broker

import "github.com/prometheus/client_golang/prometheus"

// Registerer is the registry the metrics are in, for the metrics of the parts
// the composition root wires next to the broker (notification delivery,
// notify/outbox), so one handler serves them all.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }
