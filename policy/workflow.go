package policy

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
)

// MatchBreakglass returns the rule under which u may use break-glass on
// target: the first rule, in file order, that covers the target and names u in
// breakglass.allowed. u need not be one of the rule's requesters.
//
// It returns ENOTFOUND (field "target") for an unknown target and EFORBIDDEN
// (field "target") when no rule lets u use break-glass on it.
func (p *Policy) MatchBreakglass(u ajar.User, target string) (*Rule, error) {
	if _, ok := p.targets[target]; !ok {
		return nil, &ajar.Error{Code: ajar.ENOTFOUND, Field: "target", Message: fmt.Sprintf("no target named %q", target)}
	}
	for _, r := range p.rules {
		if r.Covers(target) && r.MayBreakglass(u) {
			return r, nil
		}
	}
	return nil, &ajar.Error{Code: ajar.EFORBIDDEN, Field: "target", Message: fmt.Sprintf("no policy lets %s use break-glass on %q", u.ID, target)}
}

// EvaluateBreakglass checks a break-glass request: the rule MatchBreakglass
// picks, its duration limits and ticket pattern, a reason (always required),
// and its deny and require conditions with request.kind "breakglass". The
// Decision has AutoApprove set: break-glass needs no approval. Errors are
// those of MatchBreakglass and Evaluate.
func (p *Policy) EvaluateBreakglass(u ajar.User, in Input) (*Decision, error) {
	r, err := p.MatchBreakglass(u, in.Target)
	if err != nil {
		return nil, err
	}
	d, err := r.checkInput(in, true)
	if err != nil {
		return nil, err
	}
	dec := &Decision{Rule: r, Duration: d, AutoApprove: true, ApprovalTimeout: r.Approval.Timeout}
	if err := r.checkConditions(r.requestVars(u, in, d, KindBreakglass), dec); err != nil {
		return nil, err
	}
	return dec, nil
}

// ExtensionInput is an extension of a granted request, as EvaluateExtension
// sees it.
type ExtensionInput struct {
	Policy string // the rule the request was made under
	Target string
	Reason string
	Ticket string
	Params map[string]string
	// Start is when the window began; Window is its length so far (the first
	// grant and every extension applied), By what is asked for now.
	Start      time.Time
	Window     time.Duration
	By         time.Duration
	Extensions int // extensions applied so far
	Now        time.Time
}

// EvaluateExtension checks an extension against the request's rule: the rule
// must have extend, fewer than max_extensions applied, and the window once
// extended (Decision.Duration) must fit max_total; then its deny and require
// conditions must pass, with request.kind "extension", request.duration,
// request.start and request.end the whole window and now the time of asking. AutoApprove is set when extend.approval is none or the rule's
// auto_approve condition holds for the extended window; otherwise the
// extension needs the rule's approval steps.
//
// It returns ECONFLICT when the rule no longer exists; EFORBIDDEN when the rule
// allows no (more) extensions or no one could approve; EINVALID (field "by")
// for a non-positive extension or one past extend.max_total or
// ajar.MaxWindow (checked without overflow: a huge by is refused); and the
// conditions' errors as Evaluate does.
func (p *Policy) EvaluateExtension(u ajar.User, in ExtensionInput) (*Decision, error) {
	r, ok := p.ruleIdx[in.Policy]
	if !ok {
		return nil, ajar.Errorf(ajar.ECONFLICT, "policy %q no longer exists, so the request cannot be extended", in.Policy)
	}
	e := r.Extend
	switch {
	case e == nil:
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "policy %q allows no extensions (it has no extend section)", r.Name)
	case in.By <= 0:
		return nil, ajar.FieldErrorf("by", "must be positive, not %s", formatDuration(in.By))
	case in.Extensions >= e.MaxExtensions:
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "the request was already extended %d time(s), the most extend.max_extensions of policy %q allows", in.Extensions, r.Name)
	case in.Window <= 0:
		return nil, ajar.Errorf(ajar.ECONFLICT, "the request's window (%s) is empty, so it cannot be extended", formatDuration(in.Window))
	}
	// The sum is checked before it is made: window + by overflows for a huge by.
	d, ok := ajar.AddDurations(in.Window, in.By, min(e.MaxTotal, ajar.MaxWindow))
	if !ok {
		limit := min(e.MaxTotal, ajar.MaxWindow)
		window := "longer than"
		if in.By <= math.MaxInt64-in.Window { // both are positive here
			window = fmt.Sprintf("%s, longer than", formatDuration(in.Window+in.By))
		}
		return nil, ajar.FieldErrorf("by", "extending by %s would make the window %s extend.max_total %s of policy %q (at most %s more)",
			formatDuration(in.By), window, formatDuration(limit), r.Name, formatDuration(max(limit-in.Window, 0)))
	}
	w, err := ajar.NewWindow(in.Start, d)
	if err != nil {
		return nil, ajar.FieldErrorf("by", "%s", ajar.ErrorMessage(err))
	}
	vars := r.vars(u, Input{Target: in.Target, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params}, w, in.Now, KindExtension)
	dec := &Decision{Rule: r, Duration: d, ApprovalTimeout: r.Approval.Timeout}
	if err := r.checkConditions(vars, dec); err != nil {
		return nil, err
	}
	if e.Approval == ExtendApprovalNone {
		dec.AutoApprove, dec.AutoApproveExpr = true, "extend.approval: none"
		return dec, nil
	}
	r.autoApprove(vars, dec)
	if !dec.AutoApprove && len(r.Approval.Steps) == 0 {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "policy %q has no approvers and approves only requests where %s; this extension does not qualify", r.Name, dec.AutoApproveExpr)
	}
	return dec, nil
}

