package broker

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReportOrphans restarts the service on a policy without alice: her
// active grant and her pending request are each named in the log, the gauge
// counts them, and it goes down as they end.
func TestReportOrphans(t *testing.T) {
	e := newWorkflowEnv(t, "", NotifyConfig{})
	ctx := t.Context()
	active := e.createIn(t, "alice", CreateInput{Target: "web", Duration: "30m", Reason: "deploy"})
	if _, err := e.svc.Approve(ctx, e.users["bob"], active.ID, ""); err != nil {
		t.Fatal(err)
	}
	if st := e.get(t, active.ID).State; st != ajar.StateActive {
		t.Fatalf("state %s", st)
	}
	pending := e.createIn(t, "alice", CreateInput{Target: "web", Duration: "30m", Reason: "later"})
	kept := e.createIn(t, "frank", CreateInput{Target: "web", Duration: "30m", Reason: "frank stays"})

	src := strings.Replace(workflowPolicy, "  - {id: alice@example.com, groups: [engineers]}\n", "", 1)
	pol, err := policy.Parse([]byte(src), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	svc, err := New(Config{Store: e.store, Policy: pol, Providers: e.svc.providers, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, svc, "ajar_grants_orphaned"); got != 0 {
		t.Errorf("gauge before the check: %v", got)
	}
	n, err := svc.ReportOrphans(ctx)
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
		t.Errorf("the log names frank's request:\n%s", out)
	}
	if got := gaugeValue(t, svc, "ajar_grants_orphaned"); got != 2 {
		t.Errorf("ajar_grants_orphaned = %v, want 2", got)
	}
	if _, err := svc.Revoke(ctx, e.users["root"], active.ID); err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, svc, "ajar_grants_orphaned"); got != 1 {
		t.Errorf("ajar_grants_orphaned after the revoke = %v, want 1", got)
	}
}
