package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// The workflows around the core lifecycle: extending granted access,
// break-glass with its review, escalation of approval steps that wait too
// long, and explaining what the policy would do with a request.

// ReviewKindBreakglass is the kind of a break-glass review task.
const ReviewKindBreakglass = "breakglass"

// fmtDuration prints a duration the way users type it: "30m", "2h", "1h30m".
func fmtDuration(d time.Duration) string { return ajar.FormatDuration(d) }

// Extend asks for ajar.ExtendInput.By more on u's own active request, within the
// policy's extend rules (see policy.EvaluateExtension). When the rule says
// extend.approval: none, or its auto_approve condition holds for the whole
// extended window, the window grows at once: the new expiry, the handle's
// expiry (so new SSH certificates carry it) and the scheduler's next look are
// written in one compare-and-swap write with the audit event, while the
// access stays active, so there is no gap; then a provider that can (a
// Renewer) moves its own expiry. Otherwise the extension waits for the rule's
// approval steps, decided with Approve and Deny on the request, and lapses if
// the access ends first.
//
// Errors: EINVALID (field "by") for a bad duration or one past
// extend.max_total; EFORBIDDEN when u is not the requester or the rule allows
// no (more) extensions; ECONFLICT when the request is not active or an
// extension already waits.
func (s *Service) Extend(ctx context.Context, u ajar.User, id string, in ajar.ExtendInput) (*ajar.ExtendOutput, error) {
	by, err := time.ParseDuration(strings.TrimSpace(in.By))
	if err != nil || strings.TrimSpace(in.By) == "" {
		return nil, ajar.FieldErrorf("by", "%q is not a duration (use Go syntax, e.g. 30m or 1h)", in.By)
	}
	if by <= 0 {
		return nil, ajar.FieldErrorf("by", "must be positive")
	}
	if by > ajar.MaxWindow {
		return nil, ajar.FieldErrorf("by", "%s is longer than the hard limit %s on any access window", fmtDuration(by), fmtDuration(ajar.MaxWindow))
	}
	if err := ajar.CheckLines("reason", in.Reason, ajar.MaxReasonLen); err != nil {
		return nil, err
	}
	var out ajar.ExtendOutput
	applied := false
	r, err := s.mutate(ctx, u, id, func(tx ajar.Tx, r *ajar.Request) (bool, error) {
		now := tx.Now()
		if !ajar.SameUser(r.Requester, u.ID) {
			return false, ajar.Errorf(ajar.EFORBIDDEN, "only the requester can extend request %s", r.ID)
		}
		if r.State != ajar.StateActive || r.ExpiresAt == nil || r.Handle == nil || !now.Before(*r.ExpiresAt) {
			return false, ajar.Errorf(ajar.ECONFLICT, "request %s is %s; only active access can be extended", r.ID, r.State)
		}
		bg, err := s.mayExtend(ctx, tx, r) // authz.go: the rule still lets u have the target
		if ajar.ErrorCode(err) == ajar.EFORBIDDEN {
			return s.refuseExtend(ctx, tx, u, r, bg, err)
		} else if err != nil {
			return false, err
		}
		exts, err := tx.ListExtensions(ctx, r.ID)
		if err != nil {
			return false, err
		}
		done := 0
		for _, e := range exts {
			switch e.State {
			case ajar.ExtensionApplied:
				done++
			case ajar.ExtensionPending:
				return false, ajar.Errorf(ajar.ECONFLICT, "extension %d of request %s (by %s) is still waiting for approval", e.Seq, r.ID, fmtDuration(e.By))
			}
		}
		dec, err := s.pol.EvaluateExtension(u, policy.ExtensionInput{
			Policy: r.Policy, Target: r.Target, Reason: r.Reason, Ticket: r.Ticket, Params: r.Params,
			Start: r.ExpiresAt.Add(-r.Duration), Window: r.Duration, By: by, Extensions: done, Now: now,
		})
		if err != nil {
			return false, err
		}
		ext := &ajar.Extension{
			RequestID: r.ID, By: by, Reason: in.Reason, RequestedBy: u.ID, RequestedAt: now,
			State: ajar.ExtensionPending, Approvals: []ajar.Approval{},
		}
		if dec.AutoApprove {
			ext.State, ext.DecidedAt = ajar.ExtensionApplied, ptr(now)
		}
		if err := tx.CreateExtension(ctx, ext); err != nil {
			return false, err
		}
		out.Extension = *ext
		if bg {
			if err := s.alertBreakglassExtension(ctx, tx, u, r, ext); err != nil {
				return false, err
			}
		}
		if !dec.AutoApprove {
			return false, s.audit(ctx, tx, u.ID, "extension.requested", r.ID, map[string]any{
				"seq": ext.Seq, "by": fmtDuration(by), "reason": in.Reason, "window": fmtDuration(dec.Duration),
			})
		}
		applied = true
		return false, s.applyExtension(ctx, tx, u.ID, r, ext, now, map[string]any{"approval": dec.AutoApproveExpr})
	})
	if err != nil {
		return nil, err
	}
	if applied {
		r = s.renew(ctx, r)
	}
	s.Kick() // the new next look, and the notification
	out.Request = r
	return &out, nil
}

