package readmodel

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ajar-dev/ajar"
)

// Lists page with a cursor and say when there is more; none is cut short in
// silence. The cursor is the list key (creation time and id) of the last request
// a page looked at, so a page is the same whatever was created after the first
// one (keyset paging, never OFFSET).

// Page sizes of ListRequests.
const (
	DefaultListLimit = 500
	MaxListLimit     = 1000
	// maxListScan bounds the requests one ListRequests call reads for a user who
	// may see only some of them; past it the page ends early with a cursor.
	maxListScan = 10 * MaxListLimit
	// maxCursorLen bounds a cursor as it is accepted from a client.
	maxCursorLen = 200
	cursorPrefix = "r1."
	// reviewCursorPrefix marks a cursor of ListReviews.
	reviewCursorPrefix = "v1."
)

// ListInput filters the requests a user can see and selects a page of them.
type ListInput struct {
	Mine  bool       `json:"mine"`  // only the caller's own requests
	State ajar.State `json:"state"` // "" for any
	// Limit is the most requests in the page (0: DefaultListLimit).
	Limit int `json:"limit,omitempty"`
	// Cursor is RequestList.NextCursor of the page before ("" for the first).
	Cursor string `json:"cursor,omitempty"`
}

// RequestList is one page of ListRequests.
type RequestList struct {
	Requests []*ajar.Request `json:"requests"`
	// NextCursor, when not empty, is where the next page starts (pass it as
	// ListInput.Cursor); empty when this page is the last. A page may hold fewer
	// than the limit, even none, and still have a next one: only NextCursor says.
	NextCursor string `json:"next_cursor,omitempty"`
}

// encodeCursor returns the opaque cursor for the page after k.
func encodeCursor(k ajar.RequestKey) string { return encodeKey(cursorPrefix, k.CreatedAt, k.ID) }

// decodeCursor reads a cursor made by encodeCursor; nil for "". EINVALID (field
// "cursor") for anything else.
func decodeCursor(c string) (*ajar.RequestKey, error) {
	if c == "" {
		return nil, nil
	}
	at, id, err := decodeKey(cursorPrefix, c)
	if err != nil {
		return nil, err
	}
	return &ajar.RequestKey{CreatedAt: at, ID: id}, nil
}

// encodeKey encodes a list key (a time and an id) as an opaque cursor.
func encodeKey(prefix string, at time.Time, id string) string {
	raw := strconv.FormatInt(at.UnixNano(), 10) + "." + id
	return prefix + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeKey reads what encodeKey wrote with prefix; EINVALID (field "cursor")
// for anything else.
func decodeKey(prefix, c string) (time.Time, string, error) {
	bad := ajar.FieldErrorf("cursor", "is not a cursor this server returned")
	if len(c) > maxCursorLen || !strings.HasPrefix(c, prefix) {
		return time.Time{}, "", bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(c[len(prefix):])
	if err != nil || !utf8.Valid(raw) {
		return time.Time{}, "", bad
	}
	ns, id, ok := strings.Cut(string(raw), ".")
	if !ok || id == "" || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return time.Time{}, "", bad
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, "", bad
	}
	return time.Unix(0, n).UTC(), id, nil
}

// pageLimit checks a requested page size; 0 means DefaultListLimit.
func pageLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, ajar.FieldErrorf("limit", "must not be negative")
	case limit == 0:
		return DefaultListLimit, nil
	case limit > MaxListLimit:
		return 0, ajar.FieldErrorf("limit", "must be at most %d", MaxListLimit)
	}
	return limit, nil
}