// GrantInput is a request whose grant comes due, as CheckGrant sees it.
type GrantInput struct {
	Policy string // the rule the request was admitted under
	Target string
	Reason string
	Ticket string
	Params map[string]string
	// Window is the access the grant would give; Now the real time.
	Window ajar.Window
	Now    time.Time
}

// CheckGrant evaluates again the deny and require conditions of the rule a
// request was admitted under, when its grant comes due: request.kind
// "access", request.start and request.end the window's, and now the real
// time. A request approved in business hours for a start at night, or one
// approved long after it was made, is checked against the time the access
// begins (see docs/security.md, "Time windows").
//
// It returns ECONFLICT when the rule no longer exists, and the conditions'
// errors as Evaluate does.
func (p *Policy) CheckGrant(u ajar.User, in GrantInput) (*Decision, error) {
	r, ok := p.ruleIdx[in.Policy]
	if !ok {
		return nil, ajar.Errorf(ajar.ECONFLICT, "policy %q no longer exists, so the request cannot be granted", in.Policy)
	}
	dec := &Decision{Rule: r, Duration: in.Window.Length(), ApprovalTimeout: r.Approval.Timeout}
	vars := r.vars(u, Input{Target: in.Target, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params}, in.Window, in.Now, KindAccess)
	if err := r.checkConditions(vars, dec); err != nil {
		return dec, err
	}
	return dec, nil
}

// Eligible returns the static users named by subjects, except the one with id
// except (a requester never approves their own request), in file order.
func (p *Policy) Eligible(subjects []string, except string) []string {
	out := []string{}
	for _, u := range p.users {
		if !ajar.SameUser(u.ID, except) && u.MatchesAny(subjects) {
			out = append(out, u.ID)
		}
	}
	return out
}

// Outcomes of Explain.
const (
	OutcomeAutoApproved  = "auto_approved"  // would be approved (and granted) at once
	OutcomeNeedsApproval = "needs_approval" // would wait for the approval steps
	OutcomeDenied        = "denied"         // a condition refuses it, or no one could approve it
	OutcomeInvalid       = "invalid"        // the input breaks a limit (duration, reason, ticket...)
	OutcomeNoPolicy      = "no_policy"      // unknown target, or no rule lets the user request it
)

// Explanation is what Explain found: which rule applies, every check and
// condition with its value, the outcome and who could approve. It is plain
// data, ready to show or encode as JSON.
type Explanation struct {
	Target  string `json:"target"`
	User    string `json:"user"`
	Outcome string `json:"outcome"`
	Summary string `json:"summary"` // one sentence: the outcome and why
	// Error is the error a real request would get ("" fields when none).
	Error *ExplainError `json:"error,omitempty"`
	// Rules are the rules that list the target, in the order they are tried.
	Rules    []RuleMatch `json:"rules"`
	Policy   string      `json:"policy,omitempty"`   // the rule that applies
	Duration string      `json:"duration,omitempty"` // as requested, or the rule's default
	Limits   *Limits     `json:"limits,omitempty"`
	// Checks are the input checks in order; Conditions the deny, require and
	// auto_approve conditions with their values.
	Checks     []Verdict         `json:"checks"`
	Conditions []ConditionResult `json:"conditions"`
	Steps      []StepExplained   `json:"steps"`
	// Missing are the inputs a real request would still need (a required
	// reason, ticket or parameter not given), by field name. They do not make
	// the outcome invalid: it says what would happen once they are given.
	Missing []string `json:"missing,omitempty"`
	// Breakglass names the rule under which the user may use break-glass on
	// the target ("" when they may not).
	Breakglass string `json:"breakglass,omitempty"`
	// Warnings are the policy's warnings about the rule that applies
	// ("field: problem", see Policy.Warnings), such as a step nobody can
	// complete.
	Warnings []string `json:"warnings,omitempty"`
}