// applyExtension grows r's window by ext.By in tx: expiry, handle, duration and
// the scheduler's next look, then the audit event. It returns EINVALID (field
// "by") when the window would grow past ajar.MaxWindow or past the latest end
// recorded in the grant (GrantRequest.NotAfter), whatever the policy said: the
// window arithmetic is ajar.Window's, which cannot overflow.
func (s *Service) applyExtension(ctx context.Context, tx ajar.Tx, actor string, r *ajar.Request, ext *ajar.Extension, now time.Time, details map[string]any) error {
	prev := *r.ExpiresAt
	w, err := ajar.Window{Start: prev.Add(-r.Duration), End: prev}.Extend(ext.By, r.Handle.Grant.NotAfter)
	if err != nil {
		return err
	}
	exp := w.End
	h := *r.Handle
	h.Grant.ExpiresAt = exp
	r.Handle = &h
	r.ExpiresAt = &exp
	r.Duration = w.Length()
	r.UpdatedAt = now
	r.NextAt = s.activeNextAt(r, now)
	if err := tx.UpdateRequest(ctx, r); err != nil {
		return err
	}
	if details == nil {
		details = map[string]any{}
	}
	details["seq"], details["by"], details["expires_at"] = ext.Seq, fmtDuration(ext.By), exp
	details["previous_expires_at"], details["window"] = prev, fmtDuration(r.Duration)
	return s.audit(ctx, tx, actor, "request.extended", r.ID, details)
}

// renew asks a provider that can extend in place (ajar.Renewer) to move its
// own expiry to r's, after the store has the new one. Failing that, the
// scheduler still ends the access at the stored expiry; the provider's own
// lock may end it earlier, so the failure is audited and shown on the request.
func (s *Service) renew(ctx context.Context, r *ajar.Request) *ajar.Request {
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return r
	}
	rn, ok := prov.(ajar.Renewer)
	if !ok {
		return r
	}
	pctx, cancel := context.WithTimeout(ctx, s.sched.ProviderTimeout)
	h, rerr := rn.Renew(pctx, *r.Handle, *r.ExpiresAt)
	cancel()
	if rerr != nil {
		s.metrics.providerErrors.WithLabelValues(r.Handle.Provider, "renew").Inc()
		s.log.Warn("renew failed", "request", r.ID, "err", rerr)
	}
	cur := *r
	err = s.write(ctx, &cur, func(tx ajar.Tx, c *ajar.Request, now time.Time) error {
		if rerr != nil {
			c.LastError = "extend in place: " + safeError(rerr)
			return s.audit(ctx, tx, ajar.ActorSystem, "grant.renew_error", c.ID, map[string]any{"error": safeError(rerr), "expires_at": c.ExpiresAt})
		}
		if !h.Grant.ExpiresAt.Equal(*c.ExpiresAt) {
			h.Grant.ExpiresAt = *c.ExpiresAt
		}
		c.Handle = &h
		return s.audit(ctx, tx, ajar.ActorSystem, "grant.renewed", c.ID, map[string]any{"expires_at": c.ExpiresAt, "handle": h.Data})
	})
	if err != nil {
		s.log.Warn("record renewal", "request", r.ID, "err", err)
		return r
	}
	return &cur
}

