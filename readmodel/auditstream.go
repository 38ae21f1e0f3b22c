package readmodel

import (
	"context"

	"github.com/ajar-dev/ajar"
)

// auditStreamPage is how many events ExportAudit reads in one transaction.
const auditStreamPage = 10000

// ExportAudit calls fn with the events of the log after after, in Seq order,
// a page at a time, up to the head the log had when it began: a log that
// grows meanwhile does not keep it going. Each page is read in its own View,
// so no transaction stays open for the whole log, and fn may keep no page
// past its call. Admins only (EFORBIDDEN otherwise, before fn is called). It
// returns fn's error, or the store's, wrapped.
func (s *Reader) ExportAudit(ctx context.Context, u ajar.User, after int64, fn func([]ajar.AuditEvent) error) error {
	if !s.pol.IsAdmin(u) {
		return ajar.Errorf(ajar.EFORBIDDEN, "only admins can read the whole audit log")
	}
	var head int64
	if err := s.store.View(ctx, func(tx ajar.ReadTx) (err error) {
		head, _, err = tx.AuditHead(ctx)
		return err
	}); err != nil {
		return err
	}
	for after < head {
		var page []ajar.AuditEvent
		err := s.store.View(ctx, func(tx ajar.ReadTx) (err error) {
			page, err = tx.ListAudit(ctx, ajar.AuditFilter{AfterSeq: after, Limit: auditStreamPage})
			return err
		})
		if err != nil {
			return err
		}
		for len(page) > 0 && page[len(page)-1].Seq > head {
			page = page[:len(page)-1]
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		after = page[len(page)-1].Seq
	}
	return nil
}
