package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/readmodel"
)

func newRequestCmd(e *cliEnv) *cobra.Command {
	var (
		in      ajar.CreateInput
		start   string
		params  []string
		wait    bool
		timeout time.Duration
		out     outputFormat
	)
	cmd := &cobra.Command{
		Use:   "request TARGET --for DURATION --reason TEXT",
		Short: "Ask for access to a target",
		Long: `Ask for access to TARGET for a while. The policy decides whether it needs approval.
With --wait, wait until the access is active (or the request ends) and exit non-zero
unless it became active.`,
		Example: `  ajar request prod-web --for 30m --reason "deploy hotfix" --ticket OPS-42 --wait
  ajar request bastion-22 --for 1h --reason "debug" --param source_ip=203.0.113.7`,
		Args: argNames("TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Target = args[0]
			if cmd.Flags().Changed("for") && strings.TrimSpace(in.Duration) == "" {
				return usageErrorf("--for", "must not be empty (a duration such as 30m)")
			}
			if start != "" {
				t, err := parseStart(start, e.now()) // workflow.go: RFC 3339 or HH:MM
				if err != nil {
					return err
				}
				in.Start = &t
			}
			var err error
			if in.Params, err = parseParams(params); err != nil {
				return err
			}
			if cmd.Flags().Changed("timeout") && !wait {
				return usageErrorf("--timeout", "only applies with --wait")
			}
			if timeout <= 0 {
				return usageErrorf("--timeout", "must be positive, got %s", fmtDuration(timeout))
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			req, err := c.CreateRequest(cmd.Context(), in)
			if err != nil {
				return err
			}
			if !wait {
				return e.printRequest(req, out)
			}
			req, waitErr := e.waitActive(cmd.Context(), c, req, timeout)
			if req != nil {
				if err := e.printRequest(req, out); err != nil {
					return err
				}
			}
			return waitErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Duration, "for", "", "how long the access lasts, such as 30m or 2h (default: the policy's default)")
	f.StringVar(&in.Reason, "reason", "", "why you need the access")
	f.StringVar(&in.Ticket, "ticket", "", "ticket or incident id")
	f.StringVar(&start, "start", "", "when the access should start: RFC 3339, or HH:MM local time (default: once approved)")
	f.StringArrayVar(&params, "param", nil, "target parameter as KEY=VALUE, such as source_ip=203.0.113.7 (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait until the access is active or the request ends")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits")
	addOutputFlag(cmd, &out)
	return cmd
}

// parseParams turns repeated --param KEY=VALUE flags into a map.
func parseParams(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	params := make(map[string]string, len(flags))
	for _, p := range flags {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageErrorf("--param", "must be KEY=VALUE, got %q", p)
		}
		if _, dup := params[k]; dup {
			return nil, usageErrorf("--param", "%q is given more than once", k)
		}
		params[k] = v
	}
	return params, nil
}

// waiting reports whether a request may still become active.
func waiting(s ajar.State) bool { return s == ajar.StatePending || s == ajar.StateApproved }

// waitActive polls the request until it is no longer pending or approved, printing
// each state it sees to stderr. It returns the last request it saw, and an error
// unless that request is active.
func (e *cliEnv) waitActive(ctx context.Context, c *api.Client, req *ajar.Request, timeout time.Duration) (*ajar.Request, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fmt.Fprintf(e.stderr, "request %s: %s\n", clean(req.ID), clean(string(req.State)))
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	for waiting(req.State) {
		select {
		case <-wctx.Done():
		case <-tick.C:
		}
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return req, ctx.Err()
			}
			return req, fmt.Errorf("gave up after %s waiting for request %s, still %s", fmtDuration(timeout), clean(req.ID), req.State)
		}
		next, err := c.GetRequest(wctx, req.ID)
		if err != nil {
			if wctx.Err() != nil {
				continue // reported at the top of the loop
			}
			return nil, fmt.Errorf("check request %s: %w", clean(req.ID), err)
		}
		if next.State != req.State {
			fmt.Fprintf(e.stderr, "request %s: %s\n", clean(next.ID), clean(string(next.State)))
		}
		req = next
	}
	if req.State != ajar.StateActive {
		msg := fmt.Sprintf("request %s ended %s, not active", clean(req.ID), clean(string(req.State)))
		if req.LastError != "" {
			msg += ": " + clean(req.LastError)
		}
		return req, errors.New(msg)
	}
	return req, nil
}

