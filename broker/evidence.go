package broker

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ajar-dev/ajar"
)

// EvidenceReport is the full story of one request for an auditor: the request
// and its reason, each approval with who and when, break-glass and its review,
// extensions, the grant with the provider's handle, every certificate issued
// and every session reported, the end with the provider's confirmation that
// the access is gone, and the request's audit events with their hashes and a
// signed checkpoint of the log that covers them.
type EvidenceReport struct {
	GeneratedAt time.Time     `json:"generated_at"`
	GeneratedBy string        `json:"generated_by"`
	Request     *ajar.Request `json:"request"`
	// Breakglass is the review task of a break-glass request (nil otherwise).
	Breakglass   *ajar.ReviewTask  `json:"breakglass,omitempty"`
	Extensions   []ajar.Extension  `json:"extensions"`
	Grant        *EvidenceGrant    `json:"grant,omitempty"`
	Certificates []ajar.SSHCert    `json:"certificates"`
	Sessions     []ajar.AuditEvent `json:"sessions"` // logins and session ends reported by host agents
	End          *EvidenceEnd      `json:"end,omitempty"`
	Events       []ajar.AuditEvent `json:"events"` // every audit event about the request, in order
	Integrity    EvidenceIntegrity `json:"integrity"`
}

// EvidenceGrant is what the provider was asked to create and what it reported.
type EvidenceGrant struct {
	Provider      string          `json:"provider"`
	HandleVersion int             `json:"handle_version"`
	Handle        json.RawMessage `json:"handle,omitempty"` // the provider's revoke handle
	Config        json.RawMessage `json:"config,omitempty"` // the target's config at grant time
	IntentAt      *time.Time      `json:"intent_at,omitempty"`
	GrantedAt     *time.Time      `json:"granted_at,omitempty"`
	ExpiresAt     *time.Time      `json:"expires_at,omitempty"`
}

// EvidenceEnd is how the request ended and the proof the access is gone.
type EvidenceEnd struct {
	State     ajar.State     `json:"state"`
	Reason    ajar.EndReason `json:"end_reason,omitempty"`
	At        *time.Time     `json:"at,omitempty"`
	Confirmed bool           `json:"confirmed"` // the provider confirmed removal (event Seq)
	Seq       int64          `json:"seq,omitempty"`
	Detail    string         `json:"detail"`
	// Check is the provider's answer now, for providers that can tell
	// (ajar.Verifier); nil otherwise.
	Check *EvidenceCheck `json:"check,omitempty"`
}

// EvidenceCheck is a provider's answer to "is the access there right now?".
type EvidenceCheck struct {
	At      time.Time `json:"at"`
	Present bool      `json:"present"`
	Error   string    `json:"error,omitempty"`
}

// EvidenceIntegrity ties the events to the tamper-evident log.
type EvidenceIntegrity struct {
	// HashesOK is true when every event's hash recomputes from its fields.
	HashesOK bool   `json:"hashes_ok"`
	Problem  string `json:"problem,omitempty"`
	// Checkpoint is a signed note of the log's size and head hash (admins
	// only); it covers the events when its size is at least the last event's
	// Seq. `ajar audit verify --checkpoint FILE` checks the whole chain up to
	// it.
	Checkpoint     string `json:"checkpoint,omitempty"`
	CheckpointSize int64  `json:"checkpoint_size,omitempty"`
	Covers         bool   `json:"covers"`
	VerifierKey    string `json:"verifier_key,omitempty"`
}

// sessionEvent reports whether an audit action is a session a host reported.
func sessionEvent(action string) bool {
	return strings.HasPrefix(action, "ssh.session.") || strings.HasPrefix(action, "session.")
}

