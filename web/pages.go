package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/readmodel"
)

// maxField bounds a form or query value before it reaches the core.
const maxField = 4000

// handleHome is where people land, after signing in too: the inbox when
// something waits for their decision, else "My access".
func (h *Handler) handleHome(w http.ResponseWriter, r *http.Request) {
	if h.current(r) == nil {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	rq, ok := h.signedIn(w, r)
	if !ok {
		return
	}
	to := "/access"
	if h.awaiting(r.Context(), rq.me.User) > 0 {
		to = "/inbox"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (h *Handler) handleNotFound(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, nil, ajar.Errorf(ajar.ENOTFOUND, "There is no page at %s.", r.URL.Path))
}

// signinPage is the sign-in template's data.
type signinPage struct {
	Next      string
	Error     string
	SignedOut bool
	SSO       string // the "Sign in with SSO" link; "" without single sign-on
	DevTokens string // dev mode: the file with the demo users' tokens; "" otherwise
}

func (h *Handler) handleSignin(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"), "/")
	if ss := h.current(r); ss != nil {
		if _, err := h.ids.Authenticate(r.Context(), ss.secret); err == nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
	}
	h.renderSignin(w, r, http.StatusOK, signinPage{Next: next, SignedOut: r.URL.Query().Has("signed_out")})
}

// renderSignin shows the sign-in form with a fresh double-submit CSRF token.
func (h *Handler) renderSignin(w http.ResponseWriter, r *http.Request, status int, p signinPage) {
	if h.opts.Login != nil {
		p.SSO = ssoStartURL(p.Next)
	}
	p.DevTokens = h.opts.DevTokens
	token := randomToken()
	setCookie(w, r, signinCookie, token, 3600)
	h.render(w, r, status, "signin", &view{Title: "Sign in", CSRF: token, Data: p})
}

func (h *Handler) handleSigninPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, nil, ajar.Errorf(ajar.EINVALID, "the form could not be read"))
		return
	}
	c, err := r.Cookie(signinCookie)
	if !sameOrigin(r) || err != nil || !tokensEqual(r.PostForm.Get(csrfField), c.Value) {
		h.refuse(w, r, "This sign-in form is missing its security token or it has expired. Reload the page and try again.")
		return
	}
	next := localPath(r.PostForm.Get("next"), "/")
	token := strings.TrimSpace(r.PostForm.Get("token"))
	if token == "" {
		h.renderSignin(w, r, http.StatusBadRequest, signinPage{Next: next, Error: "Enter your API token."})
		return
	}
	u, err := h.ids.Authenticate(r.Context(), token)
	if err != nil {
		if ajar.ErrorCode(err) != ajar.EUNAUTH {
			h.fail(w, r, nil, err)
			return
		}
		if !identity.Unknown(err) { // a token that expired or was revoked: audited
			if aerr := h.ids.SignInRefused(r.Context(), "", ajar.ErrorMessage(err), map[string]any{"source": "token", "kind": ajar.SessionWeb}); aerr != nil {
				h.fail(w, r, nil, aerr)
				return
			}
		}
		h.renderSignin(w, r, http.StatusUnauthorized, signinPage{Next: next, Error: "This token was not accepted. Check that you copied all of it."})
		return
	}
	if err := h.startSession(w, r, u); err != nil {
		h.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, signinCookie, "", -1)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) handleSignout(w http.ResponseWriter, rq *req) {
	if err := h.ids.Logout(rq.Context(), rq.me.User); err != nil && ajar.ErrorCode(err) != ajar.ECONFLICT {
		h.fail(w, rq.Request, nil, err)
		return
	}
	setCookie(w, rq.Request, sessionCookie, "", -1)
	http.Redirect(w, rq.Request, "/signin?signed_out=1", http.StatusSeeOther)
}

// handleTargets lists what the user may request, with limits and approvers.
func (h *Handler) handleTargets(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Request access", "request")
	targets, err := h.core.Targets(rq.Context(), rq.me.User)
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	v.Data = targets
	h.render(w, rq.Request, http.StatusOK, "targets", v)
}

// requestForm is the request form's data: what the target asks for, the values
// entered, and the problems with them by input name.
type requestForm struct {
	Target  *readmodel.TargetForm
	Values  map[string]string
	Errors  map[string]string
	Problem string // a problem not about one input
}

// paramInput is the name of the form input for a request parameter.
func paramInput(name string) string { return "param." + name }

// clientIP is the address the request came from, for source_ip. Behind a
// proxy it is the proxy's: the requester can correct it in the form.
func clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

