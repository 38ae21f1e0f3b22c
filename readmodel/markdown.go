package readmodel

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ajar-dev/ajar"
)

// Markdown renders the report for people (ajar evidence -o markdown).
func (ev *Evidence) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	r := ev.Request
	w("# Evidence: request %s\n\n", md(r.ID))
	w("Generated %s by %s.\n\n", mdTime(&ev.GeneratedAt), md(ev.GeneratedBy))

	w("## Request\n\n| Field | Value |\n|---|---|\n")
	row := func(k, v string) { w("| %s | %s |\n", k, v) }
	row("ID", md(r.ID))
	row("Target", md(r.Target))
	row("Requester", md(r.Requester))
	row("Reason", mdOr(r.Reason))
	row("Ticket", mdOr(r.Ticket))
	row("Duration", ajar.FormatDuration(r.Duration))
	if len(r.Params) > 0 {
		p, _ := json.Marshal(r.Params)
		row("Parameters", "`"+mdCode(string(p))+"`")
	}
	row("Policy", md(r.Policy))
	row("State", md(string(r.State)))
	row("Created", mdTime(&r.CreatedAt))
	if r.StartAt != nil {
		row("Requested start", mdTime(r.StartAt))
	}
	w("\n## Approvals\n\n")
	switch {
	case ev.Breakglass != nil:
		w("None: break-glass (below).\n")
	case len(r.Approvals) == 0:
		w("None.\n")
	default:
		w("| Approver | Step | Decision | When | Comment |\n|---|---|---|---|---|\n")
		for _, a := range r.Approvals {
			w("| %s | %d | %s | %s | %s |\n", md(a.Approver), a.Step+1, md(a.Decision), mdTime(&a.At), mdOr(a.Comment))
		}
	}
	for _, e := range ev.Events {
		if e.Action == "request.approved" && e.Actor == ajar.ActorSystem {
			w("\nApproved by the policy at %s: `%s`.\n", mdTime(&e.Time), mdCode(compactJSON(e.Details)))
		}
	}
	if bg := ev.Breakglass; bg != nil {
		w("\n## Break-glass\n\n%s took access at %s without approval: %s.\n\n", md(bg.Requester), mdTime(&bg.OpenedAt), mdOr(bg.Reason))
		if bg.ClosedAt == nil {
			w("Review: **open**.\n")
		} else {
			w("Review: closed by %s at %s: %s.\n", md(bg.ClosedBy), mdTime(bg.ClosedAt), mdOr(bg.Comment))
		}
	}
	if len(ev.Extensions) > 0 {
		w("\n## Extensions\n\n| # | By | Requested by | Requested | State | Decided | Approvals |\n|---|---|---|---|---|---|---|\n")
		for _, x := range ev.Extensions {
			var ap []string
			for _, a := range x.Approvals {
				ap = append(ap, fmt.Sprintf("%s %s (step %d)", a.Approver, a.Decision, a.Step+1))
			}
			w("| %d | %s | %s | %s | %s | %s | %s |\n", x.Seq, ajar.FormatDuration(x.By), md(x.RequestedBy), mdTime(&x.RequestedAt),
				md(string(x.State)), mdTime(x.DecidedAt), mdOr(strings.Join(ap, "; ")))
		}
	}
	w("\n## Grant\n\n")
	if g := ev.Grant; g == nil {
		w("No grant was made.\n")
	} else {
		w("- Provider: %s (handle version %d)\n", md(g.Provider), g.HandleVersion)
		w("- Intent committed: %s\n", mdTime(g.IntentAt))
		w("- Granted: %s\n", mdTime(g.GrantedAt))
		w("- Expires: %s\n", mdTime(g.ExpiresAt))
		if len(g.Config) > 0 {
			w("- Target config: `%s`\n", mdCode(compactJSON(g.Config)))
		}
		w("- Provider handle: `%s`\n", mdCode(compactJSON(g.Handle)))
	}
	w("\n## Certificates issued\n\n")
	if len(ev.Certificates) == 0 {
		w("None.\n")
	} else {
		w("| Serial | Key ID | Principals | Key fingerprint | Valid after | Valid before | Issued |\n|---|---|---|---|---|---|---|\n")
		for _, c := range ev.Certificates {
			w("| %d | %s | %s | %s | %s | %s | %s |\n", c.Serial, md(c.KeyID), md(strings.Join(c.Principals, ", ")), md(c.Fingerprint),
				mdTime(&c.ValidAfter), mdTime(&c.ValidBefore), mdTime(&c.IssuedAt))
		}
	}
	w("\n## Sessions reported\n\n")
	if len(ev.Sessions) == 0 {
		w("None reported.\n")
	} else {
		w("| Seq | Time | Reported by | Event | Details |\n|---|---|---|---|---|\n")
		for _, e := range ev.Sessions {
			w("| %d | %s | %s | %s | `%s` |\n", e.Seq, mdTime(&e.Time), md(e.Actor), md(e.Action), mdCode(compactJSON(e.Details)))
		}
	}
	w("\n## End\n\n")
	if e := ev.End; e == nil {
		w("The request has not ended.\n")
	} else {
		w("- State: %s", md(string(e.State)))
		if e.Reason != "" {
			w(" (end reason: %s)", md(string(e.Reason)))
		}
		w("\n- Ended: %s\n- Confirmation: %s\n", mdTime(e.At), md(e.Detail))
		if c := e.Check; c != nil {
			state := "gone"
			if c.Present {
				state = "**present**"
			}
			if c.Error != "" {
				state = "unknown: " + md(c.Error)
			}
			w("- Checked with the provider at %s: %s\n", mdTime(&c.At), state)
		}
	}
	w("\n## Audit events\n\n| Seq | Time | Actor | Action | Details | Previous hash | Hash |\n|---|---|---|---|---|---|---|\n")
	for _, e := range ev.Events {
		w("| %d | %s | %s | %s | `%s` | %s | %s |\n", e.Seq, mdTime(&e.Time), md(e.Actor), md(e.Action),
			mdCode(compactJSON(e.Details)), hexOr(e.PrevHash), hexOr(e.Hash))
	}
	w("\n## Integrity\n\n")
	if ev.Integrity.HashesOK {
		w("- Every event's hash recomputes from its fields.\n")
	} else {
		w("- **%s**\n", md(ev.Integrity.Problem))
	}
	if ev.Integrity.Checkpoint != "" {
		cover := "does not cover"
		if ev.Integrity.Covers {
			cover = "covers"
		}
		w("- This signed checkpoint of the log (size %d) %s these events:\n\n```\n%s```\n\n", ev.Integrity.CheckpointSize, cover, ev.Integrity.Checkpoint)
		w("- To check the whole chain up to it, save it to checkpoint.txt and run\n  `ajar audit verify --checkpoint checkpoint.txt --key %s`\n", ev.Integrity.VerifierKey)
	}
	return b.String()
}

