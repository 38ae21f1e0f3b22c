package policy

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ajar-dev/ajar"
)

// Config mirrors the policy file as written. Parse turns it into a validated,
// compiled *Policy; nothing outside this package should act on a Config directly.
type Config struct {
	Server    ServerConfig    `yaml:"server"`
	Storage   StorageConfig   `yaml:"storage"`
	Scheduler SchedulerConfig `yaml:"scheduler"`
	// Reconcile is the drift check (see ReconcileConfig).
	Reconcile ReconcileConfig `yaml:"reconcile"`
	Users     []UserConfig    `yaml:"users"`
	// Admins may revoke anything and read and verify the whole audit log:
	// user ids or "group:NAME".
	Admins  []string                `yaml:"admins"`
	Targets map[string]TargetConfig `yaml:"targets"`
	// Policies are the rules, matched in file order.
	Policies []RuleConfig `yaml:"policies"`
	// Notifications are the sinks events are delivered to (see
	// NotificationConfig).
	Notifications []NotificationConfig `yaml:"notifications"`
	// Limits are the per-user caps (see LimitsConfig).
	Limits LimitsConfig `yaml:"limits"`
	// Identity is where people sign in (see IdentityConfig).
	Identity IdentityConfig `yaml:"identity"`

	// src is the file's text, for reporting condition errors at their line and
	// column in the file.
	src []string
}

// ServerConfig is the "server" section.
type ServerConfig struct {
	// Listen is the HTTP address; DefaultListen when empty.
	Listen string `yaml:"listen"`
	// PublicURL is where people reach this server (the web pages), such as
	// https://ajar.example.com; notifications link to it. Empty: no links.
	PublicURL string `yaml:"public_url"`
}

// StorageConfig is the "storage" section.
type StorageConfig struct {
	// Driver is "sqlite" (the default) or "postgres".
	Driver string `yaml:"driver"`
	// DSN is the data source. Required for postgres; for sqlite an empty DSN
	// lets the caller put the database in its data directory.
	DSN string `yaml:"dsn"`
}

// SchedulerConfig is the optional "scheduler" section. Zero fields take the
// defaults: poll_interval 1s, max_grant_attempts 5, max_revoke_attempts 8,
// slow_retry 5m, expiry_reminder 10m, notify_retry 2s, notify_max_retry 5m,
// notify_give_up 24h.
type SchedulerConfig struct {
	PollInterval      Duration `yaml:"poll_interval"`
	MaxGrantAttempts  int      `yaml:"max_grant_attempts"`
	MaxRevokeAttempts int      `yaml:"max_revoke_attempts"`
	// SlowRetry is how often a revocation that ran out of attempts (revoke_failed)
	// is tried again. It is retried forever.
	SlowRetry Duration `yaml:"slow_retry"`
	// ExpiryReminder is how long before expiry the request.expiring event is
	// sent (only for grants longer than that, and only if a sink wants it).
	ExpiryReminder Duration `yaml:"expiry_reminder"`
	// NotifyRetry is the first delay before a failed notification is sent again;
	// it doubles with each attempt up to NotifyMaxRetry.
	NotifyRetry    Duration `yaml:"notify_retry"`
	NotifyMaxRetry Duration `yaml:"notify_max_retry"`
	// NotifyGiveUp is how long a notification is retried before it is dropped
	// (audited as notification.dropped) so the sink's later events can go.
	NotifyGiveUp Duration `yaml:"notify_give_up"`
}

// UserConfig is one static user.
type UserConfig struct {
	ID     string   `yaml:"id"`
	Groups []string `yaml:"groups"`
}

// TargetConfig is one entry of "targets". Config is the provider's own settings;
// it is converted to JSON for the provider (see Target.Config).
type TargetConfig struct {
	Provider string         `yaml:"provider"`
	Config   map[string]any `yaml:"config"`
}

// RuleConfig is one entry of "policies".
type RuleConfig struct {
	Name       string   `yaml:"name"`
	Targets    []string `yaml:"targets"`
	Requesters []string `yaml:"requesters"`
	// DefaultDuration is used when a request names no duration. Required.
	DefaultDuration Duration `yaml:"default_duration"`
	// MinDuration is the shortest duration allowed; zero means any positive one.
	MinDuration Duration `yaml:"min_duration"`
	// MaxDuration is the longest duration allowed. Required.
	MaxDuration   Duration `yaml:"max_duration"`
	RequireReason bool     `yaml:"require_reason"`
	// TicketPattern is a regular expression (RE2) the whole ticket must match.
	// When set, a ticket is required.
	TicketPattern string `yaml:"ticket_pattern"`
	// Deny conditions are checked first: a request for which any of them is
	// true is refused.
	Deny []CheckConfig `yaml:"deny"`
	// Require conditions must all be true, or the request is refused.
	Require    []CheckConfig     `yaml:"require"`
	Approval   ApprovalConfig    `yaml:"approval"`
	Extend     *ExtendConfig     `yaml:"extend"`
	Breakglass *BreakglassConfig `yaml:"breakglass"`
}

// ApprovalConfig is a rule's "approval" section.
type ApprovalConfig struct {
	// Timeout is how long a request may wait for a decision; DefaultApprovalTimeout
	// when absent.
	Timeout Duration     `yaml:"timeout"`
	Steps   []StepConfig `yaml:"steps"`
	// AutoApprove is a CEL expression; when it is true the request needs no
	// approval. See NewCondition for the variables it can use.
	AutoApprove Expr `yaml:"auto_approve"`
}

