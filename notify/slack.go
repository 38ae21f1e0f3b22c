package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
)

// Slack posts each event to a Slack incoming webhook as a readable message:
// the summary, the request with its reason and duration, the commands to act,
// and buttons linking to the web pages.
type Slack struct {
	base
	URL    string
	Client *http.Client
}

// Send posts event.
func (s *Slack) Send(ctx context.Context, event []byte) error {
	var e Event
	if err := json.Unmarshal(event, &e); err != nil {
		return fmt.Errorf("slack %s: decode event: %w", s.name, err)
	}
	body, err := json.Marshal(SlackMessage(e))
	if err != nil {
		return fmt.Errorf("slack %s: %w", s.name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("slack %s: cannot build the request", s.name) // the URL is a secret
	}
	req.Header.Set("Content-Type", "application/json")
	return post(s.Client, req, "slack "+s.name)
}

// SlackMessage renders e as a Slack message payload ("text" for notifications
// and clients without blocks, "blocks" for the message itself).
func SlackMessage(e Event) map[string]any {
	var b strings.Builder
	b.WriteString("*" + slackEscape(e.Summary) + "*")
	if r := e.Request; r != nil {
		fmt.Fprintf(&b, "\nRequest `%s`: *%s* for *%s* by %s", slackEscape(r.ID), slackEscape(r.Target), slackEscape(r.Duration), slackEscape(r.Requester))
		if r.Reason != "" {
			b.WriteString("\n>" + strings.ReplaceAll(slackEscape(r.Reason), "\n", "\n>"))
		}
		if r.Ticket != "" {
			b.WriteString("\nTicket: " + slackEscape(r.Ticket))
		}
		if r.StartAt != nil {
			b.WriteString("\nStarts: " + slackTime(*r.StartAt))
		}
		if r.ExpiresAt != nil {
			b.WriteString("\nEnds: " + slackTime(*r.ExpiresAt))
		}
		b.WriteString("\nState: " + slackEscape(r.State))
	}
	blocks := []any{map[string]any{
		"type": "section",
		"text": map[string]any{"type": "mrkdwn", "text": b.String()},
	}}
	if len(e.Actions) > 0 {
		var cmds strings.Builder
		for _, a := range e.Actions {
			fmt.Fprintf(&cmds, "%s (%s): `%s`\n", slackEscape(a.Label), slackEscape(a.Who), slackEscape(a.Command))
		}
		blocks = append(blocks, map[string]any{
			"type": "section",
			"text": map[string]any{"type": "mrkdwn", "text": strings.TrimSuffix(cmds.String(), "\n")},
		})
		var buttons []any
		seen := map[string]bool{}
		for _, a := range e.Actions {
			if a.URL == "" || seen[a.Label] || len(buttons) == 5 {
				continue
			}
			seen[a.Label] = true
			buttons = append(buttons, map[string]any{
				"type": "button",
				"text": map[string]any{"type": "plain_text", "text": a.Label},
				"url":  a.URL,
			})
		}
		if len(buttons) > 0 {
			blocks = append(blocks, map[string]any{"type": "actions", "elements": buttons})
		}
	}
	blocks = append(blocks, map[string]any{
		"type":     "context",
		"elements": []any{map[string]any{"type": "mrkdwn", "text": slackEscape(fmt.Sprintf("ajar · %s · %s · %s", e.Type, e.Actor, e.ID))}},
	})
	// The top-level text is the notification and the fallback for clients
	// without blocks; Slack formats it too, so it is escaped like the rest.
	return map[string]any{"text": slackEscape(e.Summary), "blocks": blocks}
}

// slackEscape makes text from people safe in any Slack text field: it escapes
// the three characters Slack's formatting gives meaning to (as Slack's
// "Escaping text" rules say), so a reason cannot mention <!channel>, ping a
// user or forge a <https://link|label>, and shows control and bidirectional
// characters as escapes (\x1b, \u202e), line feeds excepted, since the store
// may hold text written before the edge refused them (docs/security.md).
func slackEscape(s string) string {
	return slackEscaper.Replace(ajar.EscapeUnsafe(s, true))
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
