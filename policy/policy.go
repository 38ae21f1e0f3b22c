// Package policy reads ajar's policy file and answers the questions the broker
// asks of it: who may request which target, for how long, with what reason and
// ticket, who must approve, and whether a request is approved at once.
//
// Parse and Load validate the whole file and report every problem at once, each
// with its field path ("policies[0].approval.steps[1].count"). A *Policy that they
// return is valid and immutable: it is safe for concurrent use, and a new file
// means a new *Policy.
package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
)

// CheckTarget validates a target's provider config; the provider registry
// supplies it. Problem fields are paths inside the config ("principals[0]"),
// which Parse prefixes with "targets.NAME.config."; a Problem with an empty Field
// is about the provider itself (such as an unknown provider name) and is
// reported under "targets.NAME.provider".
type CheckTarget func(provider string, config json.RawMessage) ajar.Problems

// Target is a named thing that can be granted.
type Target struct {
	Name     string
	Provider string
	// Config is the provider's config from the file, as JSON ("{}" when absent).
	Config json.RawMessage
}

// Rule is one compiled entry of "policies". A Rule belongs to its Policy and must
// not be modified.
type Rule struct {
	Name       string
	Targets    []string
	Requesters []string // user ids or "group:NAME"

	DefaultDuration time.Duration
	MinDuration     time.Duration // zero: any positive duration
	MaxDuration     time.Duration

	RequireReason bool
	// TicketPattern is the pattern as written ("" for none). The whole ticket must
	// match it, and a rule with a pattern requires a ticket.
	TicketPattern string
	ticket        *regexp.Regexp

	// Deny conditions are checked first: any that holds refuses the request.
	// Require conditions must all hold. Both apply to every kind of request
	// (access, break-glass, extension; see request.kind).
	Deny    []Check
	Require []Check

	Approval Approval
	// Extend is nil when requests under this rule cannot be extended.
	Extend *Extend
	// Breakglass is nil when nobody may use break-glass under this rule.
	Breakglass *Breakglass
}

// Approval is who must approve requests under a rule, and how long they have.
type Approval struct {
	Timeout time.Duration
	// Steps are approved in order; each needs Count distinct approvers.
	Steps []Step
	// AutoApprove is nil when the rule has no auto_approve condition.
	AutoApprove *Condition
}

// Step is one approval step: Count distinct people named by Approvers (user ids
// or "group:NAME").
type Step struct {
	Approvers []string
	Count     int
	// EscalateAfter is how long the step may wait before EscalateTo is
	// notified and may decide on it too; zero for no escalation.
	EscalateAfter time.Duration
	EscalateTo    []string
	// RequireMFA: an approval of this step needs a recent second factor.
	RequireMFA bool
}

// Check is a compiled deny or require condition.
type Check struct {
	Cond    *Condition
	Message string // shown when the check refuses a request
	Field   string // the request field it is about, or ""
}

// Extend limits extensions of a granted request.
type Extend struct {
	MaxExtensions int
	MaxTotal      time.Duration // the whole window, extensions included
	// Approval is ExtendApprovalRequired or ExtendApprovalNone.
	Approval string
}

// Breakglass names who may skip approval, with an alert and a review task.
type Breakglass struct {
	Allowed []string
	// RequireMFA: break-glass needs a recent second factor.
	RequireMFA bool
}

// CanApprove reports whether u is one of the approvers of step (an index into
// Approval.Steps); false for a step that does not exist.
//
// It does not check separation of duties: the caller must refuse an approval by
// the request's own requester, and count each approver once per request.
func (r *Rule) CanApprove(step int, u ajar.User) bool {
	if step < 0 || step >= len(r.Approval.Steps) {
		return false
	}
	return u.MatchesAny(r.Approval.Steps[step].Approvers)
}

// CanEscalate reports whether u is named by the escalate_to of step; false for
// a step that does not exist or does not escalate. Whether the step has waited
// long enough is the caller's to decide.
func (r *Rule) CanEscalate(step int, u ajar.User) bool {
	if step < 0 || step >= len(r.Approval.Steps) {
		return false
	}
	return u.MatchesAny(r.Approval.Steps[step].EscalateTo)
}

// Approves reports whether u approves any step of the rule, escalation included.
func (r *Rule) Approves(u ajar.User) bool {
	for i := range r.Approval.Steps {
		if r.CanApprove(i, u) || r.CanEscalate(i, u) {
			return true
		}
	}
	return false
}

// MayBreakglass reports whether u may use break-glass under the rule.
func (r *Rule) MayBreakglass(u ajar.User) bool {
	return r.Breakglass != nil && u.MatchesAny(r.Breakglass.Allowed)
}