// pendingExtension returns the extension of r waiting for approval, or
// ECONFLICT.
func pendingExtension(ctx context.Context, tx ajar.Tx, r *ajar.Request) (*ajar.Extension, error) {
	exts, err := tx.ListExtensions(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	for i := len(exts) - 1; i >= 0; i-- {
		if exts[i].State == ajar.ExtensionPending {
			return &exts[i], nil
		}
	}
	return nil, ajar.Errorf(ajar.ECONFLICT, "request %s is %s and has no extension waiting for approval", r.ID, r.State)
}

// StepOf returns the first approval step whose count approvals do not meet, or
// len(steps) when all are met.
func StepOf(approvals []ajar.Approval, rule *policy.Rule) int {
	for i, st := range rule.Approval.Steps {
		n := 0
		for _, a := range approvals {
			if a.Step == i && a.Decision == ajar.DecisionApprove {
				n++
			}
		}
		if n < st.Count {
			return i
		}
	}
	return len(rule.Approval.Steps)
}

// approveExtension records u's approval of r's pending extension. Who may is
// mayDecide's (authz.go), with the same rules as approving a request, checked
// also that the rule still lets the requester have the target. The last
// approval applies the extension.
func (s *Service) approveExtension(ctx context.Context, tx ajar.Tx, u ajar.User, r *ajar.Request, comment string, applied *bool) (bool, error) {
	now := tx.Now()
	ext, err := pendingExtension(ctx, tx, r)
	if err != nil {
		return false, err
	}
	bg, err := RequestIsBreakglass(ctx, tx, r.ID)
	if err != nil {
		return false, err
	}
	d := decision{verb: VerbApprove, r: r, ext: ext, breakglass: bg}
	rule, step, f := s.mayDecide(u, d, now)
	if f != nil {
		return s.refused(ctx, tx, u, d, f)
	}
	ext.Approvals = append(ext.Approvals, ajar.Approval{Approver: u.ID, Step: step, Decision: ajar.DecisionApprove, Comment: comment, At: now})
	if StepOf(ext.Approvals, rule) < len(rule.Approval.Steps) {
		if err := tx.UpdateExtension(ctx, ext); err != nil {
			return false, err
		}
		return false, s.audit(ctx, tx, u.ID, "extension.approval_recorded", r.ID, map[string]any{"seq": ext.Seq, "step": step, "comment": comment})
	}
	ext.State, ext.DecidedAt = ajar.ExtensionApplied, ptr(now)
	if err := tx.UpdateExtension(ctx, ext); err != nil {
		return false, err
	}
	*applied = true
	return false, s.applyExtension(ctx, tx, u.ID, r, ext, now, map[string]any{"approved_by": u.ID, "step": step, "comment": comment})
}

// denyExtension ends r's pending extension; the access itself goes on until
// its expiry. Who may is who may approve it (mayDecide, authz.go).
func (s *Service) denyExtension(ctx context.Context, tx ajar.Tx, u ajar.User, r *ajar.Request, reason string) (bool, error) {
	now := tx.Now()
	ext, err := pendingExtension(ctx, tx, r)
	if err != nil {
		return false, err
	}
	bg, err := RequestIsBreakglass(ctx, tx, r.ID)
	if err != nil {
		return false, err
	}
	d := decision{verb: VerbDeny, r: r, ext: ext, breakglass: bg}
	_, step, f := s.mayDecide(u, d, now)
	if f != nil {
		return s.refused(ctx, tx, u, d, f)
	}
	ext.Approvals = append(ext.Approvals, ajar.Approval{Approver: u.ID, Step: step, Decision: ajar.DecisionDeny, Comment: reason, At: now})
	ext.State, ext.DecidedAt = ajar.ExtensionDenied, ptr(now)
	if err := tx.UpdateExtension(ctx, ext); err != nil {
		return false, err
	}
	return false, s.audit(ctx, tx, u.ID, "extension.denied", r.ID, map[string]any{"seq": ext.Seq, "by": fmtDuration(ext.By), "reason": reason})
}

// Breakglass gives u access to a target at once, with no approval, under the
// first rule whose breakglass.allowed names u (see policy.EvaluateBreakglass:
// a reason is required, the rule's limits and deny/require conditions apply,
// with request.kind "breakglass"). The request, its review task, the
// breakglass.used event (and its notification) and the grant intent commit
// together; the grant is made before Breakglass returns. The review stays
// open until an admin other than u closes it with CloseReview.
func (s *Service) Breakglass(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error) {
	d, err := in.Validate()
	if err != nil {
		return nil, err
	}
	if in.Start != nil {
		return nil, ajar.FieldErrorf("start", "break-glass access starts at once; request scheduled access instead")
	}
	dec, err := s.pol.EvaluateBreakglass(u, policy.Input{
		Target: in.Target, Duration: d, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params, Now: s.now(),
	})
	if err != nil {
		return nil, err
	}
	if err := s.checkBreakglassMFA(u, dec.Rule, s.now()); err != nil { // mfa.go
		return nil, err
	}
	if err := s.CheckParams(in.Target, in.Params); err != nil {
		return nil, err
	}
	r := &ajar.Request{
		ID: newRequestID(), Target: in.Target, Requester: u.ID, Reason: in.Reason,
		Ticket: in.Ticket, Duration: dec.Duration, Params: in.Params, Policy: dec.Rule.Name,
		State: ajar.StateApproved, Approvals: []ajar.Approval{},
	}
	var heldAt time.Time
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		now := tx.Now()
		r.CreatedAt, r.UpdatedAt, r.ApprovalDeadline = now, now, now
		s.hold(r, now)
		heldAt = now
		if err := tx.CreateRequest(ctx, r); err != nil {
			return err
		}
		if err := tx.CreateReview(ctx, ajar.ReviewTask{
			RequestID: r.ID, Kind: ReviewKindBreakglass, Requester: u.ID, Target: r.Target, Reason: r.Reason, OpenedAt: now,
		}); err != nil {
			return err
		}
		details := map[string]any{
			"target": r.Target, "duration": r.Duration.String(), "reason": r.Reason,
			"ticket": r.Ticket, "params": r.Params, "policy": r.Policy, "breakglass": true,
		}
		if err := s.audit(ctx, tx, u.ID, "request.created", r.ID, details); err != nil {
			return err
		}
		if err := s.audit(ctx, tx, u.ID, "breakglass.used", r.ID, details); err != nil {
			return err
		}
		if err := s.startGrant(ctx, tx, r, now); err != nil {
			return err
		}
		return tx.UpdateRequest(ctx, r)
	})
	if err != nil {
		return nil, fmt.Errorf("break-glass: %w", err)
	}
	s.metrics.created.Inc()
	s.log.Warn("break-glass used", "request", r.ID, "user", u.ID, "target", r.Target, "duration", r.Duration)
	s.runHeld(r, heldAt)
	return s.getRequest(ctx, r.ID)
}

