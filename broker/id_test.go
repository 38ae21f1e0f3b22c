package broker

import (
	"regexp"
	"testing"
	"time"
)

// Request IDs made later sort later as text (the store's indexes keyed by
// request stay append-only), stay unique within one millisecond, and keep
// their shape.
func TestRequestIDsSortByTime(t *testing.T) {
	shape := regexp.MustCompile(`^[0-9a-z]{20}$`)
	t0 := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 2000 {
		at := t0.Add(time.Duration(i/10) * time.Millisecond) // ten in each millisecond
		id := timeOrderedID(at)
		if !shape.MatchString(id) {
			t.Fatalf("id %q has the wrong shape", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		if i%10 == 0 && prev != "" && id <= prev {
			t.Fatalf("id %q made a millisecond after %q sorts before it", id, prev)
		}
		if i%10 == 9 {
			prev = id
		}
	}
	// A second apart.
	if a, b := timeOrderedID(t0), timeOrderedID(t0.Add(time.Second)); a >= b {
		t.Errorf("%q (a second later) sorts before %q", b, a)
	}
}
