package readmodel

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// TestReviewMatchesApproveAndDeny checks that what Review tells a page a user can
// do is exactly what Approve and Deny then allow.
func TestReviewMatchesApproveAndDeny(t *testing.T) {
	tests := []struct {
		name                string
		requester, target   string
		before              []string // approvers who approve first
		reviewer            string
		canApprove, canDeny bool
		blocked             string // part of Blocked
	}{
		{"approver", "alice", "web", nil, "bob", true, true, ""},
		{"own request", "alice", "web", nil, "alice", false, false, "nobody approves their own request"},
		{"own request as an approver", "erin", "web", nil, "erin", false, false, "nobody approves their own request"},
		{"admin who is no approver", "alice", "web", nil, "root", false, false, "you are not one of them"},
		{"approver of a later step", "alice", "db", nil, "dave", false, false, "Step 1 of policy db needs approval from group:sre"}, // deny as approve
		{"already approved", "alice", "db", []string{"bob"}, "bob", false, false, "already approved"},
		{"second approver of a step", "alice", "db", []string{"bob"}, "carol", true, true, ""},
		{"later step once reached", "alice", "db", []string{"bob", "carol"}, "dave", true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, decide := range []string{"approve", "deny"} {
				e := newEnv(t)
				r := e.create(t, tt.requester, tt.target, "30m")
				for _, a := range tt.before {
					if _, err := e.svc.Approve(t.Context(), e.users[a], r.ID, ""); err != nil {
						t.Fatal(err)
					}
				}
				u := e.users[tt.reviewer]
				rv, err := e.rm.Review(t.Context(), u, r.ID)
				if err != nil {
					t.Fatal(err)
				}
				if rv.CanApprove != tt.canApprove || rv.CanDeny != tt.canDeny {
					t.Fatalf("Review: CanApprove %v CanDeny %v, want %v %v (blocked: %q)", rv.CanApprove, rv.CanDeny, tt.canApprove, tt.canDeny, rv.Blocked)
				}
				if tt.blocked != "" && !strings.Contains(rv.Blocked, tt.blocked) {
					t.Errorf("Blocked = %q, want it to say %q", rv.Blocked, tt.blocked)
				}
				if tt.canApprove && rv.Blocked != "" {
					t.Errorf("Blocked = %q for someone who can approve", rv.Blocked)
				}
				if rv.Own != (tt.requester == tt.reviewer) {
					t.Errorf("Own = %v", rv.Own)
				}
				switch decide {
				case "approve":
					_, err = e.svc.Approve(t.Context(), u, r.ID, "ok")
					if (err == nil) != tt.canApprove {
						t.Errorf("Approve: %v, but Review said CanApprove %v", err, tt.canApprove)
					}
				case "deny":
					_, err = e.svc.Deny(t.Context(), u, r.ID, "no")
					if (err == nil) != tt.canDeny {
						t.Errorf("Deny: %v, but Review said CanDeny %v", err, tt.canDeny)
					}
				}
			}
		})
	}
}

func TestReviewOfDecidedRequest(t *testing.T) {
	e := newEnv(t)
	r := e.create(t, "alice", "web", "1m") // auto-approved
	rv, err := e.rm.Review(t.Context(), e.users["bob"], r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.CanApprove || rv.CanDeny || !strings.Contains(rv.Blocked, "not pending") {
		t.Errorf("review of a %s request: %+v", rv.Request.State, rv)
	}
	if _, err := e.rm.Review(t.Context(), e.users["dave"], r.ID); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("a user who cannot see the request: %v, want not_found", err)
	}
}

func TestInbox(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", "web", "30m")
	e.clock.Add(time.Minute)
	b := e.create(t, "erin", "web", "30m")
	e.create(t, "alice", "web", "1m") // auto-approved: not pending
	ids := func(user string) []string {
		items, err := e.rm.Inbox(t.Context(), e.users[user])
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range items {
			out = append(out, it.Request.ID)
		}
		return out
	}
	for user, want := range map[string][]string{
		"bob":   {a.ID, b.ID}, // an approver: longest waiting first
		"erin":  {a.ID, b.ID}, // an approver, and her own request (which she cannot approve)
		"alice": {a.ID},       // her own only
		"root":  nil,          // an admin, but no approver
		"dave":  nil,          // approves another policy
	} {
		if got := ids(user); !slices.Equal(got, want) {
			t.Errorf("%s's inbox = %v, want %v", user, got, want)
		}
	}
}

func TestTargetForm(t *testing.T) {
	e := newEnv(t)
	tf, err := e.rm.TargetForm(t.Context(), e.users["alice"], "web")
	if err != nil {
		t.Fatal(err)
	}
	if tf.Name != "web" || tf.MaxDuration != "2h" || len(tf.Params) != 0 {
		t.Errorf("form for a provider without parameters: %+v", tf)
	}
	for _, required := range []bool{false, true} {
		e.setProviders(t, paramsProviders{required})
		tf, err = e.rm.TargetForm(t.Context(), e.users["alice"], "web")
		if err != nil {
			t.Fatal(err)
		}
		if want := []ParamInfo{{Name: "source_ip", Required: required}}; !slices.Equal(tf.Params, want) {
			t.Errorf("params = %+v, want %+v", tf.Params, want)
		}
	}
	if _, err := e.rm.TargetForm(t.Context(), e.users["bob"], "web"); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Errorf("a user no rule lets request it: %v, want forbidden", err)
	}
	if _, err := e.rm.TargetForm(t.Context(), e.users["alice"], "nope"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("an unknown target: %v, want not_found", err)
	}
}

// paramsProvider takes source_ip, optionally required, like ssh-cert.
type paramsProvider struct {
	*fakeProvider
	required bool
}

func (p paramsProvider) ValidateParams(params map[string]string) error {
	for k := range params {
		if k != "source_ip" {
			return ajar.FieldErrorf("params."+k, "unknown parameter")
		}
	}
	if _, ok := params["source_ip"]; !ok && p.required {
		return ajar.FieldErrorf("params.source_ip", "is required")
	}
	return nil
}

type paramsProviders struct{ required bool }

func (f paramsProviders) ForTarget(string) (ajar.Provider, error) {
	return paramsProvider{&fakeProvider{}, f.required}, nil
}
func (f paramsProviders) ForHandle(ajar.Handle) (ajar.Provider, error) { return &fakeProvider{}, nil }
func (f paramsProviders) Kind(string) (string, error)                  { return "fake", nil }
