package broker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// Who may decide. One function, mayDecide, says whether a person may approve
// or deny a pending request's current approval step or the pending extension
// of an active request. Approve, Deny, their extension paths and the web's
// review (package readmodel, through MayDecide in export.go) all ask
// it, so the page says exactly what the API does, and the CLI and chat, which
// go through the API, follow. See docs/security.md.

// Verbs of a decision.
const (
	VerbApprove = "approve"
	VerbDeny    = "deny"
)

// Reasons mayDecide refuses, as audited in approval.refused (details.reason).
const (
	RefusedNotPending    = "not-pending"           // nothing waits for a decision (ECONFLICT)
	RefusedDeadline      = "deadline-passed"       // the approval deadline or the access's expiry passed (ECONFLICT)
	RefusedSelf          = "self"                  // the requester decides on their own request (EFORBIDDEN)
	RefusedPolicyMissing = "policy-missing"        // the request's rule is gone from the policy (EFORBIDDEN)
	RefusedRequester     = "requester-not-allowed" // the rule no longer lets the requester have the target (EFORBIDDEN)
	RefusedAlready       = "already-decided"       // the person decided on it already (ECONFLICT)
	RefusedNotApprover   = "not-an-approver"       // not an approver of the current step, nor its escalation once due (EFORBIDDEN)
)

// refusal is why mayDecide refuses: a stable reason (refused*) and the error
// to give the caller. EFORBIDDEN refusals are audited by the caller.
type refusal struct {
	reason string
	err    error
}

func (f *refusal) Error() string { return f.err.Error() }

// forbidden reports whether the refusal is about who asks (EFORBIDDEN), not
// about the state of the request (ECONFLICT).
func (f *refusal) forbidden() bool { return ajar.ErrorCode(f.err) == ajar.EFORBIDDEN }

func refuse(reason, code, format string, args ...any) *refusal {
	return &refusal{reason: reason, err: ajar.Errorf(code, format, args...)}
}

// decision is one decision someone asks to make: verb (VerbApprove or
// VerbDeny) on request r, or on ext, the extension of r waiting for approval,
// when ext is not nil. breakglass says r was made with break-glass (it has a
// break-glass review task, see RequestIsBreakglass).
type decision struct {
	verb       string
	r          *ajar.Request
	ext        *ajar.Extension
	breakglass bool
}

// approvals returns the decisions recorded so far on what is being decided.
func (d decision) approvals() []ajar.Approval {
	if d.ext != nil {
		return d.ext.Approvals
	}
	return d.r.Approvals
}

// what names what is being decided, for messages.
func (d decision) what() string {
	if d.ext != nil {
		return fmt.Sprintf("extension %d of request %s", d.ext.Seq, d.r.ID)
	}
	return "request " + d.r.ID
}