// CheckParams validates request parameters with the target's provider (the
// read model's forms ask it too). EINVALID names the parameter.
func (s *Service) CheckParams(target string, params map[string]string) error {
	prov, err := s.providers.ForTarget(target)
	if err != nil {
		return fmt.Errorf("provider for %s: %w", target, err)
	}
	if pv, ok := prov.(ajar.ParamsValidator); ok {
		return pv.ValidateParams(params)
	}
	for k := range params {
		return ajar.FieldErrorf("params."+k, "target %s takes no parameters", target)
	}
	return nil
}

// CloseReview closes the review task of a break-glass request with a comment.
// Only an admin may, and never the one who used break-glass (separation of
// duties; the refusal is audited). EINVALID (field "comment") without a
// comment, ENOTFOUND when the request has no review, ECONFLICT when it is
// closed already.
func (s *Service) CloseReview(ctx context.Context, u ajar.User, id, comment string) (*ajar.ReviewTask, error) {
	if strings.TrimSpace(comment) == "" {
		return nil, ajar.FieldErrorf("comment", "a comment is required to close a review: what was checked")
	}
	if err := checkComment("comment", comment); err != nil {
		return nil, err
	}
	if !s.pol.IsAdmin(u) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can close reviews")
	}
	var out *ajar.ReviewTask
	var refusal error
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		rv, err := tx.GetReview(ctx, id)
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			return ajar.Errorf(ajar.ENOTFOUND, "request %s has no review", id)
		} else if err != nil {
			return err
		}
		if ajar.SameUser(rv.Requester, u.ID) {
			refusal = ajar.Errorf(ajar.EFORBIDDEN, "you cannot close the review of your own break-glass access")
			return s.audit(ctx, tx, u.ID, "review.refused", id, map[string]any{"reason": "self-review"})
		}
		if rv.ClosedAt != nil {
			return ajar.Errorf(ajar.ECONFLICT, "the review of request %s was closed by %s", id, rv.ClosedBy)
		}
		now := tx.Now()
		if err := tx.CloseReview(ctx, id, u.ID, comment, now); err != nil {
			return err
		}
		rv.ClosedAt, rv.ClosedBy, rv.Comment = ptr(now), u.ID, comment
		out = rv
		return s.audit(ctx, tx, u.ID, "review.closed", id, map[string]any{"comment": comment})
	})
	if err != nil {
		return nil, err
	}
	if refusal != nil {
		return nil, refusal
	}
	s.Kick()
	return out, nil
}

