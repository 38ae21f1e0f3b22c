// Package backoff computes retry delays: exponential growth, a cap, and
// jitter, so that many failures do not retry in lockstep. It is the one place
// ajar does this (the scheduler's provider retries, notification delivery, the
// wait for a shared-access lock).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Ceiling is the delay before retry number attempt (1-based) without jitter:
// base doubled attempt-1 times, capped at limit. attempt below 1 counts as 1;
// base or limit of zero or less gives 0. It never overflows, whatever attempt.
func Ceiling(attempt int, base, limit time.Duration) time.Duration {
	if base <= 0 || limit <= 0 {
		return 0
	}
	if base >= limit {
		return limit
	}
	shift := max(attempt, 1) - 1
	// base < limit, so base<<shift fits whenever it stays at or below limit.
	if shift >= 63 || base > limit>>shift {
		return limit
	}
	return base << shift
}

// Next is the jittered delay before retry number attempt (1-based): a random
// point in the upper half of Ceiling(attempt, base, limit). The lower end of
// one attempt's range is the upper end of the previous one's, so until the cap
// the delays never shrink from one attempt to the next, whatever the draws.
func Next(attempt int, base, limit time.Duration) time.Duration {
	return Jitter(Ceiling(attempt, base, limit))
}

// Jitter returns a random duration in [d/2, d]; 0 if d is zero or less.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
