package policy

import (
	"strings"
	"testing"
	"time"
)

func TestNewConditionErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string // substring of the error; "" means it compiles
	}{
		{`request.duration <= duration("10m")`, ""},
		{`"sre" in requester.groups && requester.id.endsWith("@example.com")`, ""},
		{`request.params["env"] == "dev" && request.target.startsWith("dev-")`, ""},
		{`request.start - now < duration("1h") && request.reason.size() > 10 && request.ticket != ""`, ""},
		{`request.duration <=`, "line 1, column 20: Syntax error"},
		{`request.duration + 1 > duration("1m")`, "line 1, column 18: found no matching overload for '_+_' applied to '(duration, int)'"},
		{"true &&\n  request.nope", "line 2, column 10: undefined field 'nope'"},
		{`request.duration`, "must be true or false, but this expression gives a google.protobuf.Duration"},
		{`request.params`, "must be true or false"},
		{`1 + 1`, "must be true or false, but this expression gives a int"},
		{`dyn(true)`, "must be true or false"}, // dyn is not known to be a bool until run
		{`user.id == "x"`, "undeclared reference to 'user'"},
	}
	for _, tc := range tests {
		c, err := NewCondition(tc.src)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("NewCondition(%q): %v", tc.src, err)
		case tc.want != "" && err == nil:
			t.Errorf("NewCondition(%q) compiled, want error containing %q", tc.src, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("NewCondition(%q) error %q does not contain %q", tc.src, err, tc.want)
		case err == nil && c.String() != tc.src:
			t.Errorf("String() = %q, want %q", c.String(), tc.src)
		}
	}
}

func TestConditionEval(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	vars := Vars{
		Request: RequestVars{
			Target:   "prod-web",
			Duration: 10 * time.Minute,
			Reason:   "incident 42",
			Ticket:   "OPS-42",
			Params:   map[string]string{"source_ip": "10.0.0.7"},
			Start:    now.Add(time.Hour),
		},
		Requester: RequesterVars{ID: "alice@example.com", Groups: []string{"engineers", "oncall"}},
		Now:       now,
	}
	tests := []struct {
		src     string
		want    bool
		wantErr bool
	}{
		{`request.duration <= duration("10m")`, true, false},
		{`request.duration < duration("10m")`, false, false},
		{`"oncall" in requester.groups`, true, false},
		{`"sre" in requester.groups`, false, false},
		{`requester.id == "alice@example.com" && request.target == "prod-web"`, true, false},
		{`request.ticket.matches("^OPS-[0-9]+$") && request.reason.contains("incident")`, true, false},
		{`request.params.source_ip.startsWith("10.")`, true, false},
		{`request.start - now == duration("1h")`, true, false},
		{`request.start > now`, true, false},
		{`request.params["missing"] == "x"`, false, true}, // no such key: fail closed
		{`"missing" in request.params && request.params["missing"] == "x"`, false, false},
		{`1 / (request.params.size() - 1) == 1`, false, true},                           // division by zero
		{`request.params.size() == 1 || request.params["missing"] == "x"`, true, false}, // CEL's || absorbs the error
	}
	for _, tc := range tests {
		c, err := NewCondition(tc.src)
		if err != nil {
			t.Fatalf("NewCondition(%q): %v", tc.src, err)
		}
		got, err := c.Eval(vars)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("Eval(%q) = %v, %v; want %v, error %v", tc.src, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestConditionEvalZeroVars checks that nil maps and lists are usable, not errors.
func TestConditionEvalZeroVars(t *testing.T) {
	c, err := NewCondition(`request.params.size() == 0 && requester.groups.size() == 0 && !("x" in request.params)`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Eval(Vars{}); !ok || err != nil {
		t.Errorf("Eval(zero Vars) = %v, %v; want true", ok, err)
	}
}

func TestConditionCostLimit(t *testing.T) {
	// Each level multiplies the work by 100: far past the limit, so the
	// evaluation must stop with an error instead of running for ages.
	c, err := NewCondition(`[` + strings.Repeat("0,", 99) + `0].all(a, [` + strings.Repeat("0,", 99) + `0].all(b, [` + strings.Repeat("0,", 99) + `0].all(c, a + b + c == 0)))`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Eval(Vars{}); ok || err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("Eval over the cost limit = %v, %v; want false and a cost limit error", ok, err)
	}
}
