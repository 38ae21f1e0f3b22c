package web

import (
	"cmp"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// sortOrder is how a list page is sorted: by Key, descending when Desc. It
// comes from the page's "sort" query parameter ("target", or "-target" for
// descending), so sorting works without JavaScript and the lists' refresh in
// the browser (which reloads the same URL) keeps it.
type sortOrder struct {
	Path  string // the page, for the column links
	Key   string
	Desc  bool
	Asked bool // the URL asked for this order (else it is the page's default)
}

// parseSort reads the "sort" parameter; an unknown key gives def.
func parseSort(path, param string, keys []string, def sortOrder) sortOrder {
	def.Path = path
	key, desc := strings.CutPrefix(param, "-")
	if !slices.Contains(keys, key) {
		return def
	}
	return sortOrder{Path: path, Key: key, Desc: desc, Asked: true}
}

// Link is the URL that sorts by key: ascending, or the other way round when
// the list is sorted by key already.
func (s sortOrder) Link(key string) string {
	if s.Key == key && !s.Desc {
		key = "-" + key
	}
	return s.Path + "?sort=" + url.QueryEscape(key)
}

// Here is the page as sorted now: where its forms return to.
func (s sortOrder) Here() string {
	if !s.Asked {
		return s.Path
	}
	key := s.Key
	if s.Desc {
		key = "-" + key
	}
	return s.Path + "?sort=" + url.QueryEscape(key)
}

// Aria is the column's aria-sort value ("" when the list is not sorted by key).
func (s sortOrder) Aria(key string) string {
	switch {
	case s.Key != key:
		return ""
	case s.Desc:
		return "descending"
	}
	return "ascending"
}

// sortBy sorts xs stably by the value keyOf gives for s.Key, then applies
// s.Desc. keyOf returns a string, a time or a duration.
func sortBy[T any](xs []T, s sortOrder, keyOf func(x T, key string) any) {
	slices.SortStableFunc(xs, func(a, b T) int {
		c := compareAny(keyOf(a, s.Key), keyOf(b, s.Key))
		if s.Desc {
			return -c
		}
		return c
	})
}

func compareAny(a, b any) int {
	switch a := a.(type) {
	case string:
		return strings.Compare(strings.ToLower(a), strings.ToLower(b.(string)))
	case time.Time:
		return a.Compare(b.(time.Time))
	case time.Duration:
		return cmp.Compare(a, b.(time.Duration))
	case int:
		return cmp.Compare(a, b.(int))
	}
	return 0
}

// Inbox sorting: the keys, and each entry's value for one.
var inboxSortKeys = []string{"target", "requester", "reason", "duration", "waiting"}

func inboxSortKey(rv readmodel.Review, key string) any {
	r := rv.Request
	switch key {
	case "target":
		return r.Target
	case "requester":
		return r.Requester
	case "reason":
		return r.Reason
	case "duration":
		if rv.Extension != nil {
			return rv.Extension.By
		}
		return r.Duration
	}
	// waiting: longest waiting (asked earliest) first
	if rv.Extension != nil {
		return rv.Extension.RequestedAt
	}
	return r.CreatedAt
}

// "My access" sorting.
var accessSortKeys = []string{"target", "state", "reason", "duration", "requested", "ends"}

func accessSortKey(r *ajar.Request, key string) any {
	switch key {
	case "target":
		return r.Target
	case "state":
		return string(r.State)
	case "reason":
		return r.Reason
	case "duration":
		return r.Duration
	case "ends":
		switch {
		case r.EndedAt != nil:
			return *r.EndedAt
		case r.ExpiresAt != nil:
			return *r.ExpiresAt
		}
		return r.ApprovalDeadline
	}
	return r.CreatedAt
}
