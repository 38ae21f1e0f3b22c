package notify

import (
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// TestSlackEscapesEveryField puts Slack control sequences (a <!channel>
// mention, a forged link, a user ping), terminal escapes and bidirectional
// controls in every field a person writes, the summary included, and checks
// that no text Slack formats carries them raw.
func TestSlackEscapesEveryField(t *testing.T) {
	evil := "<!channel> <https://evil.example|open the runbook> <@U024BE7LH> \x1b[2J \u202egnp.exe"
	e := testEvent()
	e.Type = policy.EventRequestDenied
	e.Actor = "bob@example.com"
	e.Summary = "bob@example.com denied alice@example.com's request for web: " + evil
	e.Request.Reason = evil + "\nsecond line " + evil
	e.Request.Ticket = evil
	msg := SlackMessage(e)
	var texts []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			if key == "text" {
				texts = append(texts, v)
			}
		}
	}
	walk(msg, "")
	if top, _ := msg["text"].(string); !strings.Contains(top, "&lt;!channel&gt;") {
		t.Errorf("top-level text is not escaped: %q", top)
	}
	for _, s := range texts {
		if strings.ContainsAny(strings.ReplaceAll(s, "\n>", "\n"), "<>") { // ajar's own quote marks aside
			t.Errorf("Slack text holds a raw < or >: %q", s)
		}
		if strings.ContainsFunc(s, func(r rune) bool { return r != '\n' && ajar.UnsafeRune(r) }) {
			t.Errorf("Slack text holds a control or bidi character: %q", s)
		}
	}
	if len(texts) < 3 {
		t.Fatalf("found only %d text fields in %v", len(texts), msg)
	}
}
