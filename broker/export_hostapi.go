package broker

import (
	"context"

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
