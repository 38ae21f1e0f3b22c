package policy

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

const reconcileBase = `
users: [{id: alice@example.com}]
targets: {web: {provider: ssh-cert, config: {principals: [ubuntu]}}}
policies:
  - {name: web, targets: [web], requesters: [alice@example.com], default_duration: 5m, max_duration: 1h, approval: {auto_approve: 'true'}}
`

func TestReconcileSection(t *testing.T) {
	p, err := Parse([]byte(reconcileBase), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Reconcile(); time.Duration(got.Interval) != DefaultReconcileInterval || time.Duration(got.Lookback) != DefaultReconcileLookback {
		t.Fatalf("defaults = %+v", got)
	}
	p, err = Parse([]byte(reconcileBase+"reconcile: {interval: 30s, lookback: 2h}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Reconcile(); got.Interval != Duration(30*time.Second) || got.Lookback != Duration(2*time.Hour) {
		t.Fatalf("reconcile = %+v", got)
	}

	for _, tc := range []struct {
		yaml   string
		fields []string
	}{
		{"reconcile: {interval: -1m, lookback: -5s}\n", []string{"reconcile.interval", "reconcile.lookback"}},
		{"reconcile: {interval: 10ms}\n", []string{"reconcile.interval"}},
		{"reconcile: {interval: often}\n", []string{"reconcile.interval"}},
		{"reconcile: {intervall: 1m}\n", []string{"reconcile.intervall"}},
	} {
		_, err := Parse([]byte(reconcileBase+tc.yaml), nil)
		var probs ajar.Problems
		if !errors.As(err, &probs) {
			t.Errorf("%q: err = %v, want problems", tc.yaml, err)
			continue
		}
		var fields []string
		for _, pr := range probs {
			fields = append(fields, pr.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%q: fields %q, want %q (%v)", tc.yaml, fields, tc.fields, probs)
		}
	}
}
