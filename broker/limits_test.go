package broker

import (
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ajar-dev/ajar"
)

func (e *env) countRequests(t *testing.T, requester string) int {
	t.Helper()
	n := 0
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		n, err = tx.CountRequests(t.Context(), ajar.RequestFilter{Requester: requester, Limit: 1 << 20})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) limitRefusals(t *testing.T, limit string) float64 {
	t.Helper()
	var m dto.Metric
	if err := e.svc.metrics.limits.WithLabelValues(limit).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func (e *env) auditSize(t *testing.T) int64 {
	t.Helper()
	var seq int64
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		seq, _, err = tx.AuditHead(t.Context())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestLimitsOnCreate: with the default limits, a requester gets 30 requests a
// minute and 50 open ones; the next is refused with ETOOMANY, stores nothing and
// writes no audit event, while other requesters are unaffected.
func TestLimitsOnCreate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	db := ajar.CreateInput{Target: "db", Reason: "flood"}
	for i := range 30 {
		if _, err := e.svc.CreateRequest(ctx, e.users["alice"], db); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	head := e.auditSize(t)
	_, err := e.svc.CreateRequest(ctx, e.users["alice"], db)
	wantCode(t, err, ajar.ETOOMANY)
	if !strings.Contains(err.Error(), "limits.requests_per_minute_per_user") {
		t.Errorf("rate refusal does not name the limit: %v", err)
	}
	if n := e.countRequests(t, "alice@example.com"); n != 30 {
		t.Fatalf("a refused request was stored: %d requests", n)
	}
	if got := e.auditSize(t); got != head {
		t.Errorf("a refused request wrote %d audit events", got-head)
	}
	if got := e.limitRefusals(t, limitRate); got != 1 {
		t.Errorf("rate refusals metric = %v", got)
	}
	e.create(t, "erin", "db", "") // another requester is not limited by alice

	e.advance(t, rateWindow+time.Second)
	for i := range 20 {
		if _, err := e.svc.CreateRequest(ctx, e.users["alice"], db); err != nil {
			t.Fatalf("request %d after a minute: %v", 31+i, err)
		}
	}
	_, err = e.svc.CreateRequest(ctx, e.users["alice"], db)
	wantCode(t, err, ajar.ETOOMANY)
	if !strings.Contains(err.Error(), "limits.open_requests_per_user") {
		t.Errorf("open refusal does not name the limit: %v", err)
	}
	if got := e.limitRefusals(t, limitOpen); got != 1 {
		t.Errorf("open refusals metric = %v", got)
	}
	// Ending one open request makes room for one more.
	var one *ajar.Request
	err = e.store.View(ctx, func(tx ajar.ReadTx) error {
		rs, err := tx.ListRequests(ctx, ajar.RequestFilter{Requester: "alice@example.com", Limit: 1})
		if err == nil {
			one = rs[0]
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Cancel(ctx, e.users["alice"], one.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateRequest(ctx, e.users["alice"], db); err != nil {
		t.Fatalf("after a cancel: %v", err)
	}
}
