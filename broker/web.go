package broker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/policy"
)

// Reads the web pages need beyond the API's: an approver's inbox with the reason a
// person cannot decide on a request, the parameters a target's form asks for, a
// searchable audit log and a request's evidence. The rules stay here so a page
// shows exactly what the core would do.

// Review is a request as one user may decide on it: whether they can approve or
// deny it, or its extension waiting for approval, now and, when they cannot
// approve, why, in a sentence. It is what mayDecide (authz.go), which Approve and
// Deny ask, says.
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
}

// review works out what u may do about r, or about ext, r's extension waiting
// for approval, when it is not nil; breakglass says r was made with
// break-glass. approver reports whether u approves any step of r's policy.
func (s *Service) review(u ajar.User, r *ajar.Request, ext *ajar.Extension, breakglass bool, now time.Time) (rv Review, approver bool) {
	rv = Review{Request: r, Extension: ext, Own: ajar.SameUser(r.Requester, u.ID)}
	d := decision{verb: verbApprove, r: r, ext: ext, breakglass: breakglass}
	rule, ok := s.pol.Rule(r.Policy)
	if ok {
		rv.Steps = len(rule.Approval.Steps)
		rv.Step = stepOf(d.approvals(), rule)
		if rv.Step < rv.Steps {
			st := rule.Approval.Steps[rv.Step]
			rv.Approvers, rv.Count = slices.Clone(st.Approvers), st.Count
			for _, a := range d.approvals() {
				if a.Step == rv.Step && a.Decision == ajar.DecisionApprove {
					rv.Approved++
				}
			}
		}
		for i := range rule.Approval.Steps {
			approver = approver || rule.CanApprove(i, u)
		}
	}
	_, _, f := s.mayDecide(u, d, now)
	rv.CanApprove = f == nil
	d.verb = verbDeny
	_, _, fd := s.mayDecide(u, d, now)
	rv.CanDeny = fd == nil
	if f != nil {
		rv.Blocked = blockedSentence(f, d, rule, rv.Step, u)
	}
	return rv, approver || rv.CanApprove
}