// Escalation of approval steps.

// stepStarted is when step began waiting: when the request was made for the
// first step, else the last approval of the step before.
func stepStarted(r *ajar.Request, step int) time.Time {
	t := r.CreatedAt
	if step == 0 {
		return t
	}
	for _, a := range r.Approvals {
		if a.Step == step-1 && a.Decision == ajar.DecisionApprove && a.At.After(t) {
			t = a.At
		}
	}
	return t
}

// escalation returns r's current step and when it escalates; ok is false when
// the step does not escalate.
func escalation(r *ajar.Request, rule *policy.Rule) (step int, at time.Time, ok bool) {
	step = currentStep(r, rule)
	if step >= len(rule.Approval.Steps) || rule.Approval.Steps[step].EscalateAfter <= 0 {
		return step, time.Time{}, false
	}
	return step, stepStarted(r, step).Add(rule.Approval.Steps[step].EscalateAfter), true
}

// escalated reports whether step of r has waited past its escalate_after, so
// that its escalate_to may decide on it too.
func escalated(r *ajar.Request, rule *policy.Rule, step int, now time.Time) bool {
	cur, at, ok := escalation(r, rule)
	return ok && cur == step && !now.Before(at)
}

// pendingNextAt is when the scheduler must look at a pending request: its
// approval deadline, or its current step's escalation if that comes first
// (now, if it is already past: the scheduler then checks whether it was sent).
func pendingNextAt(r *ajar.Request, rule *policy.Rule, now time.Time) time.Time {
	next := r.ApprovalDeadline
	if rule == nil {
		return next
	}
	if _, at, ok := escalation(r, rule); ok && at.Before(next) {
		next = at
		if at.Before(now) {
			next = now
		}
	}
	return next
}

// escalate runs when the scheduler looks at a pending request before its
// deadline: if the current step has waited past escalate_after and was not
// escalated yet, it audits request.escalated (which notifies), and it moves
// the next look to the deadline or to the escalation still ahead.
func (s *Service) escalate(ctx context.Context, tx ajar.Tx, cur *ajar.Request, now time.Time) error {
	cur.NextAt = ptr(cur.ApprovalDeadline)
	rule, ok := s.pol.Rule(cur.Policy)
	if !ok {
		return nil
	}
	step, at, ok := escalation(cur, rule)
	if !ok || !at.Before(cur.ApprovalDeadline) {
		return nil
	}
	if now.Before(at) {
		cur.NextAt = ptr(at)
		return nil
	}
	evs, err := tx.ListAudit(ctx, ajar.AuditFilter{Subject: cur.ID})
	if err != nil {
		return err
	}
	for _, e := range evs {
		var d struct {
			Step int `json:"step"`
		}
		if e.Action == "request.escalated" && json.Unmarshal(e.Details, &d) == nil && d.Step == step {
			return nil // already escalated
		}
	}
	st := rule.Approval.Steps[step]
	return s.audit(ctx, tx, ajar.ActorSystem, "request.escalated", cur.ID, map[string]any{
		"step": step, "escalate_to": st.EscalateTo, "waited": fmtDuration(now.Sub(stepStarted(cur, step)).Round(time.Second)),
	})
}
