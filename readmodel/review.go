package readmodel

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/policy"
)

// Reads the web pages need beyond the API's: an approver's inbox with the reason a
// person cannot decide on a request, the parameters a target's form asks for, a
// searchable audit log and a request's evidence. The rules stay in broker, which
// this asks, so a page shows exactly what the core would do.

// Review is a request as one user may decide on it: whether they can approve or
// deny it, or its extension waiting for approval, now and, when they cannot
// approve, why, in a sentence. It is what broker's MayDecide (mayDecide in
// broker/authz.go), which Approve and Deny ask, says.
type Review struct {
	Request *ajar.Request `json:"request"`
	// Extension is the extension of the (active) request waiting for approval,
	// which is what Approve and Deny decide; nil for a pending request.
	Extension *ajar.Extension `json:"extension,omitempty"`
	// Step is the approval step waiting for approvals (0-based); Steps is how many
	// the policy has, and Approvers and Count what Step needs.
	Step      int      `json:"step"`
	Steps     int      `json:"steps"`
	Approvers []string `json:"approvers"`
	Count     int      `json:"count"`
	Approved  int      `json:"approved"` // approvals already recorded for Step
	Own       bool     `json:"own"`      // the user made this request
	// CanApprove and CanDeny say whether Approve and Deny would accept this user now.
	CanApprove bool `json:"can_approve"`
	CanDeny    bool `json:"can_deny"`
	// Blocked says why the user cannot approve ("" when CanApprove).
	Blocked string `json:"blocked,omitempty"`
	// Eligible are the people of the policy file who may still approve Step:
	// its approvers, without the requester and those who already decided
	// (what explain lists). Users from an identity provider are not known
	// until they sign in, so they are not listed.
	Eligible []string `json:"eligible"`
	// NeedsMFA says the user could approve after proving a second factor
	// (the step has require_mfa): the page offers a security key or SSO.
	NeedsMFA bool `json:"needs_mfa,omitempty"`
}

// review works out what u may do about r, or about ext, r's extension waiting
// for approval, when it is not nil; breakglass says r was made with
// break-glass. approver reports whether u approves any step of r's policy.
func (s *Reader) review(u ajar.User, r *ajar.Request, ext *ajar.Extension, breakglass bool, now time.Time) (rv Review, approver bool) {
	rv = Review{Request: r, Extension: ext, Own: ajar.SameUser(r.Requester, u.ID)}
	approvals := r.Approvals // what is being decided: the request, or its extension
	if ext != nil {
		approvals = ext.Approvals
	}
	rule, ok := s.pol.Rule(r.Policy)
	if ok {
		rv.Steps = len(rule.Approval.Steps)
		rv.Step = broker.StepOf(approvals, rule)
		if rv.Step < rv.Steps {
			st := rule.Approval.Steps[rv.Step]
			rv.Approvers, rv.Count = slices.Clone(st.Approvers), st.Count
			for _, a := range approvals {
				if a.Step == rv.Step && a.Decision == ajar.DecisionApprove {
					rv.Approved++
				}
			}
			for _, id := range s.pol.Eligible(st.Approvers, r.Requester) {
				if !slices.ContainsFunc(approvals, func(a ajar.Approval) bool { return ajar.SameUser(a.Approver, id) }) {
					rv.Eligible = append(rv.Eligible, id)
				}
			}
		}
		for i := range rule.Approval.Steps {
			approver = approver || rule.CanApprove(i, u)
		}
	}
	reason, err := s.core.MayDecide(u, r, ext, breakglass, broker.VerbApprove, now)
	rv.CanApprove = err == nil
	_, errDeny := s.core.MayDecide(u, r, ext, breakglass, broker.VerbDeny, now)
	rv.CanDeny = errDeny == nil
	if err != nil {
		rv.Blocked = blockedSentence(reason, err, r, ext, rule, rv.Step, u)
		rv.NeedsMFA = reason == broker.RefusedMFA
	}
	return rv, approver || rv.CanApprove
}