// mayDecide says whether u may make decision d at now, and if so under which
// rule and for which approval step (an index into rule.Approval.Steps). The
// rules, the same for approving and denying, a request and an extension:
//
//   - something must wait for a decision: a pending request before its
//     approval deadline, or a pending extension of an active request before the
//     access expires (ECONFLICT otherwise; the scheduler times the request out);
//   - never the requester (EFORBIDDEN, separation of duties);
//   - the request's rule must still exist, and must still let the requester
//     have the target: be one of its requesters, or for break-glass access be
//     named in its breakglass.allowed (EFORBIDDEN);
//   - each person decides once (ECONFLICT);
//   - u approves the current step, or is named in its escalate_to and the step
//     has waited past escalate_after: for a request since it was made or its
//     previous step was met, for an extension since it was asked for or its
//     previous step was met (EFORBIDDEN).
//
// The refusal's reason is one of the refused* constants.
func (s *Service) mayDecide(u ajar.User, d decision, now time.Time) (*policy.Rule, int, *refusal) {
	r := d.r
	if d.ext == nil {
		if r.State != ajar.StatePending {
			return nil, 0, refuse(RefusedNotPending, ajar.ECONFLICT, "request %s is %s, not pending", r.ID, r.State)
		}
		if !now.Before(r.ApprovalDeadline) {
			return nil, 0, refuse(RefusedDeadline, ajar.ECONFLICT, "the approval deadline of request %s passed at %s; it times out",
				r.ID, r.ApprovalDeadline.UTC().Format(time.RFC3339))
		}
	} else {
		if r.State != ajar.StateActive || d.ext.State != ajar.ExtensionPending {
			return nil, 0, refuse(RefusedNotPending, ajar.ECONFLICT, "%s is %s, not pending", d.what(), d.ext.State)
		}
		if r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) {
			return nil, 0, refuse(RefusedDeadline, ajar.ECONFLICT, "request %s reached its expiry before extension %d was decided", r.ID, d.ext.Seq)
		}
	}
	if ajar.SameUser(r.Requester, u.ID) {
		switch {
		case d.ext != nil:
			return nil, 0, refuse(RefusedSelf, ajar.EFORBIDDEN, "you cannot %s the extension of your own request", d.verb)
		case d.verb == VerbDeny:
			return nil, 0, refuse(RefusedSelf, ajar.EFORBIDDEN, "you cannot decide on your own request; cancel it instead")
		}
		return nil, 0, refuse(RefusedSelf, ajar.EFORBIDDEN, "you cannot approve your own request")
	}
	rule, ok := s.pol.Rule(r.Policy)
	if !ok {
		return nil, 0, refuse(RefusedPolicyMissing, ajar.EFORBIDDEN, "policy %q no longer exists; nobody can decide on %s", r.Policy, d.what())
	}
	if err := s.mayHave(r, rule, d.breakglass); err != nil {
		return nil, 0, refuse(RefusedRequester, ajar.EFORBIDDEN, "%s; nobody can approve or deny %s", ajar.ErrorMessage(err), d.what())
	}
	if slices.ContainsFunc(d.approvals(), func(a ajar.Approval) bool { return ajar.SameUser(a.Approver, u.ID) }) {
		return nil, 0, refuse(RefusedAlready, ajar.ECONFLICT, "you have already decided on %s", d.what())
	}
	step := StepOf(d.approvals(), rule)
	if !rule.CanApprove(step, u) && !(rule.CanEscalate(step, u) && s.stepEscalated(d, rule, step, now)) {
		return nil, 0, refuse(RefusedNotApprover, ajar.EFORBIDDEN, "you are not an approver for step %d of policy %s", step+1, rule.Name)
	}
	if f := s.mfaRefusal(u, d, rule, step, now); f != nil { // mfa.go
		return nil, 0, f
	}
	return rule, step, nil
}

// stepEscalated reports whether step of what d decides has waited past its
// escalate_after, so that its escalate_to may decide on it too. A request's
// steps count from its creation (see escalated, which the scheduler uses to
// notify), an extension's from when it was asked for; an extension's
// escalation is not notified.
func (s *Service) stepEscalated(d decision, rule *policy.Rule, step int, now time.Time) bool {
	if d.ext == nil {
		return escalated(d.r, rule, step, now)
	}
	return escalated(&ajar.Request{CreatedAt: d.ext.RequestedAt, Approvals: d.ext.Approvals}, rule, step, now)
}

