package readmodel

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
)

// ExportAudit's pages: how many events one read transaction reads (a
// variable for tests), and how many pages are read at once (SQLite reads in
// parallel on its pool of read connections; decoding rows, not the disk, is
// what bounds it).
var auditStreamPage int64 = 10000

const auditStreamReaders = 2

// ExportAudit calls fn with the events of the log after after, in Seq order,
// a page at a time, up to the head the log had when it began: a log that
// grows meanwhile does not keep it going. Each page is the events of a range
// of Seq, read in its own View (so no transaction stays open for the whole
// log), and the next pages are read while fn handles one; fn may keep no page
// past its call. A gap in Seq (a deleted event) is left for the verifier to
// see. Admins only (EFORBIDDEN otherwise, before fn is called). It returns
// fn's error, or the store's.
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
	type result struct {
		page []ajar.AuditEvent
		err  error
	}
	read := func(ctx context.Context, lo int64) (page []ajar.AuditEvent, err error) {
		err = s.store.View(ctx, func(tx ajar.ReadTx) error {
			page, err = tx.ListAudit(ctx, ajar.AuditFilter{AfterSeq: lo, BeforeSeq: min(lo+auditStreamPage, head) + 1, Limit: int(auditStreamPage)})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("audit events after %d: %w", lo, err)
		}
		return page, nil
	}
	// The pages in order, each a result to come: at most auditStreamReaders
	// read ahead of the one fn handles.
	ctx, cancel := context.WithCancel(ctx)
	pending := make(chan chan result, auditStreamReaders-1)
	go func() {
		defer close(pending)
		for lo := after; lo < head; lo += auditStreamPage {
			ch := make(chan result, 1)
			select {
			case pending <- ch:
			case <-ctx.Done():
				return
			}
			go func() {
				page, err := read(ctx, lo)
				ch <- result{page, err}
			}()
		}
	}()
	defer func() {
		cancel()
		for ch := range pending { // let every reader finish before returning
			<-ch
		}
	}()
	for ch := range pending {
		r := <-ch
		if r.err != nil {
			return r.err
		}
		if err := fn(r.page); err != nil {
			return err
		}
	}
	return nil
}
