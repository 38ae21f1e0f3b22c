package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
)

// Load reads and parses the policy file at path; see Parse.
func Load(path string, check CheckTarget, opts ...Option) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	return Parse(data, check, opts...)
}

// An Option changes how Parse and Load read a policy.
type Option func(*options)

type options struct {
	lookupEnv func(string) (string, bool)
}

// WithEnv makes Parse read environment variables (the OIDC client secret)
// through lookup instead of os.LookupEnv.
func WithEnv(lookup func(name string) (string, bool)) Option {
	return func(o *options) { o.lookupEnv = lookup }
}

// Parse reads a policy file, validates all of it and compiles its conditions.
// When anything is wrong it returns ajar.Problems listing every problem found,
// each with its field path; an approval step that no request could complete
// with the file's users is one (see Policy.Warnings for when users also come
// from an identity provider). check validates each target's provider config; a nil
// check accepts any provider and config (for tools that never grant anything).
//
// Unknown fields are errors, so a misspelt setting never silently means its
// default. Problems come in two rounds: first those that stop the file being
// read as written (YAML syntax, unknown fields, keys given twice, a list where a
// mapping belongs, a duration like "5 minutes"), all at once; only when there are
// none, every validation problem. Validating a half-read file would report
// things as missing that are only misspelt.
func Parse(data []byte, check CheckTarget, opts ...Option) (*Policy, error) {
	o := options{lookupEnv: os.LookupEnv}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, structural := decode(data)
	if len(structural) > 0 {
		return nil, structural
	}
	cfg.applyDefaults()
	p, probs := compile(cfg, check, o)
	if len(probs) > 0 {
		return nil, probs
	}
	if !identityConfigured(cfg) {
		// Every user is in the file: a step nobody can complete is an error
		// (approvable.go); with an identity provider, p.Warnings lists it.
		if errs, _ := p.unapprovable(); len(errs) > 0 {
			return nil, errs
		}
	}
	return p, nil
}

// validName matches target and policy names, which appear on command lines
// and in URLs.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

const nameRule = "must be letters, digits, '.', '_' or '-', starting with a letter or digit"

// compiler accumulates problems while it builds a Policy.
type compiler struct {
	probs ajar.Problems
	p     *Policy
	src   []string // the file's lines, for condition positions
	env   func(string) (string, bool)
}