// mayHave returns EFORBIDDEN unless r's rule still lets r's requester have
// r's target: the rule lists the target and names the requester among its
// requesters or, for break-glass access, in its breakglass.allowed. A
// requester no longer in the policy file is the zero User, whom no rule names.
func (s *Service) mayHave(r *ajar.Request, rule *policy.Rule, breakglass bool) error {
	// mayDecide has no context; the directory is asked with a bounded one (a
	// directory that does not answer in time leaves the requester unknown:
	// refused).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, known := s.user(ctx, r.Requester)
	var err error
	switch {
	case !rule.Covers(r.Target):
		err = ajar.Errorf(ajar.EFORBIDDEN, "policy %s no longer covers target %s", rule.Name, r.Target)
	case breakglass && !rule.MayBreakglass(req):
		err = ajar.Errorf(ajar.EFORBIDDEN, "policy %s no longer lets %s use break-glass on %s", rule.Name, r.Requester, r.Target)
	case !breakglass && !rule.MayRequest(req):
		err = ajar.Errorf(ajar.EFORBIDDEN, "policy %s no longer lets %s request %s", rule.Name, r.Requester, r.Target)
	}
	if err != nil && !known {
		err = ajar.Errorf(ajar.EFORBIDDEN, "%s is no longer in the policy file", r.Requester)
	}
	return err
}

// RequestIsBreakglass reports whether request id was made with break-glass:
// whether it has a break-glass review task.
func RequestIsBreakglass(ctx context.Context, tx ajar.ReadTx, id string) (bool, error) {
	rv, err := tx.GetReview(ctx, id)
	switch {
	case ajar.ErrorCode(err) == ajar.ENOTFOUND:
		return false, nil
	case err != nil:
		return false, err
	}
	return rv.Kind == ReviewKindBreakglass, nil
}

// refused returns f's error for mutate to give the caller (keep is true: the
// transaction commits). An EFORBIDDEN refusal is first audited as
// approval.refused, with the reason and the decision asked for; the others are
// about the request's state, not about who asks, and are not.
func (s *Service) refused(ctx context.Context, tx ajar.Tx, u ajar.User, d decision, f *refusal) (keep bool, err error) {
	if !f.forbidden() {
		return false, f.err
	}
	details := map[string]any{"reason": f.reason, "decision": d.verb}
	if d.ext != nil {
		details["extension"] = d.ext.Seq
	}
	if err := s.audit(ctx, tx, u.ID, "approval.refused", d.r.ID, details); err != nil {
		return false, err
	}
	return true, f.err
}

// mayExtend checks, when u asks to extend r, that r's rule still lets u have
// r's target (see mayHave; EFORBIDDEN otherwise), and reports whether r was
// made with break-glass: extending it is then break-glass again, which u must
// still be allowed and which alerts (alertBreakglassExtension).
func (s *Service) mayExtend(ctx context.Context, tx ajar.ReadTx, r *ajar.Request) (breakglass bool, err error) {
	rule, ok := s.pol.Rule(r.Policy)
	if !ok {
		return false, ajar.Errorf(ajar.ECONFLICT, "policy %q no longer exists, so the request cannot be extended", r.Policy)
	}
	if breakglass, err = RequestIsBreakglass(ctx, tx, r.ID); err != nil {
		return false, err
	}
	return breakglass, s.mayHave(r, rule, breakglass)
}

// refuseExtend audits extension.refused for u's extension of r that
// mayExtend refused with refusal, and returns refusal for mutate to give the
// caller (keep is true: the audit event commits).
func (s *Service) refuseExtend(ctx context.Context, tx ajar.Tx, u ajar.User, r *ajar.Request, breakglass bool, refusal error) (keep bool, err error) {
	if err := s.audit(ctx, tx, u.ID, "extension.refused", r.ID, map[string]any{
		"reason": RefusedRequester, "breakglass": breakglass, "message": ajar.ErrorMessage(refusal),
	}); err != nil {
		return false, err
	}
	return true, refusal
}

// alertBreakglassExtension audits breakglass.extended, which notifies like
// breakglass.used, for an extension of break-glass access: asked for (it
// waits for approval) or applied at once.
func (s *Service) alertBreakglassExtension(ctx context.Context, tx ajar.Tx, u ajar.User, r *ajar.Request, ext *ajar.Extension) error {
	return s.audit(ctx, tx, u.ID, "breakglass.extended", r.ID, map[string]any{
		"seq": ext.Seq, "by": fmtDuration(ext.By), "reason": ext.Reason, "state": ext.State,
	})
}
