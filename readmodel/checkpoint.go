package readmodel

import (
	"context"

	"github.com/ajar-dev/ajar"
)

// The audit log as the API serves it: pages of events, and signed
// checkpoints of its head (see package audit).

// Audit lists audit events. Admins read the whole log; anyone else must name a
// request they can see (f.Subject).
func (s *Reader) Audit(ctx context.Context, u ajar.User, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	if !s.pol.IsAdmin(u) {
		if f.Subject == "" {
			return nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can read the whole audit log; name a request")
		}
		if _, err := s.core.GetRequest(ctx, u, f.Subject); err != nil {
			return nil, err
		}
	}
	var evs []ajar.AuditEvent
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(ctx, f)
		return err
	})
	return evs, err
}

// Checkpoint signs the audit log's current size and head hash. Admins only.
func (s *Reader) Checkpoint(ctx context.Context, u ajar.User) ([]byte, error) {
	if !s.pol.IsAdmin(u) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can read audit checkpoints")
	}
	if s.signer == nil {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "this server does not sign checkpoints")
	}
	var seq int64
	var head []byte
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		seq, head, err = tx.AuditHead(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if seq == 0 {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "the audit log is empty")
	}
	return s.signer.Sign(seq, head)
}

// AuditKey returns the public note verifier key for checkpoints.
func (s *Reader) AuditKey() string {
	if s.signer == nil {
		return ""
	}
	return s.signer.VerifierKey()
}