func (h *Handler) handleRequestForm(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Request access", "request")
	tf, err := h.core.TargetForm(rq.Context(), rq.me.User, rq.PathValue("target"))
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	f := &requestForm{Target: tf, Values: map[string]string{}, Errors: map[string]string{}}
	for _, p := range tf.Params {
		if p.Name == "source_ip" {
			f.Values[paramInput(p.Name)] = clientIP(rq.Request)
		}
	}
	v.Title = "Request " + tf.Name
	v.Data = f
	h.render(w, rq.Request, http.StatusOK, "request-form", v)
}

// startLayouts are the start times the form accepts, all read as UTC: what
// <input type="datetime-local"> sends, and RFC 3339.
var startLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

// parseStart reads the optional start time.
func parseStart(s string) (*time.Time, error) {
	if s = strings.TrimSpace(s); s == "" {
		return nil, nil
	}
	for _, layout := range startLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return &t, nil
		}
	}
	return nil, ajar.FieldErrorf("start", "%q is not a date and time; use the picker or write 2026-05-01T14:30 (UTC)", s)
}

// parseParams reads the named parameter inputs and the free "name=value" lines.
func parseParams(form url.Values, tf *readmodel.TargetForm) (map[string]string, error) {
	params := map[string]string{}
	for _, p := range tf.Params {
		if v := strings.TrimSpace(form.Get(paramInput(p.Name))); v != "" {
			params[p.Name] = v
		}
	}
	for i, line := range strings.Split(form.Get("params"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, ajar.FieldErrorf("params", "line %d: write name=value", i+1)
		}
		if _, dup := params[k]; dup {
			return nil, ajar.FieldErrorf("params", "line %d: %s is given twice", i+1, k)
		}
		params[k] = strings.TrimSpace(val)
	}
	if len(params) == 0 {
		return nil, nil
	}
	return params, nil
}

// formField maps a field named in a core error to the form input that shows it;
// "" means the error is about the whole form.
func formField(field string, tf *readmodel.TargetForm) string {
	switch field {
	case "duration", "reason", "ticket", "start", "params":
		return field
	}
	if name, ok := strings.CutPrefix(field, "params."); ok {
		if slices.ContainsFunc(tf.Params, func(p readmodel.ParamInfo) bool { return p.Name == name }) {
			return paramInput(name)
		}
		return "params"
	}
	return ""
}

func (h *Handler) handleCreate(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Request access", "request")
	tf, err := h.core.TargetForm(rq.Context(), rq.me.User, rq.PathValue("target"))
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	form := rq.PostForm
	f := &requestForm{Target: tf, Values: map[string]string{}, Errors: map[string]string{}}
	for k := range form {
		if k != csrfField {
			f.Values[k] = form.Get(k)
		}
	}
	in := ajar.CreateInput{
		Target:   tf.Name,
		Duration: strings.TrimSpace(form.Get("duration")),
		Reason:   strings.TrimSpace(form.Get("reason")),
		Ticket:   strings.TrimSpace(form.Get("ticket")),
	}
	var r *ajar.Request
	if in.Start, err = parseStart(form.Get("start")); err == nil {
		if in.Params, err = parseParams(form, tf); err == nil {
			r, err = h.core.CreateRequest(rq.Context(), rq.me.User, in)
		}
	}
	if err != nil {
		code := ajar.ErrorCode(err)
		if code != ajar.EINVALID && code != ajar.EFORBIDDEN {
			h.fail(w, rq.Request, v, err)
			return
		}
		if in := formField(ajar.ErrorField(err), tf); in != "" {
			f.Errors[in] = ajar.ErrorMessage(err)
		} else {
			f.Problem = ajar.ErrorMessage(err)
		}
		v.Title = "Request " + tf.Name
		v.Data = f
		h.render(w, rq.Request, statusOf(code), "request-form", v)
		return
	}
	h.setFlash(rq, flash{Text: fmt.Sprintf("Request %s for %s is %s.", r.ID, r.Target, r.State)})
	http.Redirect(w, rq.Request, "/requests/"+url.PathEscape(r.ID), http.StatusSeeOther)
}

// inboxPage is the inbox: what waits for a decision, sorted as asked.
type inboxPage struct {
	Items []readmodel.Review
	Sort  sortOrder
}

func (h *Handler) handleInbox(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Approver inbox", "inbox")
	items, err := h.core.Inbox(rq.Context(), rq.me.User)
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	p := inboxPage{Items: items, Sort: parseSort("/inbox", rq.URL.Query().Get("sort"), inboxSortKeys, sortOrder{Key: "waiting"})}
	sortBy(p.Items, p.Sort, inboxSortKey)
	// The count on "Inbox", from the inbox just read rather than another read
	// (what readmodel's Awaiting counts).
	for _, rv := range items {
		if !rv.Own && (rv.CanApprove || rv.CanDeny) {
			v.Waiting++
		}
	}
	v.Counted = h.counter != nil
	v.Data = p
	h.render(w, rq.Request, http.StatusOK, "inbox", v)
}