// MayRequest reports whether u is one of the rule's requesters.
func (r *Rule) MayRequest(u ajar.User) bool { return u.MatchesAny(r.Requesters) }

// Covers reports whether the rule lists target.
func (r *Rule) Covers(target string) bool { return slices.Contains(r.Targets, target) }

// Policy is a validated, compiled policy file. It is immutable and safe for
// concurrent use; what its methods return is the caller's to keep.
type Policy struct {
	cfg     Config
	users   []ajar.User
	userIdx map[string]int
	admins  []string
	targets map[string]Target
	rules   []*Rule
	ruleIdx map[string]*Rule
	limits  UserLimits
	// identity is the "identity" section, compiled.
	identity Identity
}

// User returns the static user with this id, compared without case; the
// user's ID is the canonical, lower-case form (ajar.CanonicalUserID).
func (p *Policy) User(id string) (ajar.User, bool) {
	i, ok := p.userIdx[ajar.CanonicalUserID(id)]
	if !ok {
		return ajar.User{}, false
	}
	return cloneUser(p.users[i]), true
}

// Users returns the static users in file order.
func (p *Policy) Users() []ajar.User {
	out := make([]ajar.User, len(p.users))
	for i, u := range p.users {
		out[i] = cloneUser(u)
	}
	return out
}

func cloneUser(u ajar.User) ajar.User {
	return ajar.User{ID: u.ID, Groups: slices.Clone(u.Groups)}
}

// IsAdmin reports whether u is named in "admins".
func (p *Policy) IsAdmin(u ajar.User) bool { return u.MatchesAny(p.admins) }

// Target returns the target with this name.
func (p *Policy) Target(name string) (Target, bool) {
	t, ok := p.targets[name]
	t.Config = slices.Clone(t.Config)
	return t, ok
}

// TargetNames returns every target name, sorted.
func (p *Policy) TargetNames() []string { return slices.Sorted(maps.Keys(p.targets)) }

// Rule returns the rule with this name. The broker looks a request's rule up by
// name (Request.Policy) when approvals arrive.
func (p *Policy) Rule(name string) (*Rule, bool) {
	r, ok := p.ruleIdx[name]
	return r, ok
}

// Rules returns every rule in file order, the order in which they are matched.
func (p *Policy) Rules() []*Rule { return slices.Clone(p.rules) }

// Server returns the "server" section, defaults applied.
func (p *Policy) Server() ServerConfig { return p.cfg.Server }

// Storage returns the "storage" section, defaults applied.
func (p *Policy) Storage() StorageConfig { return p.cfg.Storage }

// Scheduler returns the "scheduler" section, defaults applied.
func (p *Policy) Scheduler() SchedulerConfig { return p.cfg.Scheduler }

// Notifications returns the notification sinks, validated: each has a unique
// name, a known type, a URL or the variable to read it from where the type
// needs one, and known event names (none means every event).
func (p *Policy) Notifications() []NotificationConfig {
	out := make([]NotificationConfig, len(p.cfg.Notifications))
	for i, n := range p.cfg.Notifications {
		n.Events = slices.Clone(n.Events)
		out[i] = n
	}
	return out
}

// Match returns the rule that governs u's requests for target: the first rule,
// in file order, that covers the target and names u as a requester. Later rules
// are never consulted, even when the first one refuses the request's duration.
//
// It returns ENOTFOUND (field "target") for an unknown target and EFORBIDDEN
// (field "target") when no rule lets u request it.
func (p *Policy) Match(u ajar.User, target string) (*Rule, error) {
	if _, ok := p.targets[target]; !ok {
		return nil, &ajar.Error{Code: ajar.ENOTFOUND, Field: "target", Message: fmt.Sprintf("no target named %q", target)}
	}
	for _, r := range p.rules {
		if r.Covers(target) && r.MayRequest(u) {
			return r, nil
		}
	}
	return nil, &ajar.Error{Code: ajar.EFORBIDDEN, Field: "target", Message: fmt.Sprintf("no policy lets %s request %q", u.ID, target)}
}

// Input is a request as Evaluate sees it.
type Input struct {
	Target   string
	Duration time.Duration // zero means the rule's default
	Reason   string
	Ticket   string
	Params   map[string]string
	Start    *time.Time // nil means as soon as approved
	Now      time.Time  // the store's clock
}

// Decision is what the policy says about an acceptable request.
type Decision struct {
	Rule     *Rule
	Duration time.Duration // the requested duration, or the rule's default
	// AutoApprove is true when the request needs no approval: the rule's
	// auto_approve condition held (or, for an extension, extend.approval is
	// none).
	AutoApprove bool
	// AutoApproveExpr is the condition's source ("" for none), for explanations.
	AutoApproveExpr string
	// AutoApproveErr is why the condition could not be evaluated; AutoApprove is
	// then false (fail closed) and the request waits for approvers. Worth logging:
	// it means the condition is wrong for some requests.
	AutoApproveErr  error
	ApprovalTimeout time.Duration
	// Conditions are the deny and require conditions that were evaluated, with
	// their values, then auto_approve's if it was; for explanations and the audit
	// log.
	Conditions []ConditionResult
}

