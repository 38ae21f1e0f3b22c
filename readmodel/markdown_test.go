package readmodel

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// TestEvidenceMarkdownEscapes renders a report whose stored text (written
// before the edge refused such input, or by a host agent) holds raw HTML, a
// Markdown link, a code span, emphasis, terminal escapes, bidirectional
// controls and line breaks, and checks that none of it reaches the Markdown
// raw: no HTML tag or link opens, no table cell is split, and no control
// character is left for a terminal.
func TestEvidenceMarkdownEscapes(t *testing.T) {
	evil := "<img src=x onerror=alert(1)> [approved by root](https://evil.example) `x` | **ok** &amp; _em_ \x1b[2J\x1b[H \u202egnp.exe\r\nnext\rline \u009b31m"
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	details, _ := json.Marshal(map[string]any{"reason": evil, "host": "web-1\u202e"})
	ev := &Evidence{
		GeneratedAt: now, GeneratedBy: "root@example.com",
		Request: &ajar.Request{ID: "req_abc", Target: "web", Requester: "alice@example.com", Reason: evil, Ticket: evil,
			Policy: "web", State: ajar.StateDenied, CreatedAt: now, Params: map[string]string{"db": evil},
			Approvals: []ajar.Approval{{Approver: "bob@example.com", Decision: ajar.DecisionDeny, Comment: evil, At: now}}},
		Breakglass: &ajar.ReviewTask{RequestID: "req_abc", Requester: "alice@example.com", Reason: evil, OpenedAt: now,
			ClosedAt: &now, ClosedBy: "root@example.com", Comment: evil},
		Events: []ajar.AuditEvent{{Seq: 1, Time: now, Actor: "node-1", Action: "ssh.session.opened", Subject: "req_abc", Details: details}},
		End:    &EvidenceEnd{State: ajar.StateDenied, Detail: evil},
	}
	ev.Sessions = ev.Events
	out := ev.Markdown()
	if strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && ajar.UnsafeRune(r) }) {
		t.Errorf("a control or bidi character is left in:\n%s", out)
	}
	// Markdown is not interpreted in code spans (JSON details): leave them out.
	text := regexp.MustCompile("(^|[^\\\\])`[^`]*`").ReplaceAllString(out, "${1}CODE")
	for _, re := range []string{`(^|[^\\])<img`, `(^|[^\\])\]\(https`, `(^|[^\\])\*\*ok`, `(^|[^\\])&amp;`, `(^|[^\\])\b_em_`} {
		if regexp.MustCompile(re).MatchString(text) {
			t.Errorf("%s is not escaped:\n%s", re, out)
		}
	}
	// Every table row has as many cells as its header.
	cells := func(line string) int { return len(regexp.MustCompile(`(^|[^\\])\|`).FindAllString(line, -1)) }
	want := 0
	for _, line := range strings.Split(out, "\n") {
		switch {
		case !strings.HasPrefix(line, "|"):
			want = 0
		case want == 0:
			want = cells(line)
		case cells(line) != want:
			t.Errorf("table row with %d cells, want %d: %s", cells(line), want, line)
		}
	}
	if !strings.Contains(out, `\x1b\[2J`) || !strings.Contains(out, `\u202egnp.exe`) {
		t.Errorf("the control characters are not shown as escapes:\n%s", out)
	}
}
