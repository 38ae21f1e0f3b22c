package readmodel

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
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
	// More is true when more events matched than the limit.
	More bool `json:"more"`
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

// match reports whether an event about request r (nil when it is about no
// request) is selected by q.
func (q AuditQuery) match(e *ajar.AuditEvent, r *ajar.Request) bool {
	switch {
	case q.Request != "" && e.Subject != q.Request,
		q.Before > 0 && e.Seq >= q.Before,
		q.Action != "" && e.Action != q.Action && !(strings.HasSuffix(q.Action, ".") && strings.HasPrefix(e.Action, q.Action)),
		!q.From.IsZero() && e.Time.Before(q.From),
		!q.To.IsZero() && !e.Time.Before(q.To),
		q.Target != "" && (r == nil || r.Target != q.Target),
		q.User != "" && e.Actor != q.User && (r == nil || r.Requester != q.User):
		return false
	}
	return true
}

// newest keeps the last n records added.
type newest struct {
	n    int
	recs []AuditRecord
	more bool
}

func (k *newest) add(rec AuditRecord) {
	if len(k.recs) == k.n {
		k.recs = k.recs[1:]
		k.more = true
	}
	k.recs = append(k.recs, rec)
}

// SearchAudit finds audit events, newest first. Admins search the whole log;
// anyone else searches the events of the requests they can see (as GetRequest
// decides), which is what Audit lets them read one request at a time.
//
// Without a store index for these fields an admin's search reads the whole log,
// a page at a time; the page size bounds memory, not time.
func (s *Reader) SearchAudit(ctx context.Context, u ajar.User, q AuditQuery) (*AuditSearch, error) {
	q, err := q.validate()
	if err != nil {
		return nil, err
	}
	all := s.pol.IsAdmin(u)
	requests := map[string]*ajar.Request{} // subject -> request (nil: not a request)
	lookup := func(tx ajar.ReadTx, subject string) (*ajar.Request, error) {
		if r, ok := requests[subject]; ok {
			return r, nil
		}
		r, err := tx.GetRequest(ctx, subject)
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			r, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		requests[subject] = r
		return r, nil
	}
	// scan adds the matches among the events selected by f to keep, page by page.
	scan := func(f ajar.AuditFilter, keep *newest) error {
		f.Limit = MaxAuditSearchLimit
		for {
			var page []ajar.AuditEvent
			err := s.store.View(ctx, func(tx ajar.ReadTx) error {
				var err error
				if page, err = tx.ListAudit(ctx, f); err != nil {
					return err
				}
				for i := range page {
					e := &page[i]
					r, err := lookup(tx, e.Subject)
					if err != nil {
						return err
					}
					if q.match(e, r) {
						rec := AuditRecord{AuditEvent: *e}
						if r != nil {
							rec.Target, rec.Requester = r.Target, r.Requester
						}
						keep.add(rec)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(page) < f.Limit {
				return nil
			}
			f.AfterSeq = page[len(page)-1].Seq
		}
	}

	keep := &newest{n: q.Limit}
	switch {
	case q.Request != "":
		if !all {
			if _, err := s.core.GetRequest(ctx, u, q.Request); err != nil {
				return nil, err
			}
		}
		err = scan(ajar.AuditFilter{Subject: q.Request}, keep)
	case all:
		err = scan(ajar.AuditFilter{}, keep)
	default:
		rs, err := s.allRequests(ctx, u, ListInput{})
		if err != nil {
			return nil, err
		}
		// Events of different requests interleave: collect each request's newest
		// matches, then keep the newest of them all.
		var recs []AuditRecord
		for _, r := range rs {
			if q.Target != "" && r.Target != q.Target {
				continue
			}
			requests[r.ID] = r
			one := &newest{n: q.Limit}
			if err := scan(ajar.AuditFilter{Subject: r.ID}, one); err != nil {
				return nil, fmt.Errorf("search audit log: %w", err)
			}
			recs = append(recs, one.recs...)
			keep.more = keep.more || one.more
		}
		slices.SortFunc(recs, func(a, b AuditRecord) int { return cmp.Compare(a.Seq, b.Seq) })
		for _, rec := range recs {
			keep.add(rec)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("search audit log: %w", err)
	}
	slices.Reverse(keep.recs)
	if keep.recs == nil {
		keep.recs = []AuditRecord{}
	}
	return &AuditSearch{Records: keep.recs, More: keep.more, All: all}, nil
}
