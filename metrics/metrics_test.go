package metrics

import (
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// TestGaugesReadTheStore: the gauges count what the store holds at scrape
// time: requests by state, active grants, failing revocations, open reviews.
func TestGaugesReadTheStore(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir()+"/ajar.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name, state string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == name && (state == "" || m.GetLabel()[0].GetValue() == state) {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no metric %s %s", name, state)
		return 0
	}
	now := time.Now().UTC()
	err = st.Update(ctx, func(tx ajar.Tx) error {
		for i, s := range []ajar.State{ajar.StatePending, ajar.StateActive, ajar.StateActive, ajar.StateRevokeFailed} {
			r := &ajar.Request{ID: "req_" + string(rune('a'+i)), Target: "web", Requester: "alice@example.com", Duration: time.Hour,
				Policy: "web", State: s, Approvals: []ajar.Approval{}, CreatedAt: now, UpdatedAt: now, ApprovalDeadline: now.Add(time.Hour)}
			if err := tx.CreateRequest(ctx, r); err != nil {
				return err
			}
		}
		return tx.CreateReview(ctx, ajar.ReviewTask{RequestID: "req_b", Kind: "breakglass", Requester: "alice@example.com", Target: "web", OpenedAt: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, state string
		want        float64
	}{
		{"ajar_requests", "active", 2}, {"ajar_requests", "pending", 1}, {"ajar_requests", "expired", 0},
		{"ajar_grants_active", "", 2}, {"ajar_revoke_failed", "", 1}, {"ajar_reviews_open", "", 1},
	} {
		if got := gauge(c.name, c.state); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.state, got, c.want)
		}
	}
}
