package broker

import (
	"context"
	"time"

	"github.com/ajar-dev/ajar"
)

// What the packages beside and above the core need of it besides the
// lifecycle: readmodel (MayDecide, CanSee, StepOf, RequestIsBreakglass,
// CheckParams), sshaccess (CheckCertLimit), reconcile
// (ProviderGrant, RevokeUnlessShared, ProviderRevoke), credentials and
// reconcile (ProviderTimeout, CountProviderError) and sshhost (AppendAudit).
// cmd/ajar gives them the store, the policy, the providers and the clock.
// They render or compose what the core decides and decide nothing
// themselves. See docs/architecture.md.

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

// ProviderTimeout is the bound on one provider call.
func (s *Service) ProviderTimeout() time.Duration { return s.sched.ProviderTimeout }

// CountProviderError counts a failed provider call in
// ajar_provider_errors_total{provider, op}.
func (s *Service) CountProviderError(provider, op string) {
	s.metrics.providerErrors.WithLabelValues(provider, op).Inc()
}

// AppendAudit appends one audit event in tx exactly as the core records its own
// changes (the hash chain, and the notification outbox in the same
// transaction), for the packages beside the core that record events in their
// own transactions (sshhost, sshaccess). An error fails the transaction: an
// audit write that fails fails the operation.
func (s *Service) AppendAudit(ctx context.Context, tx ajar.Tx, actor, action, subject string, details any) error {
	return s.audit(ctx, tx, actor, action, subject, details)
}
