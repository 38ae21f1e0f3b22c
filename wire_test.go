package ajar

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCreateInputValidate: every rule a new request's fields break is
// EINVALID naming the field, checked before anyone asks the policy; a
// well-formed request passes with its duration (0: the policy's default).
func TestCreateInputValidate(t *testing.T) {
	many := map[string]string{}
	for i := range MaxParams + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, c := range []struct {
		in    CreateInput
		field string
	}{
		{CreateInput{Target: " "}, "target"},
		{CreateInput{Target: strings.Repeat("t", MaxTargetLen+1), Duration: "nope"}, "target"},
		{CreateInput{Target: "web", Duration: "30"}, "duration"},
		{CreateInput{Target: "web", Duration: "-5m"}, "duration"},
		{CreateInput{Target: "web\x1b[2J"}, "target"},
		{CreateInput{Target: "web", Reason: "a\rb"}, "reason"},
		{CreateInput{Target: "web", Ticket: strings.Repeat("x", MaxTicketLen+1)}, "ticket"},
		{CreateInput{Target: "web", Params: many}, "params"},
		{CreateInput{Target: "web", Params: map[string]string{"a b": "v"}}, "params"},
		{CreateInput{Target: "web", Params: map[string]string{"db": strings.Repeat("v", MaxParamLen+1)}}, "params.db"},
	} {
		if _, err := c.in.Validate(); ErrorCode(err) != EINVALID || ErrorField(err) != c.field {
			t.Errorf("%+v: %v, want EINVALID on %s", c.in, err, c.field)
		}
	}
	d, err := CreateInput{Target: "web", Duration: "30m", Reason: "line one\nline two", Params: map[string]string{"db": "orders"}}.Validate()
	if err != nil || d != 30*time.Minute {
		t.Fatalf("a good request: %v, %v", d, err)
	}
	if d, err := (CreateInput{Target: "web"}).Validate(); err != nil || d != 0 {
		t.Fatalf("no duration: %v, %v", d, err)
	}
}

// TestCheckStart: a start in the past (beyond a minute's slack) or more than
// MaxStartAhead ahead is EINVALID on "start"; none, or one in range, is fine.
func TestCheckStart(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	for _, bad := range []*time.Time{at(-2 * time.Minute), at(MaxStartAhead + time.Minute)} {
		if err := CheckStart(bad, now); ErrorCode(err) != EINVALID || ErrorField(err) != "start" {
			t.Errorf("start %v: %v", bad, err)
		}
	}
	for _, ok := range []*time.Time{nil, at(-30 * time.Second), at(time.Hour), at(MaxStartAhead)} {
		if err := CheckStart(ok, now); err != nil {
			t.Errorf("start %v: %v", ok, err)
		}
	}
}

// POST /v1/requests answers with the request's own object; "ssh_cert" is one
// more member when there is a certificate, and both read back.
func TestCreateOutputJSON(t *testing.T) {
	r := &Request{ID: "req_1", Target: "db", State: StateActive, Duration: 5 * time.Minute, Approvals: []Approval{}}
	plain, err := json.Marshal(CreateOutput{Request: r})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(r)
	if string(plain) != string(want) {
		t.Errorf("without a certificate %s, want the request alone %s", plain, want)
	}
	withCert, err := json.Marshal(CreateOutput{Request: r, SSHCert: &SSHCertOutput{Certificate: "ssh-ed25519-cert-v01@openssh.com AAAA", Info: SSHCert{Serial: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(withCert) {
		t.Fatalf("not JSON: %s", withCert)
	}
	var back CreateOutput
	if err := json.Unmarshal(withCert, &back); err != nil {
		t.Fatal(err)
	}
	if back.Request.ID != "req_1" || back.Request.Duration != 5*time.Minute || back.SSHCert == nil || back.SSHCert.Info.Serial != 7 {
		t.Errorf("read back %+v %+v", back.Request, back.SSHCert)
	}
	var asRequest Request // an older client reads the request and ignores the rest
	if err := json.Unmarshal(withCert, &asRequest); err != nil || asRequest.ID != "req_1" {
		t.Errorf("as a request: %+v, %v", asRequest, err)
	}
}
