package readmodel

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// ExplainInput is a request to explain: the fields of a new request, and As,
// the user to evaluate it for (admins only; empty for the caller).
type ExplainInput struct {
	Target   string            `json:"target"`
	Duration string            `json:"duration"`
	Reason   string            `json:"reason"`
	Ticket   string            `json:"ticket,omitempty"`
	Start    *time.Time        `json:"start,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	As       string            `json:"as,omitempty"`
}

// Explain says what the policy would do with a request, without creating
// anything: which rule applies and why, each check and condition with its
// value, who could approve each step, and the limits (see policy.Explain),
// plus the target's parameter check (the broker's). in.As evaluates it for another user;
// only admins may. Only malformed input is an error (EINVALID); a request the
// policy would refuse is an explanation with outcome "denied" or "invalid".
func (s *Reader) Explain(ctx context.Context, u ajar.User, in ExplainInput) (*policy.Explanation, error) {
	d, err := ajar.CreateInput{Target: in.Target, Duration: in.Duration, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params}.Validate()
	if err != nil {
		return nil, err
	}
	who := u
	if in.As != "" && !ajar.SameUser(in.As, u.ID) {
		if !s.pol.IsAdmin(u) {
			return nil, ajar.FieldErrorf("as", "only admins can explain a request for someone else")
		}
		var ok bool
		if who, ok = s.core.User(ctx, in.As); !ok {
			return nil, &ajar.Error{Code: ajar.ENOTFOUND, Field: "as", Message: fmt.Sprintf("no user %q", in.As)}
		}
	}
	now := s.now()
	ex := s.pol.Explain(who, policy.Input{
		Target: in.Target, Duration: d, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params, Start: in.Start, Now: now,
	})
	if ex.Policy == "" {
		return ex, nil
	}
	check := func(name string, err error) {
		v := policy.Verdict{Check: name, OK: err == nil}
		if err != nil {
			v.Message = ajar.ErrorMessage(err)
			if ex.Error == nil {
				ex.Outcome = policy.OutcomeInvalid
				ex.Error = &policy.ExplainError{Code: ajar.ErrorCode(err), Field: ajar.ErrorField(err), Message: ajar.ErrorMessage(err)}
				ex.Summary = fmt.Sprintf("policy %s applies; refused: %s", ex.Policy, v.Message)
			}
		}
		ex.Checks = append(ex.Checks, v)
	}
	if err := s.core.CheckParams(in.Target, in.Params); err != nil && missingParam(err, in.Params) {
		ex.AddMissing(ajar.ErrorField(err), err)
	} else {
		check("params", err)
	}
	check("start", ajar.CheckStart(in.Start, now))
	return ex, nil
}

// missingParam reports whether err is about a parameter that was not given
// (field "params.NAME" with no such key), rather than one given wrong.
func missingParam(err error, params map[string]string) bool {
	name, ok := strings.CutPrefix(ajar.ErrorField(err), "params.")
	if !ok {
		return false
	}
	_, given := params[name]
	return !given
}
