package readmodel

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
)

// ExportAudit's pages: how many events one read transaction reads (a
// variable for tests), and how many pages are read at once (SQLite reads in
// parallel on its pool of read connections; decoding rows, not the disk, is
// what bounds it). store/sqlite opens a connection for each page of the
// stream (ReadAuditRows), and its first statement reads the schema: 20,000
// events a page keep that to about 3% of the work, with 4 MB a page.
var auditStreamPage int64 = 20000

const auditStreamReaders = 2

// AuditRowReader is what a store may offer beside ajar.Store to read the log
// for the audit stream without decoding it into events (store/sqlite):
// each event whose Seq is in (after, upTo], in Seq order, as stored, valid
// during fn's call only.
type AuditRowReader interface {
	ReadAuditRows(ctx context.Context, after, upTo int64, fn func(*audit.RawEvent) error) error
}

// ExportAudit calls fn with the events of the log after after, in Seq order,
// a page at a time, up to the head the log had when it began: a log that
// grows meanwhile does not keep it going. Each page is the events of a range
// of Seq, read in its own View (so no transaction stays open for the whole
// log), and the next pages are read while fn handles one; fn may keep no page
// past its call. A gap in Seq (a deleted event) is left for the verifier to
// see. Admins only (EFORBIDDEN otherwise, before fn is called). It returns
// fn's error, or the store's.
func (s *Reader) ExportAudit(ctx context.Context, u ajar.User, after int64, fn func([]ajar.AuditEvent) error) error {
	head, err := s.exportHead(ctx, u)
	if err != nil {
		return err
	}
	return exportPages(ctx, after, head, func(ctx context.Context, lo, hi int64) ([]ajar.AuditEvent, error) {
		return s.auditPage(ctx, lo, hi)
	}, fn, nil)
}

// ExportAuditRecords is ExportAudit for the audit stream: each page comes as
// its events' stream records (audit.Records), encoded by the goroutines that
// read the pages, while fn writes the one before. A store with
// AuditRowReader hands its rows over as stored; any other is read as events
// and encoded. The same guarantees and errors as ExportAudit; fn may keep no
// page past its call.
func (s *Reader) ExportAuditRecords(ctx context.Context, u ajar.User, after int64, fn func(*audit.Records) error) error {
	head, err := s.exportHead(ctx, u)
	if err != nil {
		return err
	}
	rr, raw := s.store.(AuditRowReader)
	// The pages' buffers, used again once written: the pages being read
	// and the one being written.
	free := make(chan []byte, auditStreamReaders+1)
	read := func(ctx context.Context, lo, hi int64) (*audit.Records, error) {
		var r audit.Records
		select {
		case r.B = <-free:
		default:
		}
		if !raw {
			page, err := s.auditPage(ctx, lo, hi)
			if err != nil {
				return nil, err
			}
			for i := range page {
				r.B = audit.AppendRecord(r.B, &page[i])
				r.N++
				r.Last = page[i].Seq
			}
			return &r, nil
		}
		if err := rr.ReadAuditRows(ctx, lo, hi, func(e *audit.RawEvent) error { r.Add(e); return nil }); err != nil {
			return nil, fmt.Errorf("audit events after %d: %w", lo, err)
		}
		return &r, nil
	}
	return exportPages(ctx, after, head, read, fn, func(r *audit.Records) {
		select {
		case free <- r.B[:0]:
		default:
		}
	})
}

// exportHead checks that u may read the whole log and returns its head.
func (s *Reader) exportHead(ctx context.Context, u ajar.User) (head int64, err error) {
	if !s.pol.IsAdmin(u) {
		return 0, ajar.Errorf(ajar.EFORBIDDEN, "only admins can read the whole audit log")
	}
	err = s.store.View(ctx, func(tx ajar.ReadTx) (err error) {
		head, _, err = tx.AuditHead(ctx)
		return err
	})
	return head, err
}

// auditPage reads the events in (lo, hi] in a View of their own.
func (s *Reader) auditPage(ctx context.Context, lo, hi int64) (page []ajar.AuditEvent, err error) {
	err = s.store.View(ctx, func(tx ajar.ReadTx) error {
		page, err = tx.ListAudit(ctx, ajar.AuditFilter{AfterSeq: lo, BeforeSeq: hi + 1, Limit: int(hi - lo)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit events after %d: %w", lo, err)
	}
	return page, nil
}

// exportPages reads the log's pages in (after, head], auditStreamPage events
// each, with read, at most auditStreamReaders at once, and calls fn with
// each in order, then done (if not nil) once fn is done with it. It returns
// the first error of read or fn, after every read has returned.
func exportPages[P any](ctx context.Context, after, head int64, read func(ctx context.Context, lo, hi int64) (P, error), fn func(P) error, done func(P)) error {
	type result struct {
		page P
		err  error
	}
	// The pages in order, each a result to come: at most auditStreamReaders
	// read ahead of the one fn handles.
	ctx, cancel := context.WithCancel(ctx)
	pending := make(chan chan result, auditStreamReaders)
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
				page, err := read(ctx, lo, min(lo+auditStreamPage, head))
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
		if done != nil {
			done(r.page)
		}
	}
	return nil
}