func (c *compiler) add(field, format string, args ...any) {
	c.probs = append(c.probs, ajar.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// compile validates cfg (defaults applied) and builds the Policy. The Policy is
// only meaningful when there are no problems.
func compile(cfg *Config, check CheckTarget, o options) (*Policy, ajar.Problems) {
	c := &compiler{src: cfg.src, env: o.lookupEnv, p: &Policy{
		cfg:     *cfg,
		userIdx: map[string]int{},
		targets: map[string]Target{},
		ruleIdx: map[string]*Rule{},
	}}
	c.server(cfg)
	c.reconcile(cfg.Reconcile)
	c.users(cfg.Users)
	c.subjects("admins", cfg.Admins)
	c.p.admins = slices.Clone(cfg.Admins)
	c.targets(cfg.Targets, check)
	c.rules(cfg.Policies)
	c.notifications(cfg.Notifications)
	c.limits(cfg.Limits)
	c.identity(cfg)
	return c.p, c.probs
}

func (c *compiler) server(cfg *Config) {
	if _, _, err := net.SplitHostPort(cfg.Server.Listen); err != nil {
		c.add("server.listen", "must be host:port, like %s: %v", DefaultListen, err)
	}
	switch cfg.Storage.Driver {
	case "sqlite":
	case "postgres":
		if cfg.Storage.DSN == "" {
			c.add("storage.dsn", "required for postgres")
		}
	default:
		c.add("storage.driver", "must be sqlite or postgres, not %q", cfg.Storage.Driver)
	}
	s := cfg.Scheduler
	c.positive("scheduler.poll_interval", time.Duration(s.PollInterval))
	c.positive("scheduler.slow_retry", time.Duration(s.SlowRetry))
	if s.MaxGrantAttempts < 1 {
		c.add("scheduler.max_grant_attempts", "must be at least 1")
	}
	if s.MaxRevokeAttempts < 1 {
		c.add("scheduler.max_revoke_attempts", "must be at least 1")
	}
	c.positive("scheduler.expiry_reminder", time.Duration(s.ExpiryReminder))
	c.positive("scheduler.notify_retry", time.Duration(s.NotifyRetry))
	c.positive("scheduler.notify_max_retry", time.Duration(s.NotifyMaxRetry))
	c.positive("scheduler.notify_give_up", time.Duration(s.NotifyGiveUp))
	if s.NotifyMaxRetry > 0 && s.NotifyRetry > s.NotifyMaxRetry {
		c.add("scheduler.notify_retry", "%s is longer than notify_max_retry %s", s.NotifyRetry, s.NotifyMaxRetry)
	}
	if u := cfg.Server.PublicURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.RawQuery != "" || pu.Fragment != "" {
			c.add("server.public_url", "must be an http:// or https:// URL such as https://ajar.example.com, not %q", u)
		}
	}
}

func (c *compiler) positive(field string, d time.Duration) {
	if d <= 0 {
		c.add(field, "must be positive, not %s", formatDuration(d))
	}
}

func (c *compiler) users(users []UserConfig) {
	seen := map[string]int{} // id to index in the file
	for i, u := range users {
		f := fmt.Sprintf("users[%d]", i)
		id := ajar.CanonicalUserID(u.ID) // ids are stored and compared in lower case
		switch j, dup := seen[id]; {
		case u.ID == "":
			c.add(f+".id", "required")
		case strings.ContainsFunc(u.ID, isSpace):
			c.add(f+".id", "must not contain spaces: %q", u.ID)
		case strings.HasPrefix(u.ID, "group:"):
			c.add(f+".id", "must not start with \"group:\", which names a group: %q", u.ID)
		case dup && users[j].ID == u.ID:
			c.add(f+".id", "%q is already users[%d]", u.ID, j)
		case dup:
			c.add(f+".id", "%q is users[%d] (%q): user ids are compared without case", u.ID, j, users[j].ID)
		default:
			seen[id] = i
			c.p.userIdx[id] = len(c.p.users)
			c.p.users = append(c.p.users, ajar.User{ID: id, Groups: slices.Clone(u.Groups)})
		}
		for j, g := range u.Groups {
			if g == "" || strings.ContainsFunc(g, isSpace) {
				c.add(fmt.Sprintf("%s.groups[%d]", f, j), "must be a group name without spaces, not %q", g)
			}
		}
	}
}

func isSpace(r rune) bool { return strings.ContainsRune(" \t\r\n\v\f", r) }

// subjects checks a list of user ids and "group:NAME" entries. A group is not
// checked against the users' groups: members may come from elsewhere later (OIDC).
// A user id must be a static user, because a typo there would silently match
// nobody.
func (c *compiler) subjects(field string, subs []string) {
	for j, s := range subs {
		f := fmt.Sprintf("%s[%d]", field, j)
		if g, ok := strings.CutPrefix(s, "group:"); ok {
			if g == "" || strings.ContainsFunc(g, isSpace) {
				c.add(f, "must be group:NAME with a group name without spaces, not %q", s)
			}
			continue
		}
		if s == "" {
			c.add(f, "must be a user id or group:NAME, not empty")
			continue
		}
		if _, ok := c.p.userIdx[ajar.CanonicalUserID(s)]; !ok {
			c.add(f, "no user %q (write group:NAME to name a group)", s)
		}
	}
}

func (c *compiler) targets(targets map[string]TargetConfig, check CheckTarget) {
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		t, f := targets[name], "targets."+name
		if !validName.MatchString(name) {
			c.add(f, "the target name %s, not %q", nameRule, name)
		}
		raw := json.RawMessage("{}")
		var err error
		if t.Config != nil {
			var v any
			if v, err = jsonable(t.Config); err == nil {
				raw, err = json.Marshal(v)
			}
			if err != nil {
				c.add(f+".config", "cannot be turned into JSON for the provider: %v", err)
			}
		}
		c.p.targets[name] = Target{Name: name, Provider: t.Provider, Config: raw}
		if t.Provider == "" {
			c.add(f+".provider", "required")
			continue
		}
		if check == nil || err != nil {
			continue
		}
		for _, pr := range check(t.Provider, raw) {
			if pr.Field == "" {
				c.add(f+".provider", "%s", pr.Message)
			} else {
				c.add(f+".config."+pr.Field, "%s", pr.Message)
			}
		}
	}
}

