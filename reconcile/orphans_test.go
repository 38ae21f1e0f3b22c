package reconcile_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/reconcile"
)

// TestReportOrphans restarts the service on a policy without alice: her
// active grant and her pending request are each named in the log, the gauge
// counts them, and it goes down as they end.
func TestReportOrphans(t *testing.T) {
	e := newDriftEnv(t, false)
	ctx := t.Context()
	active := e.request(t, e.alice)
	pending, err := e.svc.CreateRequest(ctx, e.alice, ajar.CreateInput{Target: "db", Duration: "30m", Reason: "later"})
	if err != nil || pending.State != ajar.StatePending {
		t.Fatalf("pending request: %v, %v", pending, err)
	}
	kept := e.request(t, e.bob)

	pol := parsePolicy(t, strings.Replace(testPolicy, "  - {id: alice@example.com, groups: [eng]}\n", "", 1))
	svc, err := broker.New(broker.Config{Store: e.store, Policy: pol, Providers: fakeSet{e.fake}, Now: e.now.Now})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	check, err := reconcile.New(reconcile.Config{Store: e.store, Policy: pol, Providers: fakeSet{e.fake}, Core: svc,
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "ajar_grants_orphaned"); got != 0 {
		t.Errorf("gauge before the check: %v", got)
	}
	n, err := check.ReportOrphans(ctx)
	if err != nil || n != 2 {
		t.Fatalf("ReportOrphans = %d, %v; want 2", n, err)
	}
	out := logs.String()
	for _, id := range []string{active.ID, pending.ID} {
		if !strings.Contains(out, "request="+id+" requester=alice@example.com") {
			t.Errorf("the log does not name %s:\n%s", id, out)
		}
	}
	if strings.Contains(out, kept.ID) {
		t.Errorf("the log names bob's request:\n%s", out)
	}
	if got := metricValue(t, reg, "ajar_grants_orphaned"); got != 2 {
		t.Errorf("ajar_grants_orphaned = %v, want 2", got)
	}
	if _, err := svc.Revoke(ctx, e.alice, active.ID); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "ajar_grants_orphaned"); got != 1 {
		t.Errorf("ajar_grants_orphaned after the revoke = %v, want 1", got)
	}
}
