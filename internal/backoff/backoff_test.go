package backoff

import (
	"math"
	"math/big"
	"testing"
	"time"
)

// ceiling is Ceiling computed with unbounded integers, as the reference.
func ceiling(attempt int, base, limit time.Duration) time.Duration {
	if base <= 0 || limit <= 0 {
		return 0
	}
	shift := max(attempt, 1) - 1
	if shift > 200 {
		shift = 200 // far past any cap: 2^200 ns
	}
	d := new(big.Int).Lsh(big.NewInt(int64(base)), uint(shift))
	if d.Cmp(big.NewInt(int64(limit))) > 0 {
		return limit
	}
	return time.Duration(d.Int64())
}

func TestCeilingGrowsAndCaps(t *testing.T) {
	for attempt, want := range map[int]time.Duration{
		-5: time.Second, 0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		4: 8 * time.Second, 5: 10 * time.Second, 64: 10 * time.Second, math.MaxInt: 10 * time.Second,
	} {
		if got := Ceiling(attempt, time.Second, 10*time.Second); got != want {
			t.Errorf("Ceiling(%d, 1s, 10s) = %v, want %v", attempt, got, want)
		}
	}
	if got := Ceiling(3, time.Minute, time.Second); got != time.Second {
		t.Errorf("base above the cap: %v, want the cap", got)
	}
	for _, c := range [][2]time.Duration{{0, time.Second}, {-1, time.Second}, {time.Second, 0}, {time.Second, -1}} {
		if got := Next(3, c[0], c[1]); got != 0 {
			t.Errorf("Next(3, %v, %v) = %v, want 0", c[0], c[1], got)
		}
	}
}

func TestNextIsJitteredWithinBounds(t *testing.T) {
	for attempt := 1; attempt <= 6; attempt++ {
		ceil := Ceiling(attempt, time.Second, 16*time.Second)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := Next(attempt, time.Second, 16*time.Second)
			if d < ceil/2 || d > ceil {
				t.Fatalf("Next(%d) = %v, want in [%v, %v]", attempt, d, ceil/2, ceil)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("Next(%d) is not jittered: %v", attempt, seen)
		}
	}
}

// TestNextNeverShrinks: retries back off, whatever the random draws: each
// delay is at least the one before it, until the cap.
func TestNextNeverShrinks(t *testing.T) {
	for range 1000 {
		prev := time.Duration(0)
		for attempt := 1; attempt <= 20; attempt++ {
			d := Next(attempt, 10*time.Millisecond, time.Hour)
			if d < prev && Ceiling(attempt, 10*time.Millisecond, time.Hour) < time.Hour {
				t.Fatalf("attempt %d: %v after %v", attempt, d, prev)
			}
			prev = d
		}
	}
}

func FuzzNext(f *testing.F) {
	f.Add(1, int64(time.Second), int64(time.Minute))
	f.Add(math.MaxInt, int64(time.Second), int64(math.MaxInt64))
	f.Add(62, int64(3), int64(math.MaxInt64))
	f.Add(63, int64(1), int64(math.MaxInt64))
	f.Add(64, int64(math.MaxInt64/2+1), int64(math.MaxInt64))
	f.Add(0, int64(-1), int64(-1))
	f.Add(math.MinInt, int64(1), int64(1))
	f.Fuzz(func(t *testing.T, attempt int, base, limit int64) {
		b, l := time.Duration(base), time.Duration(limit)
		want := ceiling(attempt, b, l)
		if got := Ceiling(attempt, b, l); got != want {
			t.Fatalf("Ceiling(%d, %d, %d) = %d, want %d", attempt, base, limit, got, want)
		}
		d := Next(attempt, b, l)
		if d < want/2 || d > want || d < 0 {
			t.Fatalf("Next(%d, %d, %d) = %d, want in [%d, %d]", attempt, base, limit, d, want/2, want)
		}
	})
}