func (c *compiler) rules(rules []RuleConfig) {
	if len(rules) == 0 {
		c.add("policies", "at least one policy is required: without one nobody can request anything")
	}
	for i, rc := range rules {
		f := fmt.Sprintf("policies[%d]", i)
		r := &Rule{
			Name:            rc.Name,
			Targets:         slices.Clone(rc.Targets),
			Requesters:      slices.Clone(rc.Requesters),
			DefaultDuration: time.Duration(rc.DefaultDuration),
			MinDuration:     time.Duration(rc.MinDuration),
			MaxDuration:     time.Duration(rc.MaxDuration),
			RequireReason:   rc.RequireReason,
			TicketPattern:   rc.TicketPattern,
			Approval:        Approval{Timeout: time.Duration(rc.Approval.Timeout)},
		}
		switch prev, dup := c.p.ruleIdx[rc.Name]; {
		case rc.Name == "":
			c.add(f+".name", "required")
		case !validName.MatchString(rc.Name):
			c.add(f+".name", "%s, not %q", nameRule, rc.Name)
		case dup:
			c.add(f+".name", "%q is already policies[%d]", rc.Name, slices.Index(c.p.rules, prev))
		default:
			c.p.ruleIdx[rc.Name] = r
		}
		c.p.rules = append(c.p.rules, r)

		if len(rc.Targets) == 0 {
			c.add(f+".targets", "must name at least one target")
		}
		for j, t := range rc.Targets {
			if _, ok := c.p.targets[t]; !ok {
				c.add(fmt.Sprintf("%s.targets[%d]", f, j), "no target named %q", t)
			}
		}
		if len(rc.Requesters) == 0 {
			c.add(f+".requesters", "must name at least one requester (a user id or group:NAME)")
		}
		c.subjects(f+".requesters", rc.Requesters)
		c.durations(f, r)
		if rc.TicketPattern != "" {
			if _, err := regexp.Compile(rc.TicketPattern); err != nil {
				c.add(f+".ticket_pattern", "not a valid regular expression: %v", err)
			} else {
				// Anchored so that a pattern written without ^ and $ cannot be
				// satisfied by a ticket that merely contains a match.
				r.ticket = regexp.MustCompile(`^(?:` + rc.TicketPattern + `)$`)
			}
		}
		r.Deny = c.checks(f+".deny", rc.Deny)
		r.Require = c.checks(f+".require", rc.Require)
		c.approval(f+".approval", rc.Approval, r)
		if e := rc.Extend; e != nil {
			r.Extend = &Extend{MaxExtensions: e.MaxExtensions, MaxTotal: time.Duration(e.MaxTotal), Approval: e.Approval}
			if e.Approval != ExtendApprovalRequired && e.Approval != ExtendApprovalNone {
				c.add(f+".extend.approval", "must be %s or %s, not %q", ExtendApprovalRequired, ExtendApprovalNone, e.Approval)
			}
			if e.MaxExtensions < 1 {
				c.add(f+".extend.max_extensions", "must be at least 1 (leave out extend to allow no extensions)")
			}
			switch {
			case e.MaxTotal <= 0:
				c.add(f+".extend.max_total", "must be positive, not %s", e.MaxTotal)
			case time.Duration(e.MaxTotal) > ajar.MaxWindow:
				c.add(f+".extend.max_total", "%s is longer than the hard limit %s on any access window", e.MaxTotal, formatDuration(ajar.MaxWindow))
			case r.MaxDuration > 0 && time.Duration(e.MaxTotal) < r.MaxDuration:
				c.add(f+".extend.max_total", "%s is shorter than max_duration %s, so no extension could ever fit", e.MaxTotal, formatDuration(r.MaxDuration))
			}
		}
		if b := rc.Breakglass; b != nil {
			r.Breakglass = &Breakglass{Allowed: slices.Clone(b.Allowed), RequireMFA: b.RequireMFA}
			if len(b.Allowed) == 0 {
				c.add(f+".breakglass.allowed", "must name at least one user or group:NAME (leave out breakglass to allow nobody)")
			}
			c.subjects(f+".breakglass.allowed", b.Allowed)
		}
	}
}

// durations checks a rule's duration bounds: 0 < min <= default <= max.
func (c *compiler) durations(f string, r *Rule) {
	def, lo, hi := r.DefaultDuration, r.MinDuration, r.MaxDuration
	if hi == 0 {
		c.add(f+".max_duration", "required: the longest access this policy grants")
	} else {
		c.positive(f+".max_duration", hi)
	}
	if hi > ajar.MaxWindow {
		c.add(f+".max_duration", "%s is longer than the hard limit %s on any access window", formatDuration(hi), formatDuration(ajar.MaxWindow))
	}
	if def == 0 {
		c.add(f+".default_duration", "required: how long access lasts when a request names no duration")
	} else {
		c.positive(f+".default_duration", def)
	}
	if lo < 0 {
		c.add(f+".min_duration", "must not be negative, not %s", formatDuration(lo))
	}
	if def > 0 && hi > 0 && def > hi {
		c.add(f+".default_duration", "%s is longer than max_duration %s", formatDuration(def), formatDuration(hi))
	}
	switch {
	case lo > 0 && def > 0 && lo > def:
		c.add(f+".min_duration", "%s is longer than default_duration %s", formatDuration(lo), formatDuration(def))
	case lo > 0 && def <= 0 && hi > 0 && lo > hi:
		c.add(f+".min_duration", "%s is longer than max_duration %s", formatDuration(lo), formatDuration(hi))
	}
}

