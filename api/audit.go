package api

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// GET /v1/audit answers two kinds of question.
//
// A listing (no search parameter): the events with seq > after, oldest first,
// the whole log for an admin or one request's events (request=ID) for anyone
// who can see that request. Clients page with after; "ajar audit verify" and
// exports read the log this way.
//
// A search (any of user, target, action, since, until, before): the matching
// events newest first, answered from the store's indexes (readmodel.SearchAudit,
// the function the web audit page uses, decides who sees what: an admin searches
// the whole log, anyone else the events of the requests they can see). Clients
// page backwards with before set to the last (oldest) event's seq.

// auditSearchParams are the query parameters that make GET /v1/audit a search.
var auditSearchParams = []string{"user", "target", "action", "since", "until", "before"}

// maxAuditField is the longest user, target or action a search accepts.
const maxAuditField = 200

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, u ajar.User) {
	q, err := parseQuery(r, append([]string{"request", "after", "limit"}, auditSearchParams...)...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if slices.ContainsFunc(auditSearchParams, q.values.Has) {
		s.searchAudit(w, r, u, q)
		return
	}
	var f ajar.AuditFilter
	if f.Subject = q.string("request"); f.Subject != "" {
		if err := checkID("request", f.Subject); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if f.AfterSeq, err = q.int("after", math.MaxInt64); err != nil {
		s.writeError(w, r, err)
		return
	}
	limit, err := q.int("limit", MaxAuditLimit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if limit == 0 {
		limit = defaultAuditLimit
	}
	// One event more than the page tells whether another page follows.
	f.Limit = int(limit) + 1
	events, err := s.core.Audit(r.Context(), u, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	more := len(events) > int(limit)
	if more {
		events = events[:limit]
	}
	if events == nil {
		events = []ajar.AuditEvent{}
	}
	s.writeJSON(w, r, http.StatusOK, auditResponse{Events: events, HasMore: more})
}

// searchAudit answers a search: the newest matching events first, at most
// limit of them (capped by MaxAuditLimit at the edge, and by
// readmodel.MaxAuditSearchLimit per page: has_more says when to ask again).
func (s *Server) searchAudit(w http.ResponseWriter, r *http.Request, u ajar.User, q query) {
	aq, err := auditQuery(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.core.SearchAudit(r.Context(), u, aq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	events := make([]ajar.AuditEvent, len(res.Records))
	for i, rec := range res.Records {
		events[i] = rec.AuditEvent
	}
	s.writeJSON(w, r, http.StatusOK, auditResponse{Events: events, HasMore: res.More, NextBefore: res.Before})
}

// auditQuery validates a search's parameters. Every error is EINVALID naming
// the parameter.
func auditQuery(q query) (readmodel.AuditQuery, error) {
	var aq readmodel.AuditQuery
	if q.values.Has("after") {
		return aq, ajar.FieldErrorf("after", "pages a listing, not a search (newest first): page a search with before")
	}
	if aq.Request = q.string("request"); q.values.Has("request") {
		if err := checkID("request", aq.Request); err != nil {
			return aq, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"user", &aq.User}, {"target", &aq.Target}, {"action", &aq.Action}} {
		if !q.values.Has(f.name) {
			continue
		}
		v := q.string(f.name)
		if err := checkAuditField(f.name, v); err != nil {
			return aq, err
		}
		*f.dst = v
	}
	if aq.Action != "" {
		for _, c := range aq.Action {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return aq, ajar.FieldErrorf("action", "is not an action (such as request.approved) or an action prefix ending in a dot (such as request.)")
			}
		}
	}
	var err error
	if aq.From, err = queryTime(q, "since"); err != nil {
		return aq, err
	}
	if aq.To, err = queryTime(q, "until"); err != nil {
		return aq, err
	}
	if !aq.From.IsZero() && !aq.To.IsZero() && !aq.From.Before(aq.To) {
		return aq, ajar.FieldErrorf("until", "must be after since")
	}
	if aq.Before, err = q.int("before", math.MaxInt64); err != nil {
		return aq, err
	}
	if q.values.Has("before") && aq.Before == 0 {
		return aq, ajar.FieldErrorf("before", "must be a positive seq")
	}
	limit, err := q.int("limit", MaxAuditLimit)
	if err != nil {
		return aq, err
	}
	aq.Limit = int(min(limit, readmodel.MaxAuditSearchLimit)) // 0: the search's default page
	return aq, nil
}

// checkAuditField validates a user, target or action to search for.
func checkAuditField(name, v string) error {
	return checkText(name, v, maxAuditField, "must not be empty")
}

// queryTime parses an optional RFC 3339 time; absent is the zero time.
func queryTime(q query, name string) (time.Time, error) {
	if !q.values.Has(name) {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, q.string(name))
	if err != nil {
		return time.Time{}, ajar.FieldErrorf(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, ajar.FieldErrorf(name, "must be in the years 1 to 9999 (UTC)")
	}
	return t, nil
}