// EvidenceReport gathers the evidence for a request u may see (ENOTFOUND
// otherwise). The signed checkpoint is included for admins, who may read the
// whole log.
func (s *Service) EvidenceReport(ctx context.Context, u ajar.User, id string) (*EvidenceReport, error) {
	r, err := s.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	ev := &EvidenceReport{GeneratedBy: u.ID, Request: r, Extensions: []ajar.Extension{}, Certificates: []ajar.SSHCert{},
		Sessions: []ajar.AuditEvent{}, Events: []ajar.AuditEvent{}}
	var head int64
	err = s.store.View(ctx, func(tx ajar.ReadTx) error {
		ev.GeneratedAt = tx.Now()
		f := ajar.AuditFilter{Subject: id, Limit: 1000}
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
		certs, err := tx.ListSSHCerts(ctx, id)
		if err != nil {
			return err
		}
		ev.Certificates = append(ev.Certificates, certs...)
		exts, err := tx.ListExtensions(ctx, id)
		if err != nil {
			return err
		}
		ev.Extensions = append(ev.Extensions, exts...)
		rv, err := tx.GetReview(ctx, id)
		switch {
		case err == nil:
			ev.Breakglass = rv
		case ajar.ErrorCode(err) != ajar.ENOTFOUND:
			return err
		}
		head, _, err = tx.AuditHead(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("evidence for %s: %w", id, err)
	}
	for _, e := range ev.Events {
		if sessionEvent(e.Action) {
			ev.Sessions = append(ev.Sessions, e)
		}
	}
	ev.Grant = evidenceGrant(r, ev.Events)
	ev.End = s.evidenceEnd(ctx, r, ev.Events, ev.GeneratedAt)

	ev.Integrity.HashesOK = true
	for _, e := range ev.Events {
		if !bytes.Equal(e.Hash, e.ComputeHash()) {
			ev.Integrity.HashesOK = false
			ev.Integrity.Problem = fmt.Sprintf("event %d: its hash does not match its fields (edited?)", e.Seq)
			break
		}
	}
	if s.pol.IsAdmin(u) && s.signer != nil && head > 0 {
		cp, err := s.Checkpoint(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("evidence for %s: checkpoint: %w", id, err)
		}
		ev.Integrity.Checkpoint = string(cp)
		ev.Integrity.CheckpointSize = checkpointSize(cp, head)
		ev.Integrity.VerifierKey = s.signer.VerifierKey()
		last := int64(0)
		if n := len(ev.Events); n > 0 {
			last = ev.Events[n-1].Seq
		}
		ev.Integrity.Covers = ev.Integrity.CheckpointSize >= last
	}
	return ev, nil
}

// checkpointSize reads the tree size from a checkpoint note (its second
// line); fallback is the head read just before, which the note cannot be
// smaller than.
func checkpointSize(note []byte, fallback int64) int64 {
	lines := strings.SplitN(string(note), "\n", 3)
	if len(lines) >= 2 {
		var n int64
		if _, err := fmt.Sscanf(lines[1], "%d", &n); err == nil && n > 0 {
			return n
		}
	}
	return fallback
}

func evidenceGrant(r *ajar.Request, events []ajar.AuditEvent) *EvidenceGrant {
	if r.Handle == nil {
		return nil
	}
	g := &EvidenceGrant{Provider: r.Handle.Provider, HandleVersion: r.Handle.Version, Handle: r.Handle.Data,
		Config: r.Handle.Grant.Config, ExpiresAt: r.ExpiresAt}
	for _, e := range events {
		switch e.Action {
		case "grant.started":
			if g.IntentAt == nil {
				g.IntentAt = ptr(e.Time)
			}
		case "request.activated":
			g.GrantedAt = ptr(e.Time)
		}
	}
	return g
}

// evidenceEnd finds the event that recorded the end and, where the provider
// can tell, asks it whether the access is there now.
func (s *Service) evidenceEnd(ctx context.Context, r *ajar.Request, events []ajar.AuditEvent, now time.Time) *EvidenceEnd {
	end := &EvidenceEnd{State: r.State, Reason: r.EndReason, At: r.EndedAt}
	switch r.State {
	case ajar.StateExpired, ajar.StateRevoked, ajar.StateGrantFailed:
		for _, e := range events {
			if e.Action == "request."+string(r.State) {
				var d struct {
					Attempts int `json:"attempts"`
				}
				_ = json.Unmarshal(e.Details, &d)
				end.Confirmed, end.Seq = true, e.Seq
				end.Detail = fmt.Sprintf("the provider confirmed the access is gone (event %d, %s, after %d revoke attempt(s))", e.Seq, e.Action, d.Attempts)
			}
		}
		if !end.Confirmed {
			end.Detail = "no confirmation event found"
		}
	case ajar.StateDenied, ajar.StateCancelled, ajar.StateTimedOut:
		end.Confirmed = true
		end.Detail = "no access was ever granted"
	case ajar.StateRevokeFailed:
		end.Detail = fmt.Sprintf("removal keeps failing (%d attempts): %s", r.Attempts, r.LastError)
	default:
		end.Detail = "the request has not ended"
		if r.State != ajar.StateActive && r.State != ajar.StateRevoking {
			return nil
		}
	}
	if r.Handle != nil && len(r.Handle.Data) > 0 {
		if prov, err := s.providers.ForHandle(*r.Handle); err == nil {
			if v, ok := prov.(ajar.Verifier); ok {
				vctx, cancel := context.WithTimeout(ctx, s.sched.ProviderTimeout)
				present, err := v.Verify(vctx, *r.Handle)
				cancel()
				end.Check = &EvidenceCheck{At: now, Present: present}
				if err != nil {
					end.Check.Error = safeError(err)
				}
			}
		}
	}
	return end
}

// Markdown renders the report for people (ajar evidence -o markdown).
func (ev *EvidenceReport) Markdown() string {
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
	row("Duration", fmtDuration(r.Duration))
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
			w("| %d | %s | %s | %s | %s | %s | %s |\n", x.Seq, fmtDuration(x.By), md(x.RequestedBy), mdTime(&x.RequestedAt),
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