// ReviewsInput filters review tasks: State is "open" (the default), "closed"
// or "all"; Limit and Cursor select a page as in ListInput.
type ReviewsInput struct {
	State  string `json:"state"`
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// ReviewList is one page of ListReviews; NextCursor as in RequestList.
type ReviewList struct {
	Reviews    []ajar.ReviewTask `json:"reviews"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// ListReviews returns a page of break-glass review tasks, most recent first:
// at most in.Limit (0: DefaultListLimit; at most MaxListLimit), from in.Cursor.
// Admins only (EFORBIDDEN); EINVALID names a bad state, limit or cursor.
func (s *Reader) ListReviews(ctx context.Context, u ajar.User, in ReviewsInput) (*ReviewList, error) {
	if !s.pol.IsAdmin(u) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can list reviews")
	}
	state := in.State
	if state == "" {
		state = "open"
	}
	if state != "open" && state != "closed" && state != "all" {
		return nil, ajar.FieldErrorf("state", "must be open, closed or all, not %q", in.State)
	}
	return s.listReviews(ctx, state, in.Limit, in.Cursor)
}

// listReviews returns a page of the review tasks in state (open, closed or all).
func (s *Reader) listReviews(ctx context.Context, state string, limit int, cursor string) (*ReviewList, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, err
	}
	f := ajar.ReviewFilter{OnlyOpen: state == "open", Limit: limit + 1}
	if cursor != "" {
		at, id, err := decodeKey(reviewCursorPrefix, cursor)
		if err != nil {
			return nil, err
		}
		f.After = &ajar.ReviewKey{OpenedAt: at, RequestID: id}
	}
	out := &ReviewList{Reviews: []ajar.ReviewTask{}}
	key := func(r ajar.ReviewTask) string { return encodeKey(reviewCursorPrefix, r.OpenedAt, r.RequestID) }
	err = s.store.View(ctx, func(tx ajar.ReadTx) error {
		for scanned := 0; ; {
			page, err := tx.ListReviews(ctx, f)
			if err != nil {
				return err
			}
			for _, r := range page {
				if state == "closed" && r.ClosedAt == nil {
					continue
				}
				if len(out.Reviews) == limit {
					out.NextCursor = key(out.Reviews[limit-1])
					return nil
				}
				out.Reviews = append(out.Reviews, r)
			}
			if len(page) < f.Limit {
				return nil
			}
			last := page[len(page)-1]
			if scanned += len(page); scanned >= maxListScan {
				out.NextCursor = key(last)
				return nil
			}
			f.After = &ajar.ReviewKey{OpenedAt: last.OpenedAt, RequestID: last.RequestID}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list reviews: %w", err)
	}
	return out, nil
}

// ListRequests returns a page of the requests u may see (see GetRequest), newest
// first: at most in.Limit (0: DefaultListLimit; at most MaxListLimit), from
// in.Cursor (a RequestList.NextCursor; "" for the first page). EINVALID names
// the field for an unknown state, a bad limit or a cursor this server did not
// make.
func (s *Reader) ListRequests(ctx context.Context, u ajar.User, in ListInput) (*RequestList, error) {
	if in.State != "" && !in.State.Valid() {
		return nil, ajar.FieldErrorf("state", "unknown state %q", in.State)
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	after, err := decodeCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	f := ajar.RequestFilter{After: after, Limit: limit + 1}
	if in.State != "" {
		f.States = []ajar.State{in.State}
	}
	if in.Mine {
		f.Requester = u.ID
	}
	out := &RequestList{Requests: []*ajar.Request{}}
	err = s.store.View(ctx, func(tx ajar.ReadTx) error {
		for scanned := 0; ; {
			page, err := tx.ListRequests(ctx, f)
			if err != nil {
				return err
			}
			for _, r := range page {
				if !s.core.CanSee(u, r) { // the broker's rule: requester, admin or approver
					continue
				}
				if len(out.Requests) == limit {
					out.NextCursor = encodeCursor(out.Requests[limit-1].Key())
					return nil
				}
				out.Requests = append(out.Requests, r)
			}
			if len(page) < f.Limit {
				return nil // the end of the list
			}
			k := page[len(page)-1].Key()
			if scanned += len(page); scanned >= maxListScan {
				out.NextCursor = encodeCursor(k)
				return nil
			}
			f.After = &k
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	return out, nil
}

// eachRequest calls fn on every request f selects, newest first, reading the
// store a page at a time within tx: unlike one ListRequests call, it has no limit.
func eachRequest(ctx context.Context, tx ajar.ReadTx, f ajar.RequestFilter, fn func(*ajar.Request)) error {
	f.Limit = MaxListLimit
	for {
		page, err := tx.ListRequests(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range page {
			fn(r)
		}
		if len(page) < f.Limit {
			return nil
		}
		k := page[len(page)-1].Key()
		f.After = &k
	}
}

// AccessHistory is how many ended requests MyAccess returns.
const AccessHistory = 50

// Access is "My access": a user's own requests by where they stand.
type Access struct {
	// Active are the requests holding access or about to (approved, active,
	// revoking, revoke_failed): every one of them, newest first.
	Active []*ajar.Request `json:"active"`
	// Waiting are the pending requests: every one of them, newest first.
	Waiting []*ajar.Request `json:"waiting"`
	// History are the newest AccessHistory ended requests.
	History []*ajar.Request `json:"history"`
}

// MyAccess returns u's own requests by where they stand. Active and Waiting are
// complete, however many other requests anyone made, so nothing u holds or waits
// for (and so nothing u may need to revoke or cancel) is ever left out.
func (s *Reader) MyAccess(ctx context.Context, u ajar.User) (*Access, error) {
	a := &Access{Active: []*ajar.Request{}, Waiting: []*ajar.Request{}, History: []*ajar.Request{}}
	var held, ended []ajar.State
	for _, st := range ajar.States {
		switch {
		case st.Terminal():
			ended = append(ended, st)
		case st != ajar.StatePending:
			held = append(held, st)
		}
	}
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		add := func(to *[]*ajar.Request) func(*ajar.Request) {
			return func(r *ajar.Request) { *to = append(*to, r) }
		}
		if err := eachRequest(ctx, tx, ajar.RequestFilter{Requester: u.ID, States: held}, add(&a.Active)); err != nil {
			return err
		}
		if err := eachRequest(ctx, tx, ajar.RequestFilter{Requester: u.ID, States: []ajar.State{ajar.StatePending}}, add(&a.Waiting)); err != nil {
			return err
		}
		h, err := tx.ListRequests(ctx, ajar.RequestFilter{Requester: u.ID, States: ended, Limit: AccessHistory})
		a.History = append(a.History, h...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("my access: %w", err)
	}
	return a, nil
}
