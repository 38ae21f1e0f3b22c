package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Notification event types: what a sink's "events" list may name.
const (
	EventRequestCreated     = "request.created"     // a request was made (it may need approval)
	EventRequestApproved    = "request.approved"    // approved (by people or by the policy)
	EventRequestDenied      = "request.denied"      // an approver said no
	EventRequestEscalated   = "request.escalated"   // an approval step waited too long
	EventRequestExpiring    = "request.expiring"    // access ends soon (scheduler.expiry_reminder)
	EventRequestExtended    = "request.extended"    // the window was extended
	EventRequestEnded       = "request.ended"       // reached a final state (expired, revoked...)
	EventExtensionRequested = "extension.requested" // an extension waits for approval
	EventExtensionDenied    = "extension.denied"    // an extension was denied
	EventRevokeFailed       = "grant.revoke_failed" // removal keeps failing
	EventBreakglassUsed     = "breakglass.used"     // someone skipped approval
	EventBreakglassExtended = "breakglass.extended" // break-glass access asked for more time
	EventReviewClosed       = "review.closed"       // a break-glass review was closed
	EventDriftDetected      = "drift.detected"      // access found that ajar did not expect
)

// EventTypes lists every event type, in a stable order.
var EventTypes = []string{
	EventRequestCreated, EventRequestApproved, EventRequestDenied, EventRequestEscalated,
	EventRequestExpiring, EventRequestExtended, EventRequestEnded, EventExtensionRequested,
	EventExtensionDenied, EventRevokeFailed, EventBreakglassUsed, EventBreakglassExtended,
	EventReviewClosed, EventDriftDetected,
}

// Notification sink types.
const (
	SinkWebhook = "webhook" // a JSON POST signed with HMAC-SHA256
	SinkSlack   = "slack"   // a Slack incoming webhook
	SinkLog     = "log"     // a line in the server's log (for trying things out)
)

// NotificationConfig is one entry of "notifications": a sink and the events it
// gets.
type NotificationConfig struct {
	// Name identifies the sink; its delivery queue is kept under this name, so
	// renaming a sink starts a new queue.
	Name string `yaml:"name"`
	Type string `yaml:"type"` // webhook, slack or log
	// URL is where events are posted; URLEnv names an environment variable that
	// holds it instead (a Slack webhook URL is a secret). webhook and slack need
	// exactly one of them.
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
	// SecretEnv names the environment variable holding the webhook's shared
	// HMAC secret (required for webhook).
	SecretEnv string `yaml:"secret_env"`
	// Events are the event types sent to this sink; empty means all of them.
	Events []string `yaml:"events"`
}

// Wants reports whether the sink gets events of this type.
func (n NotificationConfig) Wants(event string) bool {
	return len(n.Events) == 0 || slices.Contains(n.Events, event)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *compiler) notifications(ns []NotificationConfig) {
	seen := map[string]int{}
	for i, n := range ns {
		f := fmt.Sprintf("notifications[%d]", i)
		switch j, dup := seen[n.Name]; {
		case n.Name == "":
			c.add(f+".name", "required")
		case !validName.MatchString(n.Name):
			c.add(f+".name", "%s, not %q", nameRule, n.Name)
		case dup:
			c.add(f+".name", "%q is already notifications[%d]", n.Name, j)
		default:
			seen[n.Name] = i
		}
		needsURL := true
		switch n.Type {
		case "":
			c.add(f+".type", "required: %s, %s or %s", SinkWebhook, SinkSlack, SinkLog)
			needsURL = false
		case SinkWebhook:
			if n.SecretEnv == "" {
				c.add(f+".secret_env", "required: the environment variable holding the shared secret the events are signed with")
			}
		case SinkSlack:
		case SinkLog:
			needsURL = false
		default:
			c.add(f+".type", "must be %s, %s or %s, not %q", SinkWebhook, SinkSlack, SinkLog, n.Type)
			needsURL = false
		}
		if n.SecretEnv != "" {
			if n.Type != SinkWebhook && n.Type != "" {
				c.add(f+".secret_env", "only a webhook signs its events")
			} else if !envName.MatchString(n.SecretEnv) {
				c.add(f+".secret_env", "must be an environment variable name, not %q", n.SecretEnv)
			}
		}
		switch known := slices.Contains([]string{SinkWebhook, SinkSlack, SinkLog}, n.Type); {
		case known && !needsURL && (n.URL != "" || n.URLEnv != ""):
			c.add(f+".url", "a %s sink has no URL", n.Type)
		case needsURL && n.URL == "" && n.URLEnv == "":
			c.add(f+".url", "required: url, or url_env naming the environment variable that holds it")
		case n.URL != "" && n.URLEnv != "":
			c.add(f+".url_env", "give url or url_env, not both")
		case n.URL != "":
			if msg := checkSinkURL(n.URL); msg != "" {
				c.add(f+".url", "%s", msg)
			}
		case n.URLEnv != "" && !envName.MatchString(n.URLEnv):
			c.add(f+".url_env", "must be an environment variable name, not %q", n.URLEnv)
		}
		for j, e := range n.Events {
			if !slices.Contains(EventTypes, e) {
				c.add(fmt.Sprintf("%s.events[%d]", f, j), "unknown event %q (known: %s)", e, strings.Join(EventTypes, ", "))
			}
		}
	}
}

// checkSinkURL returns why u cannot be a sink URL, or "".
func checkSinkURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return "must be an http:// or https:// URL"
	}
	if pu.User != nil {
		return "must not hold credentials; use url_env for secret URLs"
	}
	return ""
}

// CheckSinkURL returns why u, read from a sink's url_env at start-up, cannot be
// a sink URL, or "".
func CheckSinkURL(u string) string { return checkSinkURL(u) }
