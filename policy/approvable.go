package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ajar-dev/ajar"
)

// Approvability: a rule whose approval steps can never be completed makes
// every request under it wait for its deadline and time out, without a word.
// Two ways that happens with the people in the file: a step names a group
// nobody is in (a typo such as group:sres), or a step (or all steps together,
// since a person decides once per request) needs more approvers than there are
// people who may approve, the requester excluded (nobody approves their own
// request; see docs/security.md).

// identityConfigured reports whether users and their groups also come from an
// identity provider (the policy file's identity.oidc), so that the static
// users are not everyone and approvability problems are warnings, not errors.
func identityConfigured(cfg *Config) bool { return cfg.Identity.OIDC != nil }

// Warnings are problems that do not stop the policy from loading but that
// people should see (ajar serve logs them, ajar explain and ajar policy check
// list them): approval steps that some requesters' requests could never
// complete (a requester who is one of too few approvers), and, when users also
// come from an identity provider, the steps that the static users alone could
// never complete (with only static users Parse refuses those). nil when there
// are none.
func (p *Policy) Warnings() ajar.Problems {
	errs, warns := p.unapprovable()
	if identityConfigured(&p.cfg) {
		return append(errs, warns...)
	}
	return warns
}

// unapprovable lists, with field paths, the approval steps that requests could
// never complete with the policy's static users. errs are the steps no request
// by anyone could complete: an approver naming a group without members, a
// count larger than the people who may approve that step (the requester
// excluded), or a total of counts larger than the people who may approve any
// step (a person decides once per request). warns are the rules under which
// only some requesters' requests could never be approved, and the same
// problems for a rule with auto_approve (whose condition still approves some
// requests). Escalation approvers
// count as people who may approve, since they may decide once the step
// escalates.
func (p *Policy) unapprovable() (errs, warns ajar.Problems) {
	add := func(to *ajar.Problems, field, format string, args ...any) {
		*to = append(*to, ajar.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for i, r := range p.rules {
		f := fmt.Sprintf("policies[%d].approval", i)
		ruleErrs := &errs
		if r.Approval.AutoApprove != nil {
			// Some requests are approved by the condition; the steps
			// are still stuck for the others.
			ruleErrs = &warns
		}
		for k, s := range r.Approval.Steps {
			sf := fmt.Sprintf("%s.steps[%d]", f, k)
			for j, a := range s.Approvers {
				if g, ok := strings.CutPrefix(a, "group:"); ok && !p.groupHasMembers(g) {
					add(ruleErrs, fmt.Sprintf("%s.approvers[%d]", sf, j), "no user is in group %s, so nobody can approve as %s", g, a)
				}
			}
			for j, a := range s.EscalateTo {
				if g, ok := strings.CutPrefix(a, "group:"); ok && !p.groupHasMembers(g) {
					add(ruleErrs, fmt.Sprintf("%s.escalate_to[%d]", sf, j), "no user is in group %s", g)
				}
			}
		}
		stuck, counts, total, all := p.stuckRequesters(r)
		if len(stuck) == 0 {
			continue
		}
		to, outcome := &warns, "so requests by "+strings.Join(stuck, ", ")+" could never be approved"
		if all {
			to, outcome = ruleErrs, "so no request under this rule could ever be approved"
			if r.Approval.AutoApprove != nil {
				outcome += " unless auto_approve approves it"
			}
		}
		reported := false
		for k, n := range counts {
			if s := r.Approval.Steps[k]; n < s.Count {
				add(to, fmt.Sprintf("%s.steps[%d].count", f, k), "needs %d approver(s) but only %d person(s) other than the requester may approve this step, %s",
					s.Count, n, outcome)
				reported = true
			}
		}
		if !reported {
			add(to, f+".steps", "need %d distinct approvers in all (each person decides once per request) but only %d person(s) other than the requester may approve any step, %s",
				sumCounts(r), total, outcome)
		}
	}
	return errs, warns
}

// stuckRequesters returns the users who may request under r but whose
// requests r's steps could never complete (at most a few, for the message),
// the approver counts for the first of them (people other than them who may
// approve each step, and any step), and whether that is every requester. When
// nobody may request under r the steps are judged for an outsider: stuck is
// then "anyone" and all is true.
func (p *Policy) stuckRequesters(r *Rule) (stuck []string, counts []int, total int, all bool) {
	var candidates []ajar.User
	for _, u := range p.users {
		if r.MayRequest(u) {
			candidates = append(candidates, u)
		}
	}
	outsider := len(candidates) == 0
	if outsider {
		candidates = []ajar.User{{}}
	}
	n := 0
	for _, req := range candidates {
		c := make([]int, len(r.Approval.Steps))
		anyStep := 0
		for _, v := range p.users {
			if req.ID != "" && ajar.SameUser(v.ID, req.ID) {
				continue // nobody approves their own request
			}
			approves := false
			for k, s := range r.Approval.Steps {
				if v.MatchesAny(s.Approvers) || v.MatchesAny(s.EscalateTo) {
					c[k]++
					approves = true
				}
			}
			if approves {
				anyStep++
			}
		}
		complete := sumCounts(r) <= anyStep
		for k, s := range r.Approval.Steps {
			complete = complete && c[k] >= s.Count
		}
		if complete {
			continue
		}
		if n == 0 {
			counts, total = c, anyStep
		}
		if n++; len(stuck) < 3 {
			stuck = append(stuck, req.ID)
		}
	}
	if n > 3 {
		stuck = append(stuck, fmt.Sprintf("%d others", n-3))
	}
	if outsider && n > 0 {
		stuck = []string{"anyone"}
	}
	return stuck, counts, total, n == len(candidates)
}

// ruleWarnings returns Warnings about r as "field: problem" lines.
func (p *Policy) ruleWarnings(r *Rule) []string {
	i := slices.Index(p.rules, r)
	if i < 0 {
		return nil
	}
	prefix := fmt.Sprintf("policies[%d].", i)
	var out []string
	for _, w := range p.Warnings() {
		if strings.HasPrefix(w.Field, prefix) {
			out = append(out, w.Field+": "+w.Message)
		}
	}
	return out
}

func (p *Policy) groupHasMembers(g string) bool {
	return slices.ContainsFunc(p.users, func(u ajar.User) bool { return u.InGroup(g) })
}

func sumCounts(r *Rule) int {
	n := 0
	for _, s := range r.Approval.Steps {
		n += s.Count
	}
	return n
}
