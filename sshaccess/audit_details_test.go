package sshaccess_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/ajar-dev/ajar/internal/jsonenc"
)

// TestSSHAccessAuditDetailsDirect: the events of "ajar ssh" on an
// auto-approved target (request.created, request.approved, grant.started,
// request.activated, ssh_cert.issued), the most frequent the server writes,
// have their details encoded without reflection (jsonenc.AppendValue), not by
// json.Marshal: details of a new type the fast path does not know would
// silently put them back on the slow path under the writer's lock.
func TestSSHAccessAuditDetailsDirect(t *testing.T) {
	var mu sync.Mutex
	direct := map[string][]bool{}
	t.Cleanup(jsonenc.ObserveAuditDetails(func(action string, d bool) {
		mu.Lock()
		direct[action] = append(direct[action], d)
		mu.Unlock()
	}))
	e := newSSHEnv(t)
	e.access(t, "alice", "web", "5m", src) // with params, pinned to the source address
	e.access(t, "erin", "db", "5m", nil)

	mu.Lock()
	defer mu.Unlock()
	for _, action := range []string{"request.created", "request.approved", "grant.started", "request.activated", "ssh_cert.issued"} {
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
