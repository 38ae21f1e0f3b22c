package broker

import (
	"context"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// What package readmodel (evidence, audit search and the web's view models)
// needs of the core. The read model sits above the broker and renders what the
// core decides; it decides nothing itself: MayDecide is mayDecide (authz.go),
// the one function that says who may approve or deny. See
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

// EachRequest calls fn on every request f selects, newest first, reading the
// store a page at a time within tx.
func EachRequest(ctx context.Context, tx ajar.ReadTx, f ajar.RequestFilter, fn func(*ajar.Request)) error {
	return eachRequest(ctx, tx, f, fn)
}

// VisibleRequests returns every request u may see (as GetRequest decides),
// following ListRequests' cursors to the end.
func (s *Service) VisibleRequests(ctx context.Context, u ajar.User) ([]*ajar.Request, error) {
	return s.allRequests(ctx, u, ListInput{})
}

// TargetInfoOf describes a target and the rule that lets a user request it.
func TargetInfoOf(v policy.TargetView) TargetInfo { return targetInfo(v) }

// Store returns the store the service works on, for reads.
func (s *Service) Store() ajar.Store { return s.store }

// Now returns the service's clock reading.
func (s *Service) Now() time.Time { return s.now() }

// Providers returns the service's provider registry.
func (s *Service) Providers() Providers { return s.providers }

// ProviderTimeout is the bound on one provider call.
func (s *Service) ProviderTimeout() time.Duration { return s.sched.ProviderTimeout }

// SignsCheckpoints reports whether the service signs audit checkpoints.
func (s *Service) SignsCheckpoints() bool { return s.signer != nil }

// FmtDuration formats d for people: 30m rather than 30m0s.
func FmtDuration(d time.Duration) string { return fmtDuration(d) }

// SafeError is what may be shown of a provider's error: an *ajar.Error's
// message, or the error text truncated.
func SafeError(err error) string { return safeError(err) }
