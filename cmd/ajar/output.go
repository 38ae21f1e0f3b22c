package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// outputFormat is the value of -o/--output. Set rejects anything but the two
// formats, so a bad value is a flag error (a usage error) before anything is sent.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }
func (o *outputFormat) Set(v string) error {
	switch f := outputFormat(v); f {
	case outputTable, outputJSON:
		*o = f
		return nil
	}
	return errors.New(`must be "table" or "json"`)
}

// addOutputFlag adds -o/--output to cmd, defaulting to table.
func addOutputFlag(cmd *cobra.Command, o *outputFormat) {
	*o = outputTable
	cmd.Flags().VarP(o, "output", "o", `output format: "table" or "json"`)
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// clean makes text from the server safe to print on a terminal: control characters
// (escape sequences, newlines, tabs that would break a table) and bidirectional
// overrides are shown escaped, so another user's reason cannot rewrite the screen.
func clean(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// cleanLines is clean for multi-line text of ajar's own (a policy file's
// problems, cobra's "Did you mean this?" list), one item a line: line feeds
// stay, tabs that indent a line become two spaces each, trailing blank lines
// go, and everything else clean escapes is escaped. Never use it for text from
// the server: that is one line, escaped by clean.
func cleanLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		rest := strings.TrimLeft(l, "\t")
		lines[i] = strings.Repeat("  ", len(l)-len(rest)) + clean(rest)
	}
	return strings.Join(lines, "\n")
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == unicode.ReplacementChar
}

// orDash returns "-" for empty table cells, so columns stay aligned for awk.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

// fmtTime prints t for people: RFC 3339 in the local time zone (the zone
// --start HH:MM is read in), or in UTC with --utc; "-" for the zero time.
// JSON output keeps the server's UTC times.
func (e *cliEnv) fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	loc := time.Local
	if e.utc {
		loc = time.UTC
	}
	return t.In(loc).Format(time.RFC3339)
}

func (e *cliEnv) fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return e.fmtTime(*t)
}

// fmtDuration prints durations the way users type them: "30m", "2h", "1h30m".
func fmtDuration(d time.Duration) string { return ajar.FormatDuration(d) }

// relative says roughly how far t is from now: "in 29m", "3h5m ago", "12d ago".
func relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d >= time.Second:
		return "in " + roughDuration(d)
	case d <= -time.Second:
		return roughDuration(-d) + " ago"
	}
	return "now"
}

func roughDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// forJSON returns req with approvals as [] rather than null, so the key is always a list.
func forJSON(req *ajar.Request) *ajar.Request {
	if req.Approvals != nil {
		return req
	}
	c := *req
	c.Approvals = []ajar.Approval{}
	return &c
}

// printRequest prints one request: all its fields for people, or the JSON object.
func (e *cliEnv) printRequest(req *ajar.Request, format outputFormat) error {
	return e.printRequestHistory(req, nil, format)
}

