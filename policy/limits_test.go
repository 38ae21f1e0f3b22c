package policy

import (
	"errors"
	"slices"
	"testing"

	"github.com/ajar-dev/ajar"
)

func TestLimitsSection(t *testing.T) {
	p, err := Parse([]byte(reconcileBase), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := UserLimits{OpenRequestsPerUser: 50, RequestsPerMinutePerUser: 30, CertificatesPerRequest: 20}
	if got := p.Limits(); got != want {
		t.Fatalf("defaults = %+v, want %+v", got, want)
	}
	p, err = Parse([]byte(reconcileBase+"limits: {open_requests_per_user: 3, certificates_per_request: 1000}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want = UserLimits{OpenRequestsPerUser: 3, RequestsPerMinutePerUser: 30, CertificatesPerRequest: 1000}
	if got := p.Limits(); got != want {
		t.Fatalf("limits = %+v, want %+v", got, want)
	}

	for _, tc := range []struct {
		yaml   string
		fields []string
	}{
		{"limits: {open_requests_per_user: 0, requests_per_minute_per_user: -1, certificates_per_request: 10001}\n",
			[]string{"limits.open_requests_per_user", "limits.requests_per_minute_per_user", "limits.certificates_per_request"}},
		{"limits: {open_requests_per_user: many}\n", []string{"limits.open_requests_per_user"}},
		{"limits: {open_requests: 5}\n", []string{"limits.open_requests"}},
		{"limits: [1]\n", []string{"limits"}},
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
