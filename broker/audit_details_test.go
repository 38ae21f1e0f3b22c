package broker

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/jsonenc"
)

// TestAuditDetailsDirect: the core's events of an auto-approved request,
// granted at once or at its start by a provider that is not local, through
// its expiry, have their details encoded without reflection
// (jsonenc.AppendValue), not by json.Marshal. request.created,
// request.approved, grant.started and request.activated are the most frequent
// events the server writes, under the writer's lock.
func TestAuditDetailsDirect(t *testing.T) {
	var mu sync.Mutex
	direct := map[string][]bool{}
	t.Cleanup(jsonenc.ObserveAuditDetails(func(action string, d bool) {
		mu.Lock()
		direct[action] = append(direct[action], d)
		mu.Unlock()
	}))
	e := newEnv(t)
	e.create(t, "alice", "web", "5m")
	start := e.clock.Now().Add(10 * time.Second)
	e.createIn(t, "erin", ajar.CreateInput{Target: "web", Duration: "5m", Reason: "later <today> & on", Start: &start, Ticket: "INC-1"})
	e.advance(t, 0)
	e.advance(t, 10*time.Second)
	e.advance(t, 6*time.Minute)

	mu.Lock()
	defer mu.Unlock()
	for _, action := range []string{"request.created", "request.approved", "grant.started", "request.activated", "request.revoking", "request.expired"} {
		if got := direct[action]; len(got) != 2 || slices.Contains(got, false) {
			t.Errorf("%s: fast path taken %v, want [true true]", action, got)
		}
	}
	for action, got := range direct {
		if slices.Contains(got, false) {
			t.Errorf("%s: details encoded by json.Marshal (fast path %v)", action, got)
		}
	}
}