// blockedSentence says for a page why mayDecide refused d, in a sentence.
func blockedSentence(f *refusal, d decision, rule *policy.Rule, step int, u ajar.User) string {
	r := d.r
	switch f.reason {
	case refusedNotPending:
		return fmt.Sprintf("It is %s, not pending: there is nothing left to decide.", r.State)
	case refusedSelf:
		if d.ext != nil {
			return "You asked for this extension, and nobody approves their own request (separation of duties)."
		}
		return "You made this request, and nobody approves their own request (separation of duties). You can cancel it instead."
	case refusedPolicyMissing:
		return fmt.Sprintf("Its policy %q no longer exists, so nobody can approve it.", r.Policy)
	case refusedAlready:
		return "You have already approved it; it is waiting for other approvers."
	case refusedDeadline:
		if d.ext != nil {
			return "The access ends before anyone can decide on this extension."
		}
		return fmt.Sprintf("Its approval deadline passed at %s: it times out, and nobody can decide on it now.", r.ApprovalDeadline.UTC().Format("2006-01-02 15:04:05 UTC"))
	case refusedNotApprover:
		if step >= len(rule.Approval.Steps) {
			return fmt.Sprintf("Policy %s has no approval step waiting for approvals.", rule.Name)
		}
		st := rule.Approval.Steps[step]
		msg := fmt.Sprintf("Step %d of policy %s needs approval from %s, and you are not one of them.",
			step+1, rule.Name, strings.Join(st.Approvers, ", "))
		if rule.CanEscalate(step, u) {
			msg += fmt.Sprintf(" You may decide too once it has waited %s (escalate_after).", fmtDuration(st.EscalateAfter))
		}
		return msg
	}
	msg := ajar.ErrorMessage(f.err)
	if msg == "" {
		return "You cannot decide on it now."
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

// Inbox lists the pending requests u can decide on (u approves some step of
// their policy) and u's own pending requests, longest waiting first, each with
// what u may do about it. It reads every pending request, however many there
// are (the open-request limit bounds them), so none is left out.
func (s *Service) Inbox(ctx context.Context, u ajar.User) ([]Review, error) {
	var rs []*ajar.Request
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		return eachRequest(ctx, tx, ajar.RequestFilter{States: []ajar.State{ajar.StatePending}}, func(r *ajar.Request) {
			rs = append(rs, r)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	out := []Review{}
	now := s.now()
	for _, r := range rs {
		if rv, approver := s.review(u, r, nil, false, now); approver || rv.Own {
			out = append(out, rv)
		}
	}
	slices.SortStableFunc(out, func(a, b Review) int { return a.Request.CreatedAt.Compare(b.Request.CreatedAt) })
	return out, nil
}

// Review returns a request u may see with what u may do about it; ENOTFOUND
// otherwise.
func (s *Service) Review(ctx context.Context, u ajar.User, id string) (*Review, error) {
	r, err := s.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	var ext *ajar.Extension
	bg := false
	if r.State == ajar.StateActive {
		err := s.store.View(ctx, func(tx ajar.ReadTx) error {
			exts, err := tx.ListExtensions(ctx, r.ID)
			if err != nil {
				return err
			}
			for i := len(exts) - 1; i >= 0 && ext == nil; i-- {
				if exts[i].State == ajar.ExtensionPending {
					ext = &exts[i]
				}
			}
			bg, err = requestIsBreakglass(ctx, tx, r.ID)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("review %s: %w", id, err)
		}
	}
	rv, _ := s.review(u, r, ext, bg, s.now())
	return &rv, nil
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
func (s *Service) TargetForm(ctx context.Context, u ajar.User, target string) (*TargetForm, error) {
	rule, err := s.pol.Match(u, target)
	if err != nil {
		return nil, err
	}
	t, _ := s.pol.Target(target)
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

// AuditQuery selects events in SearchAudit. Zero fields match anything.
type AuditQuery struct {
	Request string    // the event's subject
	User    string    // the event's actor, or the requester of the request it is about
	Target  string    // the target of the request it is about
	Action  string    // exact ("request.approved"), or a prefix ending in "." ("request.")
	From    time.Time // events at or after
	To      time.Time // events before
	Limit   int       // the newest Limit matches; 0 means DefaultAuditSearchLimit
}

// Audit search limits.
const (
	DefaultAuditSearchLimit = 200
	MaxAuditSearchLimit     = 1000
	maxQueryField           = 200
)

// AuditRecord is an audit event with the request it is about, when it is one.
type AuditRecord struct {
	ajar.AuditEvent
	Target    string `json:"target,omitempty"`
	Requester string `json:"requester,omitempty"`
}

// AuditSearch is the result of SearchAudit: the newest matches first.
type AuditSearch struct {
	Records []AuditRecord `json:"records"`
	// More is true when more events matched than the limit.
	More bool `json:"more"`
	// All is true when the user may read the whole log (an admin); otherwise the
	// search covered only the requests the user can see.
	All bool `json:"all"`
}

func (q AuditQuery) validate() (AuditQuery, error) {
	for _, f := range []struct{ name, v string }{{"request", q.Request}, {"user", q.User}, {"target", q.Target}, {"action", q.Action}} {
		if len(f.v) > maxQueryField {
			return q, ajar.FieldErrorf(f.name, "longer than %d characters", maxQueryField)
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, ajar.FieldErrorf("to", "must be after from")
	}
	switch {
	case q.Limit < 0:
		return q, ajar.FieldErrorf("limit", "must not be negative")
	case q.Limit == 0:
		q.Limit = DefaultAuditSearchLimit
	case q.Limit > MaxAuditSearchLimit:
		return q, ajar.FieldErrorf("limit", "must be at most %d", MaxAuditSearchLimit)
	}
	return q, nil
}

// match reports whether an event about request r (nil when it is about no
// request) is selected by q.
func (q AuditQuery) match(e *ajar.AuditEvent, r *ajar.Request) bool {
	switch {
	case q.Request != "" && e.Subject != q.Request,
		q.Action != "" && e.Action != q.Action && !(strings.HasSuffix(q.Action, ".") && strings.HasPrefix(e.Action, q.Action)),
		!q.From.IsZero() && e.Time.Before(q.From),
		!q.To.IsZero() && !e.Time.Before(q.To),
		q.Target != "" && (r == nil || r.Target != q.Target),
		q.User != "" && e.Actor != q.User && (r == nil || r.Requester != q.User):
		return false
	}
	return true
}

// newest keeps the last n records added.
type newest struct {
	n    int
	recs []AuditRecord
	more bool
}

func (k *newest) add(rec AuditRecord) {
	if len(k.recs) == k.n {
		k.recs = k.recs[1:]
		k.more = true
	}
	k.recs = append(k.recs, rec)
}

// SearchAudit finds audit events, newest first. Admins search the whole log;
// anyone else searches the events of the requests they can see (as GetRequest
// decides), which is what Audit lets them read one request at a time.
//
// Without a store index for these fields an admin's search reads the whole log,
// a page at a time; the page size bounds memory, not time.
func (s *Service) SearchAudit(ctx context.Context, u ajar.User, q AuditQuery) (*AuditSearch, error) {
	q, err := q.validate()
	if err != nil {
		return nil, err
	}
	all := s.pol.IsAdmin(u)
	requests := map[string]*ajar.Request{} // subject -> request (nil: not a request)
	lookup := func(tx ajar.ReadTx, subject string) (*ajar.Request, error) {
		if r, ok := requests[subject]; ok {
			return r, nil
		}
		r, err := tx.GetRequest(ctx, subject)
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			r, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		requests[subject] = r
		return r, nil
	}
	// scan adds the matches among the events selected by f to keep, page by page.
	scan := func(f ajar.AuditFilter, keep *newest) error {
		f.Limit = MaxAuditSearchLimit
		for {
			var page []ajar.AuditEvent
			err := s.store.View(ctx, func(tx ajar.ReadTx) error {
				var err error
				if page, err = tx.ListAudit(ctx, f); err != nil {
					return err
				}
				for i := range page {
					e := &page[i]
					r, err := lookup(tx, e.Subject)
					if err != nil {
						return err
					}
					if q.match(e, r) {
						rec := AuditRecord{AuditEvent: *e}
						if r != nil {
							rec.Target, rec.Requester = r.Target, r.Requester
						}
						keep.add(rec)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(page) < f.Limit {
				return nil
			}
			f.AfterSeq = page[len(page)-1].Seq
		}
	}

	keep := &newest{n: q.Limit}
	switch {
	case q.Request != "":
		if !all {
			if _, err := s.GetRequest(ctx, u, q.Request); err != nil {
				return nil, err
			}
		}
		err = scan(ajar.AuditFilter{Subject: q.Request}, keep)
	case all:
		err = scan(ajar.AuditFilter{}, keep)
	default:
		rs, err := s.allRequests(ctx, u, ListInput{})
		if err != nil {
			return nil, err
		}
		// Events of different requests interleave: collect each request's newest
		// matches, then keep the newest of them all.
		var recs []AuditRecord
		for _, r := range rs {
			if q.Target != "" && r.Target != q.Target {
				continue
			}
			requests[r.ID] = r
			one := &newest{n: q.Limit}
			if err := scan(ajar.AuditFilter{Subject: r.ID}, one); err != nil {
				return nil, fmt.Errorf("search audit log: %w", err)
			}
			recs = append(recs, one.recs...)
			keep.more = keep.more || one.more
		}
		slices.SortFunc(recs, func(a, b AuditRecord) int { return cmp.Compare(a.Seq, b.Seq) })
		for _, rec := range recs {
			keep.add(rec)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("search audit log: %w", err)
	}
	slices.Reverse(keep.recs)
	if keep.recs == nil {
		keep.recs = []AuditRecord{}
	}
	return &AuditSearch{Records: keep.recs, More: keep.more, All: all}, nil
}

// ChainStatus is the outcome of checking the audit log's hash chain.
type ChainStatus struct {
	// Whole is true when the whole log was verified (audit.Verify: every event's
	// hash, and each one linking to the one before, from the first); false when
	// only the request's own events were checked against their hashes, which
	// shows an edited event but not a deleted or reordered one.
	Whole   bool   `json:"whole"`
	OK      bool   `json:"ok"`
	Events  int64  `json:"events"`            // events checked
	Head    []byte `json:"head,omitempty"`    // the log's head hash (Whole only)
	Problem string `json:"problem,omitempty"` // the first problem, when not OK
}

// Evidence is what an auditor needs about one request: the request with its
// approvals and grant, every audit event about it, the SSH certificates issued
// for it, and the state of the audit chain.
type Evidence struct {
	Request *ajar.Request     `json:"request"`
	Events  []ajar.AuditEvent `json:"events"`
	Certs   []ajar.SSHCert    `json:"ssh_certs"`
	Chain   ChainStatus       `json:"chain"`
}

// Evidence gathers the evidence for a request u may see (ENOTFOUND otherwise).
// For an admin the whole audit chain is verified; for anyone else only this
// request's events, since verifying the chain means reading every event.
func (s *Service) Evidence(ctx context.Context, u ajar.User, id string) (*Evidence, error) {
	r, err := s.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{Request: r, Events: []ajar.AuditEvent{}}
	err = s.store.View(ctx, func(tx ajar.ReadTx) error {
		f := ajar.AuditFilter{Subject: id, Limit: MaxAuditSearchLimit}
		for {
			page, err := tx.ListAudit(ctx, f)
			if err != nil {
				return err
			}
			ev.Events = append(ev.Events, page...)
			if len(page) < f.Limit {
				break
			}
			f.AfterSeq = page[len(page)-1].Seq
		}
		ev.Certs, err = tx.ListSSHCerts(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("evidence for %s: %w", id, err)
	}
	if ev.Certs == nil {
		ev.Certs = []ajar.SSHCert{}
	}

	ev.Chain = ChainStatus{OK: true}
	if s.pol.IsAdmin(u) {
		res, err := audit.Verify(ctx, audit.StorePages(s.store, 0))
		var bad *audit.BadEventError
		var trunc *audit.TruncatedError
		var rewritten *audit.RewrittenError
		switch {
		case errors.As(err, &bad), errors.As(err, &trunc), errors.As(err, &rewritten):
			ev.Chain = ChainStatus{Whole: true, Problem: err.Error()}
		case err != nil:
			return nil, fmt.Errorf("evidence for %s: %w", id, err)
		default:
			ev.Chain = ChainStatus{Whole: true, OK: true, Events: res.Events, Head: res.Head}
		}
		return ev, nil
	}
	for i := range ev.Events {
		e := &ev.Events[i]
		if !bytes.Equal(e.Hash, e.ComputeHash()) {
			ev.Chain.OK = false
			ev.Chain.Problem = fmt.Sprintf("event %d: hash mismatch (edited?)", e.Seq)
			break
		}
		ev.Chain.Events++
	}
	return ev, nil
}
