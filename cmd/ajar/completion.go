package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/readmodel"
)

// Dynamic shell completion ("ajar completion bash|zsh|fish" prints the
// script): target names, request ids and --state values. Names and ids come
// from the server with the user's token; when it cannot be reached (offline,
// no token) there are simply no suggestions, quickly and without a word.

// completionTimeout bounds the one server call a completion makes, so a tab
// press never hangs on a server that does not answer.
const completionTimeout = 3 * time.Second

// completionPageSize is how many requests a completion lists: the newest.
const completionPageSize = 100

// addCompletions registers the completions on the commands of root that take
// a target or a request id, and the --state flags.
func addCompletions(e *cliEnv, root *cobra.Command) {
	targets := []string{"request", "ssh", "explain", "breakglass"}
	ids := map[string][]ajar.State{ // the states worth suggesting, nil for any
		"approve":     {ajar.StatePending},
		"deny":        {ajar.StatePending},
		"cancel":      {ajar.StatePending, ajar.StateApproved},
		"revoke":      {ajar.StateActive, ajar.StateApproved},
		"extend":      {ajar.StateActive},
		"ssh-cert":    {ajar.StateActive},
		"credentials": {ajar.StateActive},
		"show":        nil,
		"evidence":    nil,
		"review":      nil,
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		name := c.Name()
		switch states, isID := ids[name]; {
		case contains(targets, name) && c.Parent() == root:
			c.ValidArgsFunction = e.completeFirstArg(func(ctx context.Context) []string { return e.targetNames(ctx) })
		case isID:
			c.ValidArgsFunction = e.completeFirstArg(func(ctx context.Context) []string { return e.requestIDs(ctx, states) })
		}
		if f := c.Flags().Lookup("state"); f != nil {
			values := make([]string, len(ajar.States))
			for i, s := range ajar.States {
				values[i] = string(s)
			}
			if name == "reviews" {
				values = []string{"open", "closed", "all"}
			}
			_ = c.RegisterFlagCompletionFunc("state", func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
				return e.suggest(cmd, prefix, func(context.Context) []string { return values })
			})
		}
		if f := c.Flags().Lookup("request"); f != nil && name == "audit" {
			_ = c.RegisterFlagCompletionFunc("request", func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
				return e.suggest(cmd, prefix, func(ctx context.Context) []string { return e.requestIDs(ctx, nil) })
			})
		}
		if f := c.Flags().Lookup("target"); f != nil && name == "audit" {
			_ = c.RegisterFlagCompletionFunc("target", func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
				return e.suggest(cmd, prefix, func(ctx context.Context) []string { return e.targetNames(ctx) })
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// completeFirstArg suggests what list returns for a command's first argument,
// and nothing after it (nor file names).
func (e *cliEnv) completeFirstArg(list func(context.Context) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return e.suggest(cmd, prefix, list)
	}
}

// suggest calls list with a short deadline and keeps what starts with prefix.
func (e *cliEnv) suggest(cmd *cobra.Command, prefix string, list func(context.Context) []string) ([]string, cobra.ShellCompDirective) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	var out []string
	for _, s := range list(ctx) {
		// Only plain names and ids: nothing that could confuse the shell.
		if strings.HasPrefix(s, prefix) && s != "" && !strings.ContainsFunc(s, func(r rune) bool { return unsafeRune(r) || r == ' ' }) {
			out = append(out, s)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// quietClient is the API client for completions: no warnings on stderr (the
// shell would print them over the command line).
func (e *cliEnv) quietClient() (*api.Client, error) {
	q := *e
	q.stderr = io.Discard
	return q.client(true)
}

// targetNames returns the targets the user may request, or nil.
func (e *cliEnv) targetNames(ctx context.Context) []string {
	c, err := e.quietClient()
	if err != nil {
		return nil
	}
	ts, err := c.Targets(ctx)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		names = append(names, t.Name)
	}
	return names
}

// requestIDs returns the ids of the newest requests the user can see in one
// of states (any when nil), or nil.
func (e *cliEnv) requestIDs(ctx context.Context, states []ajar.State) []string {
	c, err := e.quietClient()
	if err != nil {
		return nil
	}
	in := readmodel.ListInput{Limit: completionPageSize}
	if len(states) == 1 {
		in.State = states[0]
	}
	page, err := c.ListRequests(ctx, in)
	if err != nil {
		return nil
	}
	var ids []string
	for _, r := range page.Requests {
		if states == nil || contains(stateStrings(states), string(r.State)) {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func stateStrings(states []ajar.State) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}
