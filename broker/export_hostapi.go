package broker

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
)

// AppendAudit appends one audit event in tx exactly as the core records its own
// changes (the hash chain, and the notification outbox in the same
// transaction). It is for the protocols beside the core that record events in
// their own transactions (package sshhost, wired in by cmd/ajar). An error fails
// the transaction: an audit write that fails fails the operation.
func (s *Service) AppendAudit(ctx context.Context, tx ajar.Tx, actor, action, subject string, details any) error {
	return s.audit(ctx, tx, actor, action, subject, details)
}

// Registerer returns the registry the metrics are in (the one Handler serves),
// for the packages beside the core to register their own metrics in.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }
