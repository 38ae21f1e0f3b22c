package ajar

import (
	"fmt"
	"time"
)

// MaxWindow is the longest any access window may ever be, the first grant and
// every extension together, whatever a policy says. Policy validation refuses
// longer durations, and every computation of an expiry checks it again (see
// docs/security.md, "Time windows").
const MaxWindow = 366 * 24 * time.Hour

// This file is the one place where durations are added and expiries computed.
// time.Duration is an int64 of nanoseconds: adding two of them wraps to a
// negative value past about 292 years, so nothing else adds durations that come
// from users.

// AddDurations returns a+b when both are non-negative and the sum is at most
// limit; otherwise ok is false. It never overflows.
func AddDurations(a, b, limit time.Duration) (sum time.Duration, ok bool) {
	if a < 0 || b < 0 || limit < 0 || a > limit || b > limit-a {
		return 0, false
	}
	return a + b, true
}

// Window is an access window: access from Start until End (exclusive).
type Window struct {
	Start time.Time
	End   time.Time
}

// NewWindow returns the window of length d from start. It returns EINVALID
// (field "duration") when d is not positive or longer than MaxWindow.
func NewWindow(start time.Time, d time.Duration) (Window, error) {
	if d <= 0 {
		return Window{}, FieldErrorf("duration", "must be positive, not %s", d)
	}
	if d > MaxWindow {
		return Window{}, FieldErrorf("duration", "%s is longer than the hard limit %s on any access window", d, MaxWindow)
	}
	return Window{Start: start, End: start.Add(d)}, nil
}

// Length is End - Start (saturating, as time.Time.Sub is).
func (w Window) Length() time.Duration { return w.End.Sub(w.Start) }

// Extend returns w with End moved later by by. It returns EINVALID (field
// "by") when by is not positive, when the window would be longer than
// MaxWindow, or when the new End would be after notAfter (a zero notAfter sets
// no bound beyond MaxWindow).
func (w Window) Extend(by time.Duration, notAfter time.Time) (Window, error) {
	if by <= 0 {
		return Window{}, FieldErrorf("by", "must be positive, not %s", by)
	}
	if !w.End.After(w.Start) {
		return Window{}, FieldErrorf("by", "the window %s to %s is empty", w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339))
	}
	length, ok := AddDurations(w.Length(), by, MaxWindow)
	if !ok {
		return Window{}, FieldErrorf("by", "extending by %s would make the window longer than the hard limit %s", by, MaxWindow)
	}
	end := w.Start.Add(length)
	if !notAfter.IsZero() && end.After(notAfter) {
		return Window{}, FieldErrorf("by", "extending by %s would end the access at %s, after its latest possible end %s",
			by, end.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
	}
	return Window{Start: w.Start, End: end}, nil
}

// NotAfter is the latest instant access in w may ever reach when the policy
// allows the window to grow to maxTotal: Start + maxTotal, never earlier than
// End and never more than MaxWindow after Start.
func (w Window) NotAfter(maxTotal time.Duration) time.Time {
	total := min(max(maxTotal, w.Length()), MaxWindow)
	return w.Start.Add(total)
}

// Until returns when access granted by g must end: its ExpiresAt, but never
// after its NotAfter (when recorded). Providers use it for every expiry they
// set on the target (certificates, policy conditions, session lengths).
func (g GrantRequest) Until() time.Time {
	if !g.NotAfter.IsZero() && g.ExpiresAt.After(g.NotAfter) {
		return g.NotAfter
	}
	return g.ExpiresAt
}

// CheckExpiry returns an EINVALID error (field "expires_at") when t is after
// g's NotAfter: no renewal may move access past it.
func (g GrantRequest) CheckExpiry(t time.Time) error {
	if !g.NotAfter.IsZero() && t.After(g.NotAfter) {
		return &Error{Code: EINVALID, Field: "expires_at", Message: fmt.Sprintf("%s is after the grant's latest possible end %s",
			t.UTC().Format(time.RFC3339), g.NotAfter.UTC().Format(time.RFC3339))}
	}
	return nil
}
