package web

import "testing"

// TestSortOrder: the "sort" parameter picks a known column, ascending or
// descending ("-"); anything else is the page's default order. A column's link
// turns the order round when the list is sorted by it already, and forms
// return to the order the URL asked for.
func TestSortOrder(t *testing.T) {
	keys := []string{"target", "waiting"}
	def := sortOrder{Key: "waiting"}
	for _, c := range []struct {
		param, key string
		desc       bool
		here       string
	}{
		{"", "waiting", false, "/inbox"},
		{"target", "target", false, "/inbox?sort=target"},
		{"-target", "target", true, "/inbox?sort=-target"},
		{"--target", "waiting", false, "/inbox"},
		{"password", "waiting", false, "/inbox"},
		{"-", "waiting", false, "/inbox"},
	} {
		s := parseSort("/inbox", c.param, keys, def)
		if s.Key != c.key || s.Desc != c.desc || s.Here() != c.here {
			t.Errorf("sort=%q: %+v, Here %q; want %s desc=%v, Here %q", c.param, s, s.Here(), c.key, c.desc, c.here)
		}
	}
	s := parseSort("/inbox", "target", keys, def)
	if got := s.Link("target"); got != "/inbox?sort=-target" {
		t.Errorf("Link(target) sorted by target = %q", got)
	}
	if got := s.Link("waiting"); got != "/inbox?sort=waiting" {
		t.Errorf("Link(waiting) = %q", got)
	}
	if s.Aria("target") != "ascending" || s.Aria("waiting") != "" {
		t.Errorf("Aria: %q %q", s.Aria("target"), s.Aria("waiting"))
	}
}