// AddMissing records an input a real request would still need (field, as
// the API names it, and why), as a check that did not pass but does not make
// the explanation invalid: it goes on to say what approval the request needs.
func (ex *Explanation) AddMissing(field string, why error) {
	ex.Missing = append(ex.Missing, field)
	ex.Checks = append(ex.Checks, Verdict{Check: field, OK: false, Message: ajar.ErrorMessage(why)})
	ex.noteMissing()
}

// noteMissing ends the summary with the inputs still missing, once.
func (ex *Explanation) noteMissing() {
	if len(ex.Missing) == 0 || ex.Error != nil || ex.Summary == "" {
		return
	}
	base, _, _ := strings.Cut(ex.Summary, "; a request still needs: ")
	ex.Summary = base + "; a request still needs: " + strings.Join(ex.Missing, ", ")
}

// ExplainError is an error as the API would report it.
type ExplainError struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// RuleMatch is one rule that lists the target.
type RuleMatch struct {
	Name      string `json:"name"`
	Requester bool   `json:"requester"` // the user is one of its requesters
	Chosen    bool   `json:"chosen"`    // the first such rule: the one that applies
}

// Limits are the rule's limits on a request.
type Limits struct {
	DefaultDuration string `json:"default_duration"`
	MinDuration     string `json:"min_duration,omitempty"`
	MaxDuration     string `json:"max_duration"`
	RequireReason   bool   `json:"require_reason"`
	TicketPattern   string `json:"ticket_pattern,omitempty"`
	ApprovalTimeout string `json:"approval_timeout"`
	// MaxExtensions is 0 when the rule allows none.
	MaxExtensions  int    `json:"max_extensions"`
	MaxTotal       string `json:"max_total,omitempty"`
	ExtendApproval string `json:"extend_approval,omitempty"`
}

