package broker

import (
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// MFA step-up (docs/security.md, docs/sso.md). A policy asks for a second factor
// with approval.steps[].require_mfa (for approving that step) and
// breakglass.require_mfa (for break-glass). The second factor is made in the
// web page, a security key or an SSO re-authentication whose amr names one, and
// recorded on the session; the identity layer gives it to the core as
// ajar.User.MFAAt. A CLI or API caller, whose session never made one, is refused
// with the page's URL.

// MFAFresh is how long a second factor counts.
const MFAFresh = 5 * time.Minute

// RefusedMFA: the step or break-glass needs a recent second factor (EFORBIDDEN).
const RefusedMFA = "mfa-required"

// freshMFA reports whether u proved a second factor within MFAFresh before now.
// A time in the future (a skewed replica) counts only up to a minute ahead.
func freshMFA(u ajar.User, now time.Time) bool {
	return !u.MFAAt.IsZero() && !u.MFAAt.After(now.Add(time.Minute)) && now.Sub(u.MFAAt) <= MFAFresh
}

// stepNeedsMFA reports whether approving step of rule needs a second factor.
func stepNeedsMFA(rule *policy.Rule, step int) bool {
	return step >= 0 && step < len(rule.Approval.Steps) && rule.Approval.Steps[step].RequireMFA
}

// mfaRefusal is the refusal of an approval that needs a second factor u has
// not made recently; nil when none is needed or u has one.
//
// Only a web session's second factor counts for approvals: the approver sees
// the request's page and confirms there (a CLI or API approval of such a step
// is refused with that page's URL).
func (s *Service) mfaRefusal(u ajar.User, d decision, rule *policy.Rule, step int, now time.Time) *refusal {
	if d.verb != VerbApprove || !stepNeedsMFA(rule, step) || (u.SessionKind == ajar.SessionWeb && freshMFA(u, now)) {
		return nil
	}
	return refuse(RefusedMFA, ajar.EFORBIDDEN,
		"step %d of policy %s requires a second factor made in the last 5 minutes; approve %s in the web page with a security key or a new single sign-on: %s",
		step+1, rule.Name, d.what(), s.pageURL("/requests/"+d.r.ID))
}

// checkBreakglassMFA refuses break-glass under a rule that requires a recent
// second factor u has not made.
func (s *Service) checkBreakglassMFA(u ajar.User, rule *policy.Rule, now time.Time) error {
	if rule.Breakglass == nil || !rule.Breakglass.RequireMFA || freshMFA(u, now) {
		return nil
	}
	return ajar.Errorf(ajar.EFORBIDDEN,
		"break-glass under policy %s requires a second factor made in the last 5 minutes: run ajar login and confirm with a second factor at your identity provider, then use break-glass within 5 minutes",
		rule.Name)
}

// pageURL is the web page at path, with server.public_url when the policy has one.
func (s *Service) pageURL(path string) string {
	return strings.TrimRight(s.pol.Server().PublicURL, "/") + path
}
