package ajar

import (
	"math"
	"testing"
	"time"
)

// overflowBy is the extension that wrapped window + by to a negative duration
// (issue: an auto-approved extension to the year 2319).
const overflowBy = "2562047h47m16s"

func TestAddDurations(t *testing.T) {
	huge, err := time.ParseDuration(overflowBy)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		a, b, limit time.Duration
		want        time.Duration
		ok          bool
	}{
		{time.Hour, time.Hour, 3 * time.Hour, 2 * time.Hour, true},
		{time.Hour, 2 * time.Hour, 3 * time.Hour, 3 * time.Hour, true},
		{time.Hour, 2*time.Hour + 1, 3 * time.Hour, 0, false},
		{time.Hour, huge, 3 * time.Hour, 0, false},
		{time.Hour, huge, math.MaxInt64, 0, false},
		{huge, huge, math.MaxInt64, 0, false},
		{time.Hour, -time.Hour, 3 * time.Hour, 0, false},
		{-time.Hour, time.Hour, 3 * time.Hour, 0, false},
		{4 * time.Hour, 0, 3 * time.Hour, 0, false},
	} {
		got, ok := AddDurations(tc.a, tc.b, tc.limit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("AddDurations(%s, %s, %s) = %s, %v; want %s, %v", tc.a, tc.b, tc.limit, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWindowExtend(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	w, err := NewWindow(start, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	huge, _ := time.ParseDuration(overflowBy)
	notAfter := start.Add(3 * time.Hour)
	if _, err := w.Extend(huge, notAfter); ErrorField(err) != "by" {
		t.Errorf("Extend(%s): %v, want a field error on by", overflowBy, err)
	}
	if _, err := w.Extend(huge, time.Time{}); ErrorField(err) != "by" {
		t.Errorf("Extend(%s) with no bound: %v, want a field error on by", overflowBy, err)
	}
	if _, err := w.Extend(2*time.Hour+time.Second, notAfter); ErrorField(err) != "by" {
		t.Errorf("Extend past notAfter: %v, want a field error on by", err)
	}
	got, err := w.Extend(2*time.Hour, notAfter)
	if err != nil || !got.End.Equal(notAfter) || !got.Start.Equal(start) {
		t.Errorf("Extend(2h) = %+v, %v; want the window to end at %s", got, err, notAfter)
	}
	if _, err := NewWindow(start, MaxWindow+1); ErrorField(err) != "duration" {
		t.Errorf("NewWindow(MaxWindow+1): %v, want a field error on duration", err)
	}
	if _, err := NewWindow(start, huge); ErrorField(err) != "duration" {
		t.Errorf("NewWindow(%s): %v, want a field error on duration", overflowBy, err)
	}
}

func TestGrantUntil(t *testing.T) {
	exp := time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC)
	g := GrantRequest{ExpiresAt: exp}
	if !g.Until().Equal(exp) || g.CheckExpiry(exp.Add(1000*time.Hour)) != nil {
		t.Errorf("a grant with no NotAfter (an old row) must keep its expiry")
	}
	g.NotAfter = exp.Add(-time.Minute)
	if !g.Until().Equal(g.NotAfter) {
		t.Errorf("Until = %s, want it clamped to NotAfter %s", g.Until(), g.NotAfter)
	}
	if err := g.CheckExpiry(exp); ErrorCode(err) != EINVALID {
		t.Errorf("CheckExpiry past NotAfter: %v, want invalid", err)
	}
}

// FuzzWindow checks the window arithmetic for any start, length and
// extension: nothing wraps, no window is longer than MaxWindow, and no
// extension ends past its bound.
func FuzzWindow(f *testing.F) {
	huge, _ := time.ParseDuration(overflowBy)
	f.Add(int64(0), int64(time.Hour), int64(huge), int64(3*time.Hour))
	f.Add(int64(1767268800), int64(time.Hour), int64(huge), int64(0))
	f.Add(int64(1767268800), int64(MaxWindow), int64(1), int64(0))
	f.Add(int64(-1), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MinInt64))
	f.Add(int64(1767268800), int64(time.Minute), int64(math.MinInt64), int64(time.Hour))
	f.Fuzz(func(t *testing.T, startUnix, d, by, bound int64) {
		start := time.Unix(startUnix%(1<<40), 0).UTC()
		w, err := NewWindow(start, time.Duration(d))
		if err != nil {
			if d > 0 && time.Duration(d) <= MaxWindow {
				t.Fatalf("NewWindow(%s) refused a valid length: %v", time.Duration(d), err)
			}
			return
		}
		if w.Length() != time.Duration(d) || !w.End.After(w.Start) {
			t.Fatalf("NewWindow(%s) = %+v", time.Duration(d), w)
		}
		var notAfter time.Time
		if bound != 0 {
			notAfter = start.Add(time.Duration(bound))
		}
		x, err := w.Extend(time.Duration(by), notAfter)
		if err != nil {
			if ErrorField(err) != "by" {
				t.Fatalf("Extend error without field by: %v", err)
			}
			return
		}
		switch {
		case by <= 0:
			t.Fatalf("Extend(%d) accepted a non-positive extension", by)
		case !x.Start.Equal(w.Start) || !x.End.After(w.End):
			t.Fatalf("Extend(%s) of %+v = %+v: not later", time.Duration(by), w, x)
		case x.Length() > MaxWindow:
			t.Fatalf("Extend(%s) made a window of %s", time.Duration(by), x.Length())
		case x.End.Sub(w.End) != time.Duration(by):
			t.Fatalf("Extend(%s) moved the end by %s", time.Duration(by), x.End.Sub(w.End))
		case !notAfter.IsZero() && x.End.After(notAfter):
			t.Fatalf("Extend(%s) ends at %s, after %s", time.Duration(by), x.End, notAfter)
		}
		if na := w.NotAfter(time.Duration(bound)); na.Before(w.End) || na.Sub(w.Start) > MaxWindow {
			t.Fatalf("NotAfter(%s) of %+v = %s", time.Duration(bound), w, na)
		}
	})
}