// accessPage is "My access": the user's requests by where they stand.
type accessPage struct {
	Active  []*ajar.Request // holding access, or about to (approved)
	Waiting []*ajar.Request // pending approval
	History []*ajar.Request // ended, newest first (the newest readmodel.AccessHistory)
	Sort    sortOrder       // of each of the three; by default newest first
}

func (h *Handler) handleAccess(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "My access", "access")
	a, err := h.core.MyAccess(rq.Context(), rq.me.User)
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	p := accessPage{Active: a.Active, Waiting: a.Waiting, History: a.History,
		Sort: parseSort("/access", rq.URL.Query().Get("sort"), accessSortKeys, sortOrder{})}
	if p.Sort.Key != "" { // else as the read model gives them: newest first
		for _, l := range [][]*ajar.Request{p.Active, p.Waiting, p.History} {
			sortBy(l, p.Sort, accessSortKey)
		}
	}
	v.Data = p
	h.render(w, rq.Request, http.StatusOK, "access", v)
}

func (h *Handler) handleRequest(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Request", "")
	rv, err := h.core.Review(rq.Context(), rq.me.User, rq.PathValue("id"))
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	v.Title = "Request " + rv.Request.ID
	v.Data = rv
	h.render(w, rq.Request, http.StatusOK, "request", v)
}

// handleRequestAction runs approve, deny, revoke, cancel or extend, then goes
// back to the page the form was on with a message. A refusal is shown on an
// error page with the core's reason and the status of its code.
func (h *Handler) handleRequestAction(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Request", "")
	id, form := rq.PathValue("id"), rq.PostForm
	back := localPath(form.Get("return"), "/requests/"+url.PathEscape(id))
	for _, k := range []string{"comment", "reason", "by"} {
		if len(form.Get(k)) > maxField {
			h.fail(w, rq.Request, v, ajar.FieldErrorf(k, "longer than %d characters", maxField))
			return
		}
	}
	ctx, u := rq.Context(), rq.me.User
	var (
		r    *ajar.Request
		err  error
		done string
	)
	switch rq.PathValue("action") {
	case "approve":
		r, err = h.core.Approve(ctx, u, id, strings.TrimSpace(form.Get("comment")))
		done = "You approved %s; it is now %s."
	case "deny":
		r, err = h.core.Deny(ctx, u, id, strings.TrimSpace(form.Get("reason")))
		done = "You denied %s; it is now %s."
	case "revoke":
		r, err = h.core.Revoke(ctx, u, id)
		done = "%s is %s."
	case "cancel":
		r, err = h.core.Cancel(ctx, u, id)
		done = "%s is %s."
	case "extend":
		if h.extender == nil {
			err = ajar.Errorf(ajar.ENOTFOUND, "This server cannot extend grants yet.")
			break
		}
		by := strings.TrimSpace(form.Get("by"))
		if d, perr := time.ParseDuration(by); perr != nil || d <= 0 {
			err = ajar.FieldErrorf("by", "%q is not a positive duration (write 30m or 1h)", form.Get("by"))
			break
		}
		var out *ajar.ExtendOutput
		if out, err = h.extender.Extend(ctx, u, id, ajar.ExtendInput{By: by}); err == nil {
			r = out.Request
			done = "%s is extended and %s."
			if out.Extension.State == ajar.ExtensionPending {
				done = "The extension of %s waits for approval; the request stays %s until then."
			}
		}
	default:
		h.handleNotFound(w, rq.Request)
		return
	}
	if err == nil && r == nil {
		err = errors.New("core returned no request")
	}
	if err != nil {
		v.Data = nil
		h.failAction(w, rq, v, err, back)
		return
	}
	h.setFlash(rq, flash{Text: fmt.Sprintf(done, r.ID, r.State)})
	http.Redirect(w, rq.Request, back, http.StatusSeeOther)
}

// failAction shows why an action was refused, with a way back.
func (h *Handler) failAction(w http.ResponseWriter, rq *req, v *view, err error, back string) {
	code := ajar.ErrorCode(err)
	if code == ajar.EINTERNAL {
		h.fail(w, rq.Request, v, err)
		return
	}
	status := statusOf(code)
	v.Title = "Not done"
	v.Data = errorPage{Status: status, Message: ajar.ErrorMessage(err), Field: ajar.ErrorField(err), Back: back}
	h.render(w, rq.Request, status, "error", v)
}