// md makes text safe as Markdown inline text, in a table cell or a sentence,
// whoever wrote it and whenever it was stored (docs/security.md, "Free
// text"): line breaks become spaces; the characters that make links, images,
// raw HTML, entities, code spans, emphasis or table cells are escaped with a
// backslash (an underscore inside a word, as in req_x, cannot emphasise and
// stays); control and bidirectional characters become visible escapes such
// as \x1b and \u202e, readable both rendered and in a terminal.
func md(s string) string {
	s = mdLines.Replace(s)
	var b strings.Builder
	prev := ' '
	for i, r := range s {
		switch {
		case strings.ContainsRune("\\`*[]<>|~&", r):
			b.WriteByte('\\')
		case r == '_':
			next, _ := utf8.DecodeRuneInString(s[i+1:])
			if !wordRune(prev) || !wordRune(next) {
				b.WriteByte('\\')
			}
		}
		b.WriteRune(r)
		prev = r
	}
	return ajar.EscapeUnsafe(b.String(), false)
}

// mdCode makes text safe inside a code span in a table cell: Markdown is not
// interpreted there, so only a backtick (which would end the span), a pipe
// (which would end the cell), line breaks and control characters are
// replaced.
func mdCode(s string) string {
	s = strings.NewReplacer("`", "'", "|", `\|`).Replace(mdLines.Replace(s))
	return ajar.EscapeUnsafe(s, false)
}

var mdLines = strings.NewReplacer("\r\n", " ", "\n", " ", "\t", " ")

func wordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

func mdOr(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return md(s)
}

func mdTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func hexOr(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
