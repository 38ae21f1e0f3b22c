// Package throttle says whether something keyed happened already within a
// window, so that a flood of the same event is logged once a window instead
// of once an event.
package throttle

import (
	"sync"
	"time"
)

// maxKeys bounds the memory: past it, keys a window old are forgotten.
const maxKeys = 10000

// Throttle remembers when each key was last let through. The zero value
// lets keys through once a minute. Its methods are safe for concurrent use.
type Throttle struct {
	Window time.Duration // 0: a minute

	mu   sync.Mutex
	last map[string]time.Time
}

// First reports whether key was not let through in the window before now,
// and if so records now.
func (l *Throttle) First(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	window := l.Window
	if window <= 0 {
		window = time.Minute
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < window {
		return false
	}
	if len(l.last) >= maxKeys {
		for k, t := range l.last {
			if now.Sub(t) >= window {
				delete(l.last, k)
			}
		}
	}
	l.last[key] = now
	return true
}
