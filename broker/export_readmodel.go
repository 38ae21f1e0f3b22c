package broker

import (
	"context"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// What the packages above the core (readmodel; ValidateCreate also
// sshaccess, ProviderTimeout also reconcile and credentials) need of it;
// cmd/ajar gives them the store, the policy, the providers and the clock.
// They render or compose what the core decides and decide nothing
// themselves: MayDecide is mayDecide (authz.go), the one function that says
// who may approve or deny, and CanSee is canSee, who may read a request. See
// docs/architecture.md.

// Decision verbs for MayDecide.
const (
	VerbApprove = verbApprove
	VerbDeny    = verbDeny
)

// Reasons MayDecide refuses (as audited in approval.refused).
const (
	RefusedNotPending    = refusedNotPending
	RefusedDeadline      = refusedDeadline
	RefusedSelf          = refusedSelf
	RefusedPolicyMissing = refusedPolicyMissing
	RefusedRequester     = refusedRequester
	RefusedAlready       = refusedAlready
	RefusedNotApprover   = refusedNotApprover
	RefusedMFA           = refusedMFA
)

// MayDecide says whether u may make decision verb (VerbApprove or VerbDeny) on
// request r, or on ext, r's extension waiting for approval, when ext is not
// nil, at now; breakglass says r was made with break-glass. It is mayDecide,
// which Approve and Deny ask, and audits nothing. When u may not, reason is
// one of the Refused* constants and err the error Approve or Deny would
// return; both are zero when u may.
func (s *Service) MayDecide(u ajar.User, r *ajar.Request, ext *ajar.Extension, breakglass bool, verb string, now time.Time) (reason string, err error) {
	_, _, f := s.mayDecide(u, decision{verb: verb, r: r, ext: ext, breakglass: breakglass}, now)
	if f == nil {
		return "", nil
	}
	return f.reason, f.err
}

// StepOf returns the first approval step of rule whose count approvals do not
// meet, or len(rule.Approval.Steps) when all are met.
func StepOf(approvals []ajar.Approval, rule *policy.Rule) int { return stepOf(approvals, rule) }

// RequestIsBreakglass reports whether request id was made with break-glass:
// whether it has a break-glass review task.
func RequestIsBreakglass(ctx context.Context, tx ajar.ReadTx, id string) (bool, error) {
	return requestIsBreakglass(ctx, tx, id)
}

// CanSee reports whether u may read r: its requester, an admin, or one of
// its approvers. GetRequest and the read model's lists ask it.
func (s *Service) CanSee(u ajar.User, r *ajar.Request) bool { return s.canSee(u, r) }

// ValidateCreate checks the fields of a new request as CreateRequest does
// before it asks the policy, and returns its duration (0: the policy's
// default). EINVALID names the field.
func ValidateCreate(in ajar.CreateInput) (time.Duration, error) { return validateCreate(in) }

// CheckParams checks a request's parameters with its target's provider, as
// CreateRequest does. EINVALID names the parameter.
func (s *Service) CheckParams(target string, params map[string]string) error {
	return s.checkParams(target, params)
}

// ProviderTimeout is the bound on one provider call.
func (s *Service) ProviderTimeout() time.Duration { return s.sched.ProviderTimeout }