func newRequestsCmd(e *cliEnv) *cobra.Command {
	var (
		in         readmodel.ListInput
		state      string
		awaitingMe bool
		orphaned   bool
		out        outputFormat
	)
	cmd := &cobra.Command{
		Use:   "requests [--mine] [--state STATE] [--limit N] [--cursor C] | --awaiting-me | --orphaned",
		Short: "List the requests you can see, newest first",
		Long: "List the requests you can see, newest first: all of them, or with --limit one page\n" +
			"of at most N, after which the command that shows the next page is printed on stderr.",
		Args: argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if orphaned {
				for _, f := range []string{"mine", "state", "limit", "cursor", "awaiting-me"} {
					if cmd.Flags().Changed(f) {
						return usageErrorf("--"+f, "does not go with --orphaned")
					}
				}
				c, err := e.client(true)
				if err != nil {
					return err
				}
				orphans, err := c.Orphans(cmd.Context())
				if err != nil {
					return err
				}
				return e.printOrphans(orphans, out)
			}
			if awaitingMe {
				for _, f := range []string{"mine", "state", "limit", "cursor"} {
					if cmd.Flags().Changed(f) {
						return usageErrorf("--"+f, "does not go with --awaiting-me")
					}
				}
				c, err := e.client(true)
				if err != nil {
					return err
				}
				items, err := c.Inbox(cmd.Context())
				if err != nil {
					return err
				}
				return e.printAwaiting(items, out) // awaiting.go
			}
			in.State = ajar.State(state)
			if state != "" && !in.State.Valid() {
				return usageErrorf("--state", "unknown state %q (one of: %s)", state, stateNames())
			}
			if in.Limit < 0 || in.Limit > readmodel.MaxListLimit {
				return usageErrorf("--limit", "must be between 1 and %d", readmodel.MaxListLimit)
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			if in.Limit == 0 {
				reqs, err := c.AllRequests(cmd.Context(), in)
				if err != nil {
					return err
				}
				return e.printRequests(reqs, out)
			}
			page, err := c.ListRequests(cmd.Context(), in)
			if err != nil {
				return err
			}
			if err := e.printRequests(page.Requests, out); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(e.stderr, "more: ajar requests%s --limit %d --cursor %s\n", listFlags(in), in.Limit, clean(page.NextCursor))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&in.Mine, "mine", false, "only your own requests")
	cmd.Flags().BoolVar(&awaitingMe, "awaiting-me", false, "only the requests and extensions waiting for your approval now")
	cmd.Flags().BoolVar(&orphaned, "orphaned", false, "admins: open requests whose requester lost the right to them (left a group, removed from the policy)")
	cmd.Flags().StringVar(&state, "state", "", "only requests in this state ("+stateNames()+")")
	cmd.Flags().IntVar(&in.Limit, "limit", 0, fmt.Sprintf("show one page of at most this many (1 to %d); default: all", readmodel.MaxListLimit))
	cmd.Flags().StringVar(&in.Cursor, "cursor", "", "start where the page before ended (printed after it with --limit)")
	addOutputFlag(cmd, &out)
	return cmd
}

// listFlags repeats the filter flags of in, for the "more:" hint.
func listFlags(in readmodel.ListInput) string {
	var b strings.Builder
	if in.Mine {
		b.WriteString(" --mine")
	}
	if in.State != "" {
		b.WriteString(" --state " + string(in.State))
	}
	return b.String()
}

func stateNames() string {
	names := make([]string, len(ajar.States))
	for i, s := range ajar.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func newShowCmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a request with its approvals, and its extension waiting for approval",
		Args:  argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			req, err := c.GetRequest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			rv, err := pendingExtension(cmd.Context(), c, req) // awaiting.go
			if err != nil {
				return err
			}
			var h *history
			if out != outputJSON {
				if h, err = requestHistory(cmd.Context(), c, req); err != nil { // show.go
					return err
				}
			}
			return e.printShown(req, rv, h, out)
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newApproveCmd(e *cliEnv) *cobra.Command {
	var comment string
	cmd := e.actionCmd("approve", "Approve a pending request", func(ctx context.Context, c *api.Client, id string) (*ajar.Request, error) {
		return c.Approve(ctx, id, comment)
	})
	cmd.Flags().StringVar(&comment, "comment", "", "a note kept with your approval")
	return cmd
}

func newDenyCmd(e *cliEnv) *cobra.Command {
	var reason string
	cmd := e.actionCmd("deny", "Deny a pending request", func(ctx context.Context, c *api.Client, id string) (*ajar.Request, error) {
		return c.Deny(ctx, id, reason)
	})
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if strings.TrimSpace(reason) == "" {
			return usageErrorf("--reason", "a reason is required to deny a request")
		}
		return nil
	}
	cmd.Use += " --reason TEXT"
	cmd.Flags().StringVar(&reason, "reason", "", "why the request is denied (required)")
	return cmd
}

func newRevokeCmd(e *cliEnv) *cobra.Command {
	return e.actionCmd("revoke", "End active access early", func(ctx context.Context, c *api.Client, id string) (*ajar.Request, error) {
		return c.Revoke(ctx, id)
	})
}

func newCancelCmd(e *cliEnv) *cobra.Command {
	return e.actionCmd("cancel", "Withdraw a request that has not been granted", func(ctx context.Context, c *api.Client, id string) (*ajar.Request, error) {
		return c.Cancel(ctx, id)
	})
}

// actionCmd builds "VERB ID": it calls fn and prints the resulting request.
func (e *cliEnv) actionCmd(verb, short string, fn func(context.Context, *api.Client, string) (*ajar.Request, error)) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			req, err := fn(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			return e.printRequest(req, out)
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}
