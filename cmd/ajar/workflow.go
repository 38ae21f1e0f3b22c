package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/readmodel"
)

// workflowCommands returns extend, breakglass, reviews, review, explain and
// evidence.
func workflowCommands(e *cliEnv) []*cobra.Command {
	return []*cobra.Command{
		newExtendCmd(e), newBreakglassCmd(e), newReviewsCmd(e), newReviewCmd(e),
		newExplainCmd(e), newEvidenceCmd(e),
	}
}

func newExtendCmd(e *cliEnv) *cobra.Command {
	var (
		in  ajar.ExtendInput
		out outputFormat
	)
	cmd := &cobra.Command{
		Use:   "extend ID --by DURATION",
		Short: "Ask for more time on your active access",
		Long: `Extend your active request by --by, within the policy's extend rules (how many
extensions, how long in all). Unless the policy says extend.approval: none (or its
auto_approve condition holds for the whole window), the extension waits for the same
approval as a new request: approvers run "ajar approve ID" on the request. The access
stays active meanwhile, and new SSH certificates carry the new expiry once applied.`,
		Example: `  ajar extend req_abc --by 30m --reason "migration still running"`,
		Args:    argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(in.By) == "" {
				return usageErrorf("--by", "is required: how much longer, such as 30m")
			}
			if _, err := time.ParseDuration(in.By); err != nil {
				return usageErrorf("--by", "must be a duration such as 30m or 1h, got %q", in.By)
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			res, err := c.Extend(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			if out == outputJSON {
				res.Request = forJSON(res.Request)
				return writeJSON(e.stdout, res)
			}
			x := res.Extension
			switch x.State {
			case ajar.ExtensionApplied:
				fmt.Fprintf(e.stderr, "extended by %s: access now ends %s\n", fmtDuration(x.By), e.fmtTimePtr(res.Request.ExpiresAt))
			default:
				fmt.Fprintf(e.stderr, "extension %d by %s is waiting for approval (approvers: ajar approve %s)\n", x.Seq, fmtDuration(x.By), clean(res.Request.ID))
			}
			return e.printRequest(res.Request, out)
		},
	}
	cmd.Flags().StringVar(&in.By, "by", "", "how much longer, such as 30m (required)")
	cmd.Flags().StringVar(&in.Reason, "reason", "", "why you need more time")
	addOutputFlag(cmd, &out)
	return cmd
}

func newBreakglassCmd(e *cliEnv) *cobra.Command {
	var (
		in     ajar.CreateInput
		params []string
		out    outputFormat
	)
	cmd := &cobra.Command{
		Use:   "breakglass TARGET --reason TEXT --for DURATION",
		Short: "Emergency access now, without approval (alerts at once, leaves a review)",
		Long: `Take access to TARGET at once, without waiting for approval, where the policy's
breakglass section allows you. It alerts the notification sinks at once and opens a
review task that an admin must close ("ajar review ID --comment ...").`,
		Example: `  ajar breakglass prod-web --for 30m --reason "INC-42: site down, on-call unreachable"`,
		Args:    argNames("TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Target = args[0]
			if strings.TrimSpace(in.Reason) == "" {
				return usageErrorf("--reason", "is required for break-glass: say what the emergency is")
			}
			var err error
			if in.Params, err = parseParams(params); err != nil {
				return err
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			req, err := c.Breakglass(cmd.Context(), in)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "break-glass: access is %s; this was announced and an admin will review it\n", clean(string(req.State)))
			return e.printRequest(req, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Duration, "for", "", "how long, such as 30m (default: the policy's default)")
	f.StringVar(&in.Reason, "reason", "", "the emergency (required)")
	f.StringVar(&in.Ticket, "ticket", "", "ticket or incident id")
	f.StringArrayVar(&params, "param", nil, "target parameter as KEY=VALUE (repeatable)")
	addOutputFlag(cmd, &out)
	return cmd
}

func newReviewsCmd(e *cliEnv) *cobra.Command {
	var (
		state string
		out   outputFormat
	)
	cmd := &cobra.Command{
		Use:   "reviews [--state open|closed|all]",
		Short: "List break-glass reviews (admins)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch state {
			case "open", "closed", "all":
			default:
				return usageErrorf("--state", "must be open, closed or all, got %q", state)
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			rs, err := c.Reviews(cmd.Context(), state)
			if err != nil {
				return err
			}
			if out == outputJSON {
				if rs == nil {
					rs = []ajar.ReviewTask{}
				}
				return writeJSON(e.stdout, rs)
			}
			tw := newTable(e.stdout)
			fmt.Fprintln(tw, "REQUEST\tTARGET\tUSED BY\tOPENED\tCLOSED BY\tREASON")
			for _, r := range rs {
				closed := "open"
				if r.ClosedAt != nil {
					closed = orDash(r.ClosedBy)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(r.RequestID), orDash(r.Target), orDash(r.Requester),
					e.fmtTime(r.OpenedAt), closed, orDash(r.Reason))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "state", "open", "open, closed or all")
	addOutputFlag(cmd, &out)
	return cmd
}

func newReviewCmd(e *cliEnv) *cobra.Command {
	var (
		comment string
		out     outputFormat
	)
	cmd := &cobra.Command{
		Use:   "review ID --comment TEXT",
		Short: "Close the review of a break-glass request (admins)",
		Args:  argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(comment) == "" {
				return usageErrorf("--comment", "is required: what you checked")
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			rv, err := c.CloseReview(cmd.Context(), args[0], comment)
			if err != nil {
				return err
			}
			if out == outputJSON {
				return writeJSON(e.stdout, rv)
			}
			fmt.Fprintf(e.stdout, "review of %s closed by %s at %s\n", clean(rv.RequestID), clean(rv.ClosedBy), e.fmtTimePtr(rv.ClosedAt))
			return nil
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "what you checked (required)")
	addOutputFlag(cmd, &out)
	return cmd
}

func newExplainCmd(e *cliEnv) *cobra.Command {
	var (
		in     readmodel.ExplainInput
		start  string
		params []string
		out    outputFormat
	)
	cmd := &cobra.Command{
		Use:   "explain TARGET [--as USER] [--for DURATION]",
		Short: "Dry run: which rule applies, whether it would be approved, who approves",
		Long: `Show what the policy would do with a request, without creating anything: the rule that
applies, each limit and condition with its value, whether it would be approved at
once, denied or wait for approval, who could approve each step, and the limits.
--as explains it for another user (admins only).`,
		Example: `  ajar explain prod-web --for 2h --reason "deploy" --ticket OPS-1
  ajar explain prod-web --as alice@example.com`,
		Args: argNames("TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Target = args[0]
			if start != "" {
				t, err := parseStart(start, e.now())
				if err != nil {
					return err
				}
				in.Start = &t
			}
			var err error
			if in.Params, err = parseParams(params); err != nil {
				return err
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			ex, err := c.Explain(cmd.Context(), in)
			if err != nil {
				return err
			}
			if out == outputJSON {
				return writeJSON(e.stdout, ex)
			}
			return printExplanation(e.stdout, ex)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.As, "as", "", "explain for this user instead of you (admins only)")
	f.StringVar(&in.Duration, "for", "", "the duration to ask for (default: the policy's default)")
	f.StringVar(&in.Reason, "reason", "", "the reason to give")
	f.StringVar(&in.Ticket, "ticket", "", "the ticket to give")
	f.StringVar(&start, "start", "", "a start time: RFC 3339, or HH:MM local time")
	f.StringArrayVar(&params, "param", nil, "target parameter as KEY=VALUE (repeatable)")
	addOutputFlag(cmd, &out)
	return cmd
}

// printExplanation prints an explanation for people.
func printExplanation(w io.Writer, ex *policy.Explanation) error {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Target", clean(ex.Target))
	row("User", clean(ex.User))
	var rules []string
	for _, r := range ex.Rules {
		mark := "not a requester"
		switch {
		case r.Chosen:
			mark = "applies"
		case r.Requester:
			mark = "not consulted (an earlier rule applies)"
		}
		rules = append(rules, clean(r.Name)+" ("+mark+")")
	}
	row("Rules", orDash(strings.Join(rules, "; ")))
	row("Outcome", clean(ex.Outcome))
	row("Why", clean(ex.Summary))
	if len(ex.Missing) > 0 {
		row("Missing", clean(strings.Join(ex.Missing, ", ")))
	}
	if ex.Error != nil {
		msg := clean(ex.Error.Message)
		if ex.Error.Field != "" {
			msg += " (field: " + clean(ex.Error.Field) + ")"
		}
		row("Error", msg)
	}
	if l := ex.Limits; l != nil {
		lim := "default " + l.DefaultDuration + ", max " + l.MaxDuration
		if l.MinDuration != "" {
			lim += ", min " + l.MinDuration
		}
		row("Duration", clean(ex.Duration)+" ("+clean(lim)+")")
		reason := "optional"
		if l.RequireReason {
			reason = "required"
		}
		row("Reason", reason)
		if l.TicketPattern != "" {
			row("Ticket", "required, matching "+clean(l.TicketPattern))
		}
		row("Approval timeout", clean(l.ApprovalTimeout))
		if l.MaxExtensions > 0 {
			row("Extensions", fmt.Sprintf("up to %d, %s in all (approval: %s)", l.MaxExtensions, clean(l.MaxTotal), clean(l.ExtendApproval)))
		} else {
			row("Extensions", "none")
		}
	}
	if ex.Breakglass != "" {
		row("Break-glass", "allowed for you under policy "+clean(ex.Breakglass))
	} else {
		row("Break-glass", "not allowed for you")
	}
	for _, w := range ex.Warnings {
		row("Warning", clean(w))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ex.Checks) > 0 {
		fmt.Fprintln(w, "\nChecks:")
		tw = newTable(w)
		for _, c := range ex.Checks {
			status := "ok"
			if !c.OK {
				status = "FAIL"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", status, clean(c.Check), orDash(c.Message))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(ex.Conditions) > 0 {
		fmt.Fprintln(w, "\nConditions:")
		tw = newTable(w)
		for _, c := range ex.Conditions {
			val := fmt.Sprint(c.Value)
			if c.Error != "" {
				val = "error: " + clean(c.Error)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", clean(c.Name()), val, clean(c.Expr), orDash(c.Message))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(ex.Steps) > 0 {
		fmt.Fprintln(w, "\nApproval steps:")
		for i, st := range ex.Steps {
			line := fmt.Sprintf("  %d. %d of %s: %s", i+1, st.Count, clean(strings.Join(st.Approvers, ", ")), orDash(strings.Join(st.Eligible, ", ")))
			if st.EscalateAfter != "" {
				line += fmt.Sprintf(" (after %s also %s)", clean(st.EscalateAfter), clean(strings.Join(st.EscalateTo, ", ")))
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

// evidenceFormat is -o for evidence: markdown (the default) or json.
type evidenceFormat string

func (o *evidenceFormat) String() string { return string(*o) }
func (o *evidenceFormat) Type() string   { return "format" }
func (o *evidenceFormat) Set(v string) error {
	switch v {
	case "markdown", "json":
		*o = evidenceFormat(v)
		return nil
	}
	return errors.New(`must be "markdown" or "json"`)
}

func newEvidenceCmd(e *cliEnv) *cobra.Command {
	out := evidenceFormat("markdown")
	cmd := &cobra.Command{
		Use:   "evidence ID [-o markdown|json]",
		Short: "The full story of one request, for an auditor",
		Long: `Print the evidence for one request: the request and its reason, each approval with who
and when, break-glass and its review, extensions, the grant and the provider's handle,
the certificates issued and sessions reported, the end and the provider's confirmation
that the access is gone, and the request's audit events with their hashes and a signed
checkpoint that covers them (admins).`,
		Args: argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			if out == "json" {
				ev, err := c.Evidence(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return writeJSON(e.stdout, ev)
			}
			text, err := c.EvidenceMarkdown(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			// Markdown for a terminal: escape control characters, keep lines.
			for _, line := range strings.SplitAfter(text, "\n") {
				nl := strings.HasSuffix(line, "\n")
				io.WriteString(e.stdout, clean(strings.TrimSuffix(line, "\n")))
				if nl {
					io.WriteString(e.stdout, "\n")
				}
			}
			return nil
		},
	}
	cmd.Flags().VarP(&out, "output", "o", `output format: "markdown" or "json"`)
	return cmd
}

// parseStart reads --start: an RFC 3339 time, or HH:MM in local time, meaning
// the next such time (today, or tomorrow once it has passed).
func parseStart(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	hm, err := time.ParseInLocation("15:04", s, now.Location())
	if err != nil {
		return time.Time{}, usageErrorf("--start", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z or HH:MM local time, got %q", s)
	}
	t := time.Date(now.Year(), now.Month(), now.Day(), hm.Hour(), hm.Minute(), 0, 0, now.Location())
	if t.Before(now.Add(-time.Minute)) {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}