// StepConfig is one approval step: Count distinct people named by Approvers.
type StepConfig struct {
	Approvers []string `yaml:"approvers"`
	Count     int      `yaml:"count"`
	// EscalateAfter, when set, is how long the step may wait before the people
	// named by EscalateTo are notified (request.escalated); from then on they
	// may approve or deny the step too.
	EscalateAfter Duration `yaml:"escalate_after"`
	EscalateTo    []string `yaml:"escalate_to"`
	// RequireMFA: an approval of this step counts only when the approver
	// proved a second factor within the last 5 minutes (a security key in
	// the web page, or an OIDC re-authentication whose amr names one).
	RequireMFA bool `yaml:"require_mfa"`
}

// CheckConfig is one deny or require condition: a CEL expression (see
// NewCondition), the message shown when it refuses a request, and optionally
// the request field it is about ("duration", "ticket", "params.source_ip"...),
// named in the error.
type CheckConfig struct {
	Expr    Expr   `yaml:"expr"`
	Message string `yaml:"message"`
	Field   string `yaml:"field"`
}

// ExtendConfig is a rule's "extend" section: how a granted request may be extended.
type ExtendConfig struct {
	MaxExtensions int `yaml:"max_extensions"`
	// MaxTotal bounds the whole window, the first grant plus every extension.
	MaxTotal Duration `yaml:"max_total"`
	// Approval is "required" (the default: an extension needs the same
	// approval as a new request for the whole window) or "none".
	Approval string `yaml:"approval"`
}

// BreakglassConfig is a rule's "breakglass" section: who may skip approval.
type BreakglassConfig struct {
	Allowed []string `yaml:"allowed"`
	// RequireMFA: break-glass needs a second factor proved within the last
	// 5 minutes, as for approval steps with require_mfa.
	RequireMFA bool `yaml:"require_mfa"`
}

// Defaults for optional settings.
const (
	DefaultListen          = "127.0.0.1:8700"
	DefaultDriver          = "sqlite"
	DefaultApprovalTimeout = 24 * time.Hour

	// ExtendApprovalRequired and ExtendApprovalNone are the values of
	// extend.approval.
	ExtendApprovalRequired = "required"
	ExtendApprovalNone     = "none"
)

// defaultScheduler holds the scheduler settings used for absent fields. It is
// unexported so nothing can change the defaults at run time.
var defaultScheduler = SchedulerConfig{
	PollInterval:      Duration(time.Second),
	MaxGrantAttempts:  5,
	MaxRevokeAttempts: 8,
	SlowRetry:         Duration(5 * time.Minute),
	ExpiryReminder:    Duration(10 * time.Minute),
	NotifyRetry:       Duration(2 * time.Second),
	NotifyMaxRetry:    Duration(5 * time.Minute),
	NotifyGiveUp:      Duration(24 * time.Hour),
}

// applyDefaults fills absent optional settings. Zero means absent: a file cannot
// ask for a zero timeout or poll interval, which would make no sense anyway.
func (c *Config) applyDefaults() {
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Storage.Driver == "" {
		c.Storage.Driver = DefaultDriver
	}
	c.Reconcile.applyDefaults()
	c.Identity.applyDefaults()
	s, d := &c.Scheduler, defaultScheduler
	if s.PollInterval == 0 {
		s.PollInterval = d.PollInterval
	}
	if s.MaxGrantAttempts == 0 {
		s.MaxGrantAttempts = d.MaxGrantAttempts
	}
	if s.MaxRevokeAttempts == 0 {
		s.MaxRevokeAttempts = d.MaxRevokeAttempts
	}
	if s.SlowRetry == 0 {
		s.SlowRetry = d.SlowRetry
	}
	if s.ExpiryReminder == 0 {
		s.ExpiryReminder = d.ExpiryReminder
	}
	if s.NotifyRetry == 0 {
		s.NotifyRetry = d.NotifyRetry
	}
	if s.NotifyMaxRetry == 0 {
		s.NotifyMaxRetry = d.NotifyMaxRetry
	}
	if s.NotifyGiveUp == 0 {
		s.NotifyGiveUp = d.NotifyGiveUp
	}
	for i := range c.Policies {
		if c.Policies[i].Approval.Timeout == 0 {
			c.Policies[i].Approval.Timeout = Duration(DefaultApprovalTimeout)
		}
		if e := c.Policies[i].Extend; e != nil && e.Approval == "" {
			e.Approval = ExtendApprovalRequired
		}
	}
}

// Duration is a time.Duration written in Go syntax ("90s", "30m", "1h30m").
type Duration time.Duration

// String formats d without zero units: "2h", "1h30m", "90s" becomes "1m30s".
func (d Duration) String() string { return formatDuration(time.Duration(d)) }

// MarshalYAML writes d in the syntax UnmarshalYAML reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration in Go syntax. A bad value is reported as a
// *yaml.TypeError so the decoder keeps going and every problem is found.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDurationNode(n)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

// parseDurationNode parses a YAML scalar as a Go duration. "0" is accepted
// without a unit, like time.ParseDuration does.
func parseDurationNode(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		return 0, fmt.Errorf("must be a duration like 90s, 30m or 2h, not %s", describeNode(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use Go syntax like 90s, 30m or 2h", n.Value)
	}
	return v, nil
}

// formatDuration is ajar.FormatDuration: "2h", not "2h0m0s".
func formatDuration(d time.Duration) string { return ajar.FormatDuration(d) }
