package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// queryPlan returns SQLite's plan for query with args, one detail per line.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.readDB.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	return b.String()
}

// The lookups that run on every request use an index, not a scan of the
// caller's requests: finding a request to reuse ("ajar ssh").
func TestLookupsUseIndexes(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := ajar.RequestFilter{
		Requester: "alice", Target: "web", SameParams: true, Params: map[string]string{"source_ip": "10.0.0.1"},
		States: []ajar.State{ajar.StateActive, ajar.StateApproved, ajar.StatePending},
	}
	where, args, err := requestWhere(f)
	if err != nil {
		t.Fatal(err)
	}
	plan := queryPlan(t, s, `SELECT `+requestCols+requestsFrom(f)+where+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, 1000)...)
	if !strings.Contains(plan, "USING INDEX requests_requester_state (requester=? AND state=? AND target=? AND params=?)") {
		t.Errorf("reuse lookup plan:\n%s", plan)
	}
	// The per-user limits, counted in every request's transaction: the open
	// requests seek their states, whatever the requester's history.
	open := ajar.RequestFilter{Requester: "alice", States: []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateActive}, Limit: 51}
	where, args, err = requestWhere(open)
	if err != nil {
		t.Fatal(err)
	}
	plan = queryPlan(t, s, `SELECT count(*) FROM (SELECT 1`+requestsFrom(open)+where+` LIMIT ?)`, append(args, 51)...)
	if !strings.Contains(plan, "USING COVERING INDEX requests_requester_state (requester=? AND state=?)") {
		t.Errorf("open requests count plan:\n%s", plan)
	}
	// Both limits in one statement (CountRequestsEach), each by its index.
	recent := ajar.RequestFilter{Requester: "alice", CreatedSince: time.Now(), Limit: 31}
	q, args, err := countEachQuery([]ajar.RequestFilter{recent, open})
	if err != nil {
		t.Fatal(err)
	}
	plan = queryPlan(t, s, q, args...)
	if !strings.Contains(plan, "USING COVERING INDEX requests_requester (requester=? AND created_at>?)") ||
		!strings.Contains(plan, "USING COVERING INDEX requests_requester_state (requester=? AND state=?)") || strings.Contains(plan, "SCAN requests") {
		t.Errorf("limits count plan:\n%s", plan)
	}
}