// blockedSentence says for a page why broker's MayDecide refused u's approval
// of r (or of ext, when not nil) for reason with err, in a sentence.
func blockedSentence(reason string, err error, r *ajar.Request, ext *ajar.Extension, rule *policy.Rule, step int, u ajar.User) string {
	switch reason {
	case broker.RefusedNotPending:
		return fmt.Sprintf("It is %s, not pending: there is nothing left to decide.", r.State)
	case broker.RefusedSelf:
		if ext != nil {
			return "You asked for this extension, and nobody approves their own request (separation of duties)."
		}
		return "You made this request, and nobody approves their own request (separation of duties). You can cancel it instead."
	case broker.RefusedPolicyMissing:
		return fmt.Sprintf("Its policy %q no longer exists, so nobody can approve it.", r.Policy)
	case broker.RefusedAlready:
		return "You have already approved it; it is waiting for other approvers."
	case broker.RefusedDeadline:
		if ext != nil {
			return "The access ends before anyone can decide on this extension."
		}
		return fmt.Sprintf("Its approval deadline passed at %s: it times out, and nobody can decide on it now.", r.ApprovalDeadline.UTC().Format("2006-01-02 15:04:05 UTC"))
	case broker.RefusedMFA:
		return fmt.Sprintf("Step %d of policy %s requires a second factor made in the last 5 minutes: verify with your security key, or sign in again with SSO, then approve.", step+1, rule.Name)
	case broker.RefusedNotApprover:
		if step >= len(rule.Approval.Steps) {
			return fmt.Sprintf("Policy %s has no approval step waiting for approvals.", rule.Name)
		}
		st := rule.Approval.Steps[step]
		msg := fmt.Sprintf("Step %d of policy %s needs approval from %s, and you are not one of them.",
			step+1, rule.Name, strings.Join(st.Approvers, ", "))
		if rule.CanEscalate(step, u) {
			msg += fmt.Sprintf(" You may decide too once it has waited %s (escalate_after).", ajar.FormatDuration(st.EscalateAfter))
		}
		return msg
	}
	msg := ajar.ErrorMessage(err)
	if msg == "" {
		return "You cannot decide on it now."
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

// Inbox lists the pending requests, and the active ones with an extension
// waiting for approval, that u can decide on (u approves some step of their
// policy) or made, longest waiting first, each with
// what u may do about it. It reads every pending request, however many there
// are (the open-request limit bounds them), so none is left out.
func (s *Reader) Inbox(ctx context.Context, u ajar.User) ([]Review, error) {
	var rs []*ajar.Request
	exts := map[string]*ajar.Extension{} // active request id: its pending extension
	bgs := map[string]bool{}             // active request id: made with break-glass
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var active []*ajar.Request
		err := eachRequest(ctx, tx, ajar.RequestFilter{States: []ajar.State{ajar.StatePending, ajar.StateActive}}, func(r *ajar.Request) {
			if r.State == ajar.StateActive {
				active = append(active, r)
			} else {
				rs = append(rs, r)
			}
		})
		if err != nil {
			return err
		}
		// An active request is in the inbox while an extension of it waits
		// for approval: that is what Approve and Deny decide.
		pending, err := pendingExtensions(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range active {
			ext := pending[r.ID]
			if ext == nil {
				continue
			}
			bg, err := broker.RequestIsBreakglass(ctx, tx, r.ID)
			if err != nil {
				return err
			}
			rs, exts[r.ID], bgs[r.ID] = append(rs, r), ext, bg
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	out := []Review{}
	now := s.now()
	for _, r := range rs {
		if rv, approver := s.review(u, r, exts[r.ID], bgs[r.ID], now); approver || rv.Own {
			out = append(out, rv)
		}
	}
	slices.SortStableFunc(out, func(a, b Review) int { return a.waitingSince().Compare(b.waitingSince()) })
	return out, nil
}

// Review returns a request u may see with what u may do about it; ENOTFOUND
// otherwise.
func (s *Reader) Review(ctx context.Context, u ajar.User, id string) (*Review, error) {
	r, err := s.core.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	var ext *ajar.Extension
	bg := false
	if r.State == ajar.StateActive {
		err := s.store.View(ctx, func(tx ajar.ReadTx) (err error) {
			ext, bg, err = pendingExtension(ctx, tx, r.ID)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("review %s: %w", id, err)
		}
	}
	rv, _ := s.review(u, r, ext, bg, s.now())
	return &rv, nil
}

// waitingSince is when what rv decides was asked for: the extension, or the
// request.
func (rv Review) waitingSince() time.Time {
	if rv.Extension != nil {
		return rv.Extension.RequestedAt
	}
	return rv.Request.CreatedAt
}

// pendingExtension returns the newest extension of active request id that
// waits for approval (nil when none), and whether the request was made with
// break-glass, which deciding on it needs to know.
func pendingExtension(ctx context.Context, tx ajar.ReadTx, id string) (*ajar.Extension, bool, error) {
	exts, err := tx.ListExtensions(ctx, id)
	if err != nil {
		return nil, false, err
	}
	for i := len(exts) - 1; i >= 0; i-- {
		if exts[i].State == ajar.ExtensionPending {
			bg, err := broker.RequestIsBreakglass(ctx, tx, id)
			return &exts[i], bg, err
		}
	}
	return nil, false, nil
}

// pendingExtensions returns the newest extension waiting for approval of
// each request that has one, from one store read (ListPendingExtensions), so
// the inbox does not look up the extensions of every active request.
func pendingExtensions(ctx context.Context, tx ajar.ReadTx) (map[string]*ajar.Extension, error) {
	exts, err := tx.ListPendingExtensions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*ajar.Extension, len(exts))
	for i := range exts {
		out[exts[i].RequestID] = &exts[i] // by Seq: the newest comes last
	}
	return out, nil
}

// ParamInfo is a request parameter a target takes.
type ParamInfo struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
}

// TargetForm is what the form for requesting a target asks: the target's limits
// and approvers, and the parameters its provider takes.
type TargetForm struct {
	TargetInfo
	Params []ParamInfo `json:"params"`
}

// wellKnownParams are the request parameters a form offers by name, each with a
// valid sample value. Providers do not describe their parameters yet, so
// TargetForm asks each provider's ValidateParams about these; any other
// parameter is still accepted as free "name=value" text.
var wellKnownParams = []struct{ name, sample string }{
	{"source_ip", "192.0.2.1"}, // the requester's address (ssh-cert, firewall windows)
}

// TargetForm describes the form for u to request target. ENOTFOUND (field
// "target") for an unknown target, EFORBIDDEN (field "target") when no rule lets u
// request it.
func (s *Reader) TargetForm(ctx context.Context, u ajar.User, target string) (*TargetForm, error) {
	pol := s.pol
	rule, err := pol.Match(u, target)
	if err != nil {
		return nil, err
	}
	t, _ := pol.Target(target)
	form := &TargetForm{TargetInfo: targetInfo(policy.TargetView{Target: t, Rule: rule}), Params: []ParamInfo{}}
	prov, err := s.providers.ForTarget(target)
	if err != nil {
		return nil, fmt.Errorf("provider for %s: %w", target, err)
	}
	pv, ok := prov.(ajar.ParamsValidator)
	if !ok {
		return form, nil // it takes no parameters
	}
	missing := ajar.ErrorField(pv.ValidateParams(map[string]string{}))
	for _, p := range wellKnownParams {
		field := "params." + p.name
		err := pv.ValidateParams(map[string]string{p.name: p.sample})
		if err == nil || ajar.ErrorField(err) != field {
			form.Params = append(form.Params, ParamInfo{Name: p.name, Required: missing == field})
		}
	}
	return form, nil
}