// ConditionResult is one condition as evaluated for a request.
type ConditionResult struct {
	Kind    string `json:"kind"`  // "deny", "require" or "auto_approve"
	Index   int    `json:"index"` // in the rule's list of that kind
	Expr    string `json:"expr"`
	Message string `json:"message,omitempty"`
	Value   bool   `json:"value"`
	// Error is why the condition could not be evaluated ("" if it could); a
	// deny or require condition that cannot be evaluated refuses the request.
	Error string `json:"error,omitempty"`
}

// Name is the condition's place in the rule, such as "deny[0]".
func (c ConditionResult) Name() string {
	if c.Kind == "auto_approve" {
		return "approval.auto_approve"
	}
	return fmt.Sprintf("%s[%d]", c.Kind, c.Index)
}

// Evaluate checks u's request against the rule Match picks and decides whether it
// is approved at once. It returns:
//
//   - ENOTFOUND (field "target") for an unknown target;
//   - EFORBIDDEN (field "target") when no rule lets u request the target;
//   - EINVALID (field "duration") for a negative duration or one outside the rule's
//     minimum and maximum;
//   - EINVALID (field "reason") for a blank reason when the rule requires one;
//   - EINVALID (field "ticket") for a ticket that does not match the rule's pattern,
//     or none when the rule has a pattern;
//   - EFORBIDDEN (field: the condition's, if it names one) when a deny
//     condition holds, or a deny or require condition cannot be evaluated;
//   - EINVALID (field: the condition's) when a require condition does not hold;
//   - EFORBIDDEN when the rule has no approval steps and its auto_approve condition
//     does not hold: no one could ever approve the request.
//
// Messages name the rule and the limit or condition broken. The caller checks
// provider parameters and the start time.
func (p *Policy) Evaluate(u ajar.User, in Input) (*Decision, error) {
	r, err := p.Match(u, in.Target)
	if err != nil {
		return nil, err
	}
	d, err := r.checkInput(in, false)
	if err != nil {
		return nil, err
	}
	dec := &Decision{Rule: r, Duration: d, ApprovalTimeout: r.Approval.Timeout}
	vars := r.requestVars(u, in, d, KindAccess)
	if err := r.checkConditions(vars, dec); err != nil {
		return nil, err
	}
	r.autoApprove(vars, dec)
	if !dec.AutoApprove && len(r.Approval.Steps) == 0 {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "policy %q has no approvers and approves only requests where %s; this request does not qualify", r.Name, dec.AutoApproveExpr)
	}
	return dec, nil
}

// checkInput checks the duration (returning it, or the rule's default), the
// reason and the ticket. A break-glass request always needs a reason.
func (r *Rule) checkInput(in Input, breakglass bool) (time.Duration, error) {
	d, err := r.checkDuration(in.Duration)
	if err != nil {
		return 0, err
	}
	if err := r.checkReason(in.Reason, breakglass); err != nil {
		return 0, err
	}
	if err := r.checkTicket(in.Ticket); err != nil {
		return 0, err
	}
	return d, nil
}

func (r *Rule) checkDuration(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return r.DefaultDuration, nil
	case d < 0:
		return 0, ajar.FieldErrorf("duration", "must be positive, not %s", formatDuration(d))
	case d > r.MaxDuration:
		return 0, ajar.FieldErrorf("duration", "%s is longer than the maximum %s of policy %q", formatDuration(d), formatDuration(r.MaxDuration), r.Name)
	case d < r.MinDuration:
		return 0, ajar.FieldErrorf("duration", "%s is shorter than the minimum %s of policy %q", formatDuration(d), formatDuration(r.MinDuration), r.Name)
	}
	return d, nil
}

func (r *Rule) checkReason(reason string, breakglass bool) error {
	if strings.TrimSpace(reason) != "" {
		return nil
	}
	if breakglass {
		return ajar.FieldErrorf("reason", "required for break-glass (policy %q)", r.Name)
	}
	if r.RequireReason {
		return ajar.FieldErrorf("reason", "required by policy %q", r.Name)
	}
	return nil
}

func (r *Rule) checkTicket(ticket string) error {
	if r.ticket == nil {
		return nil
	}
	switch {
	case ticket == "":
		return ajar.FieldErrorf("ticket", "required by policy %q: a ticket matching %s", r.Name, r.TicketPattern)
	case !r.ticket.MatchString(ticket):
		return ajar.FieldErrorf("ticket", "%q does not match %s (policy %q)", ticket, r.TicketPattern, r.Name)
	}
	return nil
}