// Verdict is one input check.
type Verdict struct {
	Check   string `json:"check"` // "duration", "reason", "ticket", ...
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// StepExplained is one approval step and who could approve it.
type StepExplained struct {
	Approvers []string `json:"approvers"`
	Count     int      `json:"count"`
	// Eligible are the configured users the approvers name, without the
	// requester.
	Eligible      []string `json:"eligible"`
	EscalateAfter string   `json:"escalate_after,omitempty"`
	EscalateTo    []string `json:"escalate_to,omitempty"`
}

// Explain evaluates u's request like Evaluate, without stopping at the first
// problem: it records which rule applies and why, each input check, each
// condition with its value or error, who could approve each step and the
// limits. It never fails; the outcome says what Evaluate would do, and Error
// the error it would return.
func (p *Policy) Explain(u ajar.User, in Input) *Explanation {
	ex := &Explanation{Target: in.Target, User: u.ID, Rules: []RuleMatch{}, Checks: []Verdict{}, Conditions: []ConditionResult{}, Steps: []StepExplained{}}
	fail := func(outcome string, err error) {
		if ex.Error != nil {
			return
		}
		ex.Outcome = outcome
		ex.Error = &ExplainError{Code: ajar.ErrorCode(err), Field: ajar.ErrorField(err), Message: ajar.ErrorMessage(err)}
	}
	if br, err := p.MatchBreakglass(u, in.Target); err == nil {
		ex.Breakglass = br.Name
	}
	for _, r := range p.rules {
		if r.Covers(in.Target) {
			ex.Rules = append(ex.Rules, RuleMatch{Name: r.Name, Requester: r.MayRequest(u)})
		}
	}
	r, err := p.Match(u, in.Target)
	if err != nil {
		fail(OutcomeNoPolicy, err)
		ex.Summary = ajar.ErrorMessage(err)
		return ex
	}
	for i := range ex.Rules {
		if ex.Rules[i].Name == r.Name {
			ex.Rules[i].Chosen = true
			break
		}
	}
	ex.Policy = r.Name
	ex.Warnings = p.ruleWarnings(r) // approvable.go
	ex.Limits = r.limits()
	for _, st := range r.Approval.Steps {
		se := StepExplained{Approvers: slices.Clone(st.Approvers), Count: st.Count, Eligible: p.Eligible(st.Approvers, u.ID)}
		if st.EscalateAfter > 0 {
			se.EscalateAfter, se.EscalateTo = formatDuration(st.EscalateAfter), slices.Clone(st.EscalateTo)
		}
		ex.Steps = append(ex.Steps, se)
	}

	d := in.Duration
	if d == 0 {
		d = r.DefaultDuration
	}
	ex.Duration = formatDuration(d)
	verdict := func(name string, err error) {
		v := Verdict{Check: name, OK: err == nil}
		if err != nil {
			v.Message = ajar.ErrorMessage(err)
			fail(OutcomeInvalid, err)
		}
		ex.Checks = append(ex.Checks, v)
	}
	_, derr := r.checkDuration(in.Duration)
	verdict("duration", derr)
	// A reason or ticket not given yet is missing, not invalid: the
	// explanation still says what approval the request would need.
	if err := r.checkReason(in.Reason, false); err != nil && strings.TrimSpace(in.Reason) == "" {
		ex.AddMissing("reason", err)
	} else {
		verdict("reason", err)
	}
	if err := r.checkTicket(in.Ticket); err != nil && in.Ticket == "" {
		ex.AddMissing("ticket", err)
	} else {
		verdict("ticket", err)
	}

	dec := &Decision{Rule: r}
	vars := r.requestVars(u, in, d, KindAccess)
	deny, derr2 := r.evalChecks("deny", r.Deny, vars)
	require, rerr := r.evalChecks("require", r.Require, vars)
	ex.Conditions = append(append(ex.Conditions, deny...), require...)
	if derr2 != nil {
		fail(OutcomeDenied, derr2)
	}
	if rerr != nil {
		fail(OutcomeDenied, rerr)
	}
	r.autoApprove(vars, dec)
	if r.Approval.AutoApprove != nil {
		ex.Conditions = append(ex.Conditions, dec.Conditions[len(dec.Conditions)-1])
	}
	if !dec.AutoApprove && len(r.Approval.Steps) == 0 {
		fail(OutcomeDenied, ajar.Errorf(ajar.EFORBIDDEN, "policy %q has no approvers and approves only requests where %s; this request does not qualify", r.Name, dec.AutoApproveExpr))
	}
	if ex.Error == nil {
		ex.Outcome = OutcomeNeedsApproval
		if dec.AutoApprove {
			ex.Outcome = OutcomeAutoApproved
		}
	}
	ex.Summary = ex.summarize(dec)
	ex.noteMissing()
	return ex
}

// summarize says the outcome in one sentence.
func (ex *Explanation) summarize(dec *Decision) string {
	switch ex.Outcome {
	case OutcomeAutoApproved:
		return fmt.Sprintf("policy %s applies; auto-approved: %s is true", ex.Policy, dec.AutoApproveExpr)
	case OutcomeNeedsApproval:
		why := "it has no auto_approve condition"
		switch {
		case dec.AutoApproveErr != nil:
			why = fmt.Sprintf("auto_approve %s could not be evaluated (%v)", dec.AutoApproveExpr, dec.AutoApproveErr)
		case dec.AutoApproveExpr != "":
			why = fmt.Sprintf("auto_approve %s is false", dec.AutoApproveExpr)
		}
		return fmt.Sprintf("policy %s applies; needs approval in %d step(s): %s", ex.Policy, len(ex.Steps), why)
	}
	if ex.Error != nil {
		return fmt.Sprintf("policy %s applies; refused: %s", ex.Policy, ex.Error.Message)
	}
	return ""
}

func (r *Rule) limits() *Limits {
	l := &Limits{
		DefaultDuration: formatDuration(r.DefaultDuration), MaxDuration: formatDuration(r.MaxDuration),
		RequireReason: r.RequireReason, TicketPattern: r.TicketPattern,
		ApprovalTimeout: formatDuration(r.Approval.Timeout),
	}
	if r.MinDuration > 0 {
		l.MinDuration = formatDuration(r.MinDuration)
	}
	if e := r.Extend; e != nil {
		l.MaxExtensions, l.MaxTotal, l.ExtendApproval = e.MaxExtensions, formatDuration(e.MaxTotal), e.Approval
	}
	return l
}
