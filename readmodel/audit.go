package readmodel

import (
	"context"
	"fmt"
	"time"

	"github.com/ajar-dev/ajar"
)

// AuditQuery selects events in SearchAudit. Zero fields match anything.
type AuditQuery struct {
	Request string    // the event's subject
	User    string    // the event's actor, or the requester of the request it is about
	Target  string    // the target of the request it is about
	Action  string    // exact ("request.approved"), or a prefix ending in "." ("request.")
	From    time.Time // events at or after
	To      time.Time // events before
	Limit   int       // the newest Limit matches; 0 means DefaultAuditSearchLimit
	// Before, when positive, selects events older than the event of that Seq:
	// the next page of a search is the same query with Before set to the Seq
	// of the last (oldest) record of this one.
	Before int64
}

// Audit search limits.
const (
	DefaultAuditSearchLimit = 200
	MaxAuditSearchLimit     = 1000
	maxQueryField           = 200
	// maxAuditScan bounds the events one search by someone who is not an
	// admin reads (the matches of the store's indexes, newest first, checked
	// one by one against what the user may see): a page that found fewer
	// records than its limit by then ends there, with More and Before set
	// to go on from the oldest event read.
	maxAuditScan = 5000
)

// AuditRecord is an audit event with the request it is about, when it is one.
type AuditRecord struct {
	ajar.AuditEvent
	Target    string `json:"target,omitempty"`
	Requester string `json:"requester,omitempty"`
}

// AuditSearch is the result of SearchAudit: the newest matches first.
type AuditSearch struct {
	Records []AuditRecord `json:"records"`
	// More is true when more events may match than the records: ask again
	// with Before.
	More bool `json:"more"`
	// Before is, when More, the AuditQuery.Before of the next page: the seq
	// of the last record, or of the oldest event a search by someone who is
	// not an admin read before it stopped (see maxAuditScan).
	Before int64 `json:"before,omitempty"`
	// All is true when the user may read the whole log (an admin); otherwise the
	// search covered only the requests the user can see.
	All bool `json:"all"`
}

func (q AuditQuery) validate() (AuditQuery, error) {
	for _, f := range []struct{ name, v string }{{"request", q.Request}, {"user", q.User}, {"target", q.Target}, {"action", q.Action}} {
		if len(f.v) > maxQueryField {
			return q, ajar.FieldErrorf(f.name, "longer than %d characters", maxQueryField)
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, ajar.FieldErrorf("to", "must be after from")
	}
	if q.Before < 0 {
		return q, ajar.FieldErrorf("before", "must not be negative")
	}
	switch {
	case q.Limit < 0:
		return q, ajar.FieldErrorf("limit", "must not be negative")
	case q.Limit == 0:
		q.Limit = DefaultAuditSearchLimit
	case q.Limit > MaxAuditSearchLimit:
		return q, ajar.FieldErrorf("limit", "must be at most %d", MaxAuditSearchLimit)
	}
	return q, nil
}

// filter is the store filter of q: its newest Limit+1 matches (one more tells
// whether more follow).
func (q AuditQuery) filter() ajar.AuditFilter {
	return ajar.AuditFilter{
		Subject: q.Request, User: q.User, Target: q.Target, Action: q.Action,
		From: q.From, To: q.To, BeforeSeq: q.Before, Newest: true, Limit: q.Limit + 1,
	}
}

// SearchAudit finds audit events, newest first. Admins search the whole log;
// anyone else searches the events of the requests they can see (as GetRequest
// decides), which is what Audit lets them read one request at a time.
//
// The store answers each search with its indexes (ajar.AuditFilter): a search
// for one request, user, target or time range reads the matching events, not
// the log. For someone who is not an admin those matches are then checked
// against the requests they can see, at most maxAuditScan of them per page.
func (s *Reader) SearchAudit(ctx context.Context, u ajar.User, q AuditQuery) (*AuditSearch, error) {
	q, err := q.validate()
	if err != nil {
		return nil, err
	}
	all := s.pol.IsAdmin(u)
	res := &AuditSearch{All: all}
	var evs []ajar.AuditEvent
	switch {
	case q.Request != "" || all:
		if !all {
			if _, err := s.core.GetRequest(ctx, u, q.Request); err != nil {
				return nil, err
			}
		}
		err = s.store.View(ctx, func(tx ajar.ReadTx) (err error) {
			evs, err = tx.ListAudit(ctx, q.filter())
			return err
		})
	default:
		err = s.store.View(ctx, func(tx ajar.ReadTx) (err error) {
			evs, res.Before, err = s.visibleAudit(ctx, tx, u, q)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("search audit log: %w", err)
	}
	if len(evs) > q.Limit {
		evs = evs[:q.Limit]
		res.Before = evs[len(evs)-1].Seq
	}
	res.More = res.Before > 0
	if res.Records, err = s.auditRecords(ctx, evs); err != nil {
		return nil, fmt.Errorf("search audit log: %w", err)
	}
	return res, nil
}

// visibleAudit returns the newest q.Limit+1 events that match q and are about
// a request u can see, reading at most maxAuditScan matches in tx. When it
// stops at that bound with fewer, stopped is the seq of the oldest event it
// read (the next page goes on before it); else 0.
func (s *Reader) visibleAudit(ctx context.Context, tx ajar.ReadTx, u ajar.User, q AuditQuery) (evs []ajar.AuditEvent, stopped int64, err error) {
	f := q.filter()
	f.Limit = min(max(f.Limit, 500), maxAuditScan)
	visible := map[string]bool{} // subject -> about a request u can see
	for read := 0; ; {
		page, err := tx.ListAudit(ctx, f)
		if err != nil {
			return nil, 0, err
		}
		for _, e := range page {
			ok, known := visible[e.Subject]
			if !known {
				r, err := tx.GetRequest(ctx, e.Subject)
				switch {
				case ajar.ErrorCode(err) == ajar.ENOTFOUND: // about no request
				case err != nil:
					return nil, 0, err
				default:
					ok = s.core.CanSee(u, r) // the broker's rule, as GetRequest
				}
				visible[e.Subject] = ok
			}
			if ok {
				if evs = append(evs, e); len(evs) > q.Limit {
					return evs, 0, nil
				}
			}
		}
		read += len(page)
		if len(page) < f.Limit {
			return evs, 0, nil // the end of the matches
		}
		f.BeforeSeq = page[len(page)-1].Seq
		if read >= maxAuditScan {
			return evs, f.BeforeSeq, nil
		}
	}
}

// auditRecords adds to each event the request it is about, when it is one.
func (s *Reader) auditRecords(ctx context.Context, evs []ajar.AuditEvent) ([]AuditRecord, error) {
	recs := make([]AuditRecord, 0, len(evs))
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		requests := map[string]*ajar.Request{} // subject -> request (nil: not a request)
		for _, e := range evs {
			r, ok := requests[e.Subject]
			if !ok {
				var err error
				r, err = tx.GetRequest(ctx, e.Subject)
				if ajar.ErrorCode(err) == ajar.ENOTFOUND {
					r, err = nil, nil
				}
				if err != nil {
					return err
				}
				requests[e.Subject] = r
			}
			rec := AuditRecord{AuditEvent: e}
			if r != nil {
				rec.Target, rec.Requester = r.Target, r.Requester
			}
			recs = append(recs, rec)
		}
		return nil
	})
	return recs, err
}