// requestVars are the condition variables for a new request of kind lasting
// d. The window starts at the requested start (in.Now when none), and `now`
// is that start: conditions are about when the access would exist, not when it
// was asked for (a request made in business hours for a start at night is a
// request for night-time access). The broker checks them again, with the real
// time, when the grant comes due (CheckGrant).
func (r *Rule) requestVars(u ajar.User, in Input, d time.Duration, kind string) Vars {
	start := in.Now
	if in.Start != nil {
		start = *in.Start
	}
	w, err := ajar.NewWindow(start, d)
	if err != nil {
		w = ajar.Window{Start: start, End: start} // d is refused by checkDuration first
	}
	return r.vars(u, in, w, start, kind)
}

// vars are the condition variables for a request of kind over window w,
// evaluated at now. in's Start, Duration and Now are not used.
func (r *Rule) vars(u ajar.User, in Input, w ajar.Window, now time.Time, kind string) Vars {
	return Vars{
		Request: RequestVars{
			Target: in.Target, Duration: w.Length(), Reason: in.Reason, Ticket: in.Ticket,
			Params: in.Params, Start: w.Start, End: w.End, Kind: kind,
		},
		Requester: RequesterVars{ID: u.ID, Groups: u.Groups},
		Now:       now,
	}
}

// evalChecks evaluates the deny (deny true) or require (deny false) checks and
// returns the results and the error for the first one that refuses the request.
func (r *Rule) evalChecks(kind string, checks []Check, v Vars) ([]ConditionResult, error) {
	var out []ConditionResult
	var first error
	for i, c := range checks {
		val, err := c.Cond.Eval(v)
		res := ConditionResult{Kind: kind, Index: i, Expr: c.Cond.String(), Message: c.Message, Value: val}
		if err != nil {
			res.Error = err.Error()
		}
		out = append(out, res)
		if first != nil {
			continue
		}
		msg := c.Message
		if msg == "" {
			msg = "the condition " + c.Cond.String()
		}
		switch {
		case err != nil:
			first = &ajar.Error{Code: ajar.EFORBIDDEN, Field: c.Field, Message: fmt.Sprintf(
				"refused by policy %q: its %s condition %s could not be evaluated (%v), and a condition that cannot be evaluated refuses",
				r.Name, res.Name(), c.Cond.String(), err)}
		case kind == "deny" && val:
			first = &ajar.Error{Code: ajar.EFORBIDDEN, Field: c.Field, Message: fmt.Sprintf(
				"denied by policy %q: %s (%s: %s is true)", r.Name, msg, res.Name(), c.Cond.String())}
		case kind == "require" && !val:
			first = &ajar.Error{Code: ajar.EINVALID, Field: c.Field, Message: fmt.Sprintf(
				"policy %q requires: %s (%s: %s is false)", r.Name, msg, res.Name(), c.Cond.String())}
		}
	}
	return out, first
}

// checkConditions evaluates the deny conditions, then the require conditions,
// records them in dec, and returns the error of the first that refuses.
func (r *Rule) checkConditions(v Vars, dec *Decision) error {
	res, err := r.evalChecks("deny", r.Deny, v)
	dec.Conditions = append(dec.Conditions, res...)
	if err != nil {
		return err
	}
	res, err = r.evalChecks("require", r.Require, v)
	dec.Conditions = append(dec.Conditions, res...)
	return err
}

// autoApprove evaluates the auto_approve condition, if any, into dec.
func (r *Rule) autoApprove(v Vars, dec *Decision) {
	c := r.Approval.AutoApprove
	if c == nil {
		return
	}
	dec.AutoApproveExpr = c.String()
	dec.AutoApprove, dec.AutoApproveErr = c.Eval(v)
	res := ConditionResult{Kind: "auto_approve", Expr: c.String(), Value: dec.AutoApprove}
	if dec.AutoApproveErr != nil {
		res.Error = dec.AutoApproveErr.Error()
	}
	dec.Conditions = append(dec.Conditions, res)
}

// TargetView is a target a user may request and the rule that governs it, with
// its limits, approvers and auto-approve condition.
type TargetView struct {
	Target Target
	Rule   *Rule
}

// TargetsFor lists the targets u may request, sorted by name, each with the rule
// Match would pick.
func (p *Policy) TargetsFor(u ajar.User) []TargetView {
	var out []TargetView
	for _, name := range p.TargetNames() {
		if r, err := p.Match(u, name); err == nil {
			t, _ := p.Target(name)
			out = append(out, TargetView{Target: t, Rule: r})
		}
	}
	return out
}