func (c *compiler) approval(f string, ac ApprovalConfig, r *Rule) {
	c.positive(f+".timeout", r.Approval.Timeout)
	for k, s := range ac.Steps {
		sf := fmt.Sprintf("%s.steps[%d]", f, k)
		if len(s.Approvers) == 0 {
			c.add(sf+".approvers", "must name at least one approver (a user id or group:NAME)")
		}
		c.subjects(sf+".approvers", s.Approvers)
		if s.Count < 1 {
			c.add(sf+".count", "must be at least 1, not %d", s.Count)
		}
		switch after := time.Duration(s.EscalateAfter); {
		case after == 0 && len(s.EscalateTo) > 0:
			c.add(sf+".escalate_after", "required with escalate_to: how long the step waits before escalating")
		case after != 0 && len(s.EscalateTo) == 0:
			c.add(sf+".escalate_to", "required with escalate_after: who is asked when the step waits too long")
		case after < 0:
			c.add(sf+".escalate_after", "must be positive, not %s", formatDuration(after))
		case after > 0 && r.Approval.Timeout > 0 && after >= r.Approval.Timeout:
			c.add(sf+".escalate_after", "%s is not shorter than approval.timeout %s, so it would never escalate", formatDuration(after), formatDuration(r.Approval.Timeout))
		}
		c.subjects(sf+".escalate_to", s.EscalateTo)
		r.Approval.Steps = append(r.Approval.Steps, Step{
			Approvers: slices.Clone(s.Approvers), Count: s.Count,
			EscalateAfter: time.Duration(s.EscalateAfter), EscalateTo: slices.Clone(s.EscalateTo),
			RequireMFA: s.RequireMFA,
		})
	}
	if !ac.AutoApprove.Empty() {
		r.Approval.AutoApprove = c.condition(f+".auto_approve", ac.AutoApprove)
	} else if len(ac.Steps) == 0 {
		c.add(f, "has no steps and no auto_approve, so no request could ever be approved")
	}
}

// condition compiles one expression, reporting each problem at its position
// in the file.
func (c *compiler) condition(field string, e Expr) *Condition {
	cond, msgs, err := compileExpr(e, c.src)
	if err != nil {
		c.add(field, "%v", err)
	}
	for _, m := range msgs {
		c.add(field, "%s", m)
	}
	for _, lit := range celStrings.FindAllString(e.Src, -1) {
		// requester.id is lower case (ajar.CanonicalUserID): a condition
		// comparing it with capitals would never hold, silently.
		if v := lit[1 : len(lit)-1]; strings.Contains(v, "@") && v != ajar.CanonicalUserID(v) {
			c.add(field, "%s looks like a user id with capitals; user ids are compared in lower case (requester.id is %q), so write it in lower case", lit, ajar.CanonicalUserID(v))
		}
	}
	return cond
}

// celStrings finds the quoted string literals of a CEL expression.
var celStrings = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)

// checks compiles a rule's deny or require conditions.
func (c *compiler) checks(field string, cfgs []CheckConfig) []Check {
	var out []Check
	for i, cc := range cfgs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if cc.Expr.Empty() {
			c.add(f+".expr", "required: a CEL condition")
			continue
		}
		if cc.Field != "" && !validRequestField(cc.Field) {
			c.add(f+".field", "must name a request field (target, duration, reason, ticket, start or params.NAME), not %q", cc.Field)
		}
		if cond := c.condition(f+".expr", cc.Expr); cond != nil {
			out = append(out, Check{Cond: cond, Message: strings.TrimSpace(cc.Message), Field: cc.Field})
		}
	}
	return out
}

// validRequestField reports whether name is a field of a request, as named in
// API errors.
func validRequestField(name string) bool {
	switch name {
	case "target", "duration", "reason", "ticket", "start":
		return true
	}
	k, ok := strings.CutPrefix(name, "params.")
	return ok && k != "" && !strings.ContainsAny(k, " \t\r\n=")
}

// jsonable converts YAML-decoded data for json.Marshal: YAML allows mapping
// keys that are numbers or booleans (decoded as map[any]any), JSON only strings.
// Such keys become their text, "1: x" becoming {"1": "x"}, as YAML-to-JSON
// converters usually do.
func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[k] = j
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			switch k.(type) {
			case string, bool, int, int64, uint64, float64:
			case nil:
				return nil, errors.New("a mapping key must not be empty (~ or null)")
			default:
				return nil, fmt.Errorf("a mapping key must be a plain name, not %v", k)
			}
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = j
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	}
	return v, nil
}