// auditPage is the audit search's data.
type auditPage struct {
	Query   map[string]string // the search as entered
	Errors  map[string]string
	Result  *readmodel.AuditSearch
	Actions []string
	Older   string // the link to the next (older) page of events; "" on the last
	Paged   bool   // this is not the first page: offer the newest again
	Newest  string // the link to the first page
}

// auditPageSize is how many events one page of the audit search shows.
const auditPageSize = 50

// auditActions are offered as suggestions in the action filter.
var auditActions = []string{
	"request.", "request.created", "approval.recorded", "approval.refused", "request.approved",
	"request.denied", "request.cancelled", "request.timed_out", "grant.started", "grant.error",
	"request.activated", "request.revoking", "request.expired", "request.revoked", "request.revoke_failed",
	"ssh_cert.issued", "token.created", "policy.condition_error",
}

// parseWhen reads an optional time filter (UTC).
func parseWhen(field, s string) (time.Time, error) {
	t, err := parseStart(s)
	if err != nil {
		return time.Time{}, ajar.FieldErrorf(field, "%s", ajar.ErrorMessage(err))
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

// parseBefore reads the audit page's "before" (the Seq the page ends above); 0
// for the first page.
func parseBefore(s string) (int64, error) {
	if s = strings.TrimSpace(s); s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, ajar.FieldErrorf("request", "this page link is broken (before=%q): search again", s)
	}
	return n, nil
}

func (h *Handler) handleAudit(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Audit", "audit")
	values := rq.URL.Query()
	p := auditPage{Query: map[string]string{}, Errors: map[string]string{}, Actions: auditActions}
	for _, k := range []string{"request", "user", "target", "action", "from", "to"} {
		p.Query[k] = strings.TrimSpace(values.Get(k))
	}
	q := readmodel.AuditQuery{Request: p.Query["request"], User: p.Query["user"], Target: p.Query["target"], Action: p.Query["action"], Limit: auditPageSize}
	var err error
	if q.Before, err = parseBefore(values.Get("before")); err == nil {
		q.From, err = parseWhen("from", p.Query["from"])
	}
	if err == nil {
		if q.To, err = parseWhen("to", p.Query["to"]); err == nil {
			p.Result, err = h.core.SearchAudit(rq.Context(), rq.me.User, q)
		}
	}
	status := http.StatusOK
	if err != nil {
		code := ajar.ErrorCode(err)
		if code == ajar.EINTERNAL {
			h.fail(w, rq.Request, v, err)
			return
		}
		status = statusOf(code)
		field := ajar.ErrorField(err)
		if _, ok := p.Query[field]; !ok {
			field = "request"
		}
		p.Errors[field] = ajar.ErrorMessage(err)
	}
	search := url.Values{}
	for k, val := range p.Query {
		if val != "" {
			search.Set(k, val)
		}
	}
	p.Newest = "/audit?" + search.Encode()
	p.Paged = q.Before > 0
	if r := p.Result; r != nil && r.More && r.Before > 0 {
		search.Set("before", strconv.FormatInt(r.Before, 10))
		p.Older = "/audit?" + search.Encode()
	}
	v.Data = p
	h.render(w, rq.Request, status, "audit", v)
}

func (h *Handler) handleEvidence(w http.ResponseWriter, rq *req) {
	v := h.newView(rq, "Evidence", "audit")
	ev, err := h.core.Evidence(rq.Context(), rq.me.User, rq.PathValue("id"))
	if err != nil {
		h.fail(w, rq.Request, v, err)
		return
	}
	v.Title = "Evidence for " + ev.Request.ID
	v.Data = ev
	h.render(w, rq.Request, http.StatusOK, "evidence", v)
}

// DurationHint explains the duration input.
func (f *requestForm) DurationHint() string {
	t := f.Target
	hint := fmt.Sprintf("Go syntax: 90s, 30m, 1h30m. Empty means %s; at most %s", shortDuration(t.DefaultDuration), shortDuration(t.MaxDuration))
	if t.MinDuration != "" {
		hint += ", at least " + shortDuration(t.MinDuration)
	}
	return hint + "."
}

// TicketHint explains the ticket input.
func (f *requestForm) TicketHint() string {
	if f.Target.TicketPattern != "" {
		return "Required: a ticket id matching " + f.Target.TicketPattern + "."
	}
	return "Optional: a change or incident id."
}

// shortDuration writes a duration in Go syntax without zero units: "1h0m0s"
// becomes "1h", as people write it in the form.
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = out[:len(out)-2]
	}
	if strings.HasSuffix(out, "h0m") {
		out = out[:len(out)-2]
	}
	return out
}