// printRequestHistory is printRequest with, for people, what h says (nil: nothing).
func (e *cliEnv) printRequestHistory(req *ajar.Request, h *history, format outputFormat) error {
	if format == outputJSON {
		return writeJSON(e.stdout, forJSON(req))
	}
	now := e.now()
	tw := newTable(e.stdout)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("ID", clean(req.ID))
	row("Target", clean(req.Target))
	row("Requester", clean(req.Requester))
	row("State", clean(string(req.State)))
	if req.EndReason != "" {
		row("End reason", clean(string(req.EndReason)))
	}
	if h != nil {
		if h.breakglass != "" {
			row("Break-glass", h.breakglass)
		}
		if h.approvedBy != "" {
			row("Approved by", h.approvedBy)
		}
		if h.revokedBy != "" {
			row("Revoked by", h.revokedBy)
		}
	}
	row("Reason", orDash(req.Reason))
	if req.Ticket != "" {
		row("Ticket", clean(req.Ticket))
	}
	row("Duration", fmtDuration(req.Duration))
	if len(req.Params) > 0 {
		keys := make([]string, 0, len(req.Params))
		for k := range req.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			keys[i] = clean(k) + "=" + clean(req.Params[k])
		}
		row("Params", strings.Join(keys, " "))
	}
	row("Policy", orDash(req.Policy))
	row("Created", e.fmtTime(req.CreatedAt))
	if req.StartAt != nil {
		row("Start", e.fmtTimePtr(req.StartAt)+" ("+relative(*req.StartAt, now)+")")
		if req.ExpiresAt == nil && waiting(req.State) {
			row("End", e.fmtTime(req.StartAt.Add(req.Duration)))
		}
	}
	if req.State == ajar.StatePending && !req.ApprovalDeadline.IsZero() {
		row("Decide by", e.fmtTime(req.ApprovalDeadline)+" ("+relative(req.ApprovalDeadline, now)+")")
	}
	if req.ActivatedAt != nil {
		row("Activated", e.fmtTimePtr(req.ActivatedAt))
	}
	if req.ExpiresAt != nil {
		if req.EndedAt == nil && req.State != ajar.StateRevoking { // a revoked request no longer expires
			row("Expires", e.fmtTimePtr(req.ExpiresAt)+" ("+relative(*req.ExpiresAt, now)+")")
		} else if req.State == ajar.StateExpired {
			row("Expired", e.fmtTimePtr(req.ExpiresAt))
		}
	}
	if req.EndedAt != nil {
		row("Ended", e.fmtTimePtr(req.EndedAt))
	}
	if req.LastError != "" {
		row("Last error", clean(req.LastError)+fmt.Sprintf(" (after %d attempts)", req.Attempts))
	}
	if len(req.Approvals) == 0 {
		row("Approvals", "none")
	} else {
		row("Approvals", strconv.Itoa(len(req.Approvals)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(req.Approvals) > 0 {
		tw = newTable(e.stdout)
		for _, a := range req.Approvals {
			fmt.Fprintf(tw, "  %s\t%s\tstep %d\t%s\t%s\n",
				clean(a.Decision), clean(a.Approver), a.Step+1, e.fmtTime(a.At), orDash(a.Comment))
		}
		return tw.Flush()
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// printRequests prints a list of requests: a table, or a JSON array.
func (e *cliEnv) printRequests(reqs []*ajar.Request, format outputFormat) error {
	if format == outputJSON {
		out := make([]*ajar.Request, 0, len(reqs))
		for _, r := range reqs {
			out = append(out, forJSON(r))
		}
		return writeJSON(e.stdout, out)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "ID\tTARGET\tREQUESTER\tSTATE\tCREATED\tSTART\tEXPIRES")
	for _, r := range reqs {
		start, end := r.StartAt, r.ExpiresAt
		if r.ActivatedAt != nil {
			start = r.ActivatedAt
		}
		if end == nil && r.StartAt != nil && waiting(r.State) {
			end = ptr(r.StartAt.Add(r.Duration)) // scheduled: when it will end
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			orDash(r.ID), orDash(r.Target), orDash(r.Requester), orDash(string(r.State)),
			e.fmtTime(r.CreatedAt), e.fmtTimePtr(start), e.fmtTimePtr(end))
	}
	return tw.Flush()
}

// printTargets prints the targets a user may request.
func (e *cliEnv) printTargets(targets []readmodel.TargetInfo, format outputFormat) error {
	if format == outputJSON {
		if targets == nil {
			targets = []readmodel.TargetInfo{}
		}
		return writeJSON(e.stdout, targets)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "NAME\tPROVIDER\tPOLICY\tDEFAULT\tMAX\tAPPROVAL")
	for _, t := range targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			orDash(t.Name), orDash(t.Provider), orDash(t.Policy),
			orDash(t.DefaultDuration), orDash(t.MaxDuration), approvalSummary(t))
	}
	return tw.Flush()
}

// approvalSummary is who must approve: "1 of group:sre; 2 of alice,bob", with the
// auto-approve condition if there is one.
func approvalSummary(t readmodel.TargetInfo) string {
	var parts []string
	for _, s := range t.Steps {
		parts = append(parts, fmt.Sprintf("%d of %s", s.Count, strings.Join(s.Approvers, ",")))
	}
	out := strings.Join(parts, "; ")
	if out == "" {
		out = "none"
	}
	if t.AutoApprove != "" {
		out += " (auto if " + t.AutoApprove + ")"
	}
	return clean(out)
}

// auditPrinter prints audit events page by page, so a long log is never held in memory.
type auditPrinter struct {
	e      *cliEnv
	w      io.Writer
	format outputFormat
	n      int
}

func (p *auditPrinter) page(events []ajar.AuditEvent) error {
	if p.format == outputJSON {
		for _, ev := range events {
			b, err := json.MarshalIndent(ev, "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if p.n == 0 {
				sep = "[\n  "
			}
			if _, err := fmt.Fprintf(p.w, "%s%s", sep, b); err != nil {
				return err
			}
			p.n++
		}
		return nil
	}
	tw := newTable(p.w)
	if p.n == 0 {
		fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tSUBJECT\tDETAILS")
	}
	for _, ev := range events {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n",
			ev.Seq, p.e.fmtTime(ev.Time), orDash(ev.Actor), orDash(ev.Action), orDash(ev.Subject), orDash(detailsForPeople(ev.Details)))
		p.n++
	}
	return tw.Flush()
}

func (p *auditPrinter) finish() error {
	if p.format != outputJSON {
		if p.n == 0 {
			return p.page(nil) // the header, so scripts see the columns
		}
		return nil
	}
	if p.n == 0 {
		_, err := io.WriteString(p.w, "[]\n")
		return err
	}
	_, err := io.WriteString(p.w, "\n]\n")
	return err
}

// detailsForPeople is an audit event's details on one line as people read
// them: "<" rather than "\u003c", numbers exactly as stored (a certificate
// serial is not a float), an approval step 1-based as in every table (the log
// itself keeps the 0-based index), and durations as people type them. Details that are not a JSON
// object are compacted as they are.
func detailsForPeople(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if len(raw) == 0 || dec.Decode(&m) != nil || m == nil {
		return compact(raw)
	}
	if n, ok := m["step"].(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			m["step"] = i + 1
		}
	}
	for _, k := range []string{"duration", "by"} { // "30m", not "30m0s"
		if v, ok := m[k].(string); ok {
			if d, err := time.ParseDuration(v); err == nil {
				m[k] = fmtDuration(d)
			}
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(m) != nil {
		return compact(raw)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// compact returns JSON details on one line.
func compact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
