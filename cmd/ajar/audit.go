package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/readmodel"
)

// auditSearchFlags are the flags that make "ajar audit" a search (newest
// first, one page) rather than a listing of the log in seq order.
var auditSearchFlags = []string{"user", "target", "action", "since", "until", "before"}

func newAuditCmd(e *cliEnv) *cobra.Command {
	var (
		request, user, target, action, since, until string
		before                                      int64
		limit                                       int
		out                                         outputFormat
	)
	cmd := &cobra.Command{
		Use:   "audit [--request ID] [--user U] [--target T] [--action A] [--since T] [--until T] [--limit N]",
		Short: "List audit events (all of them, or one request's), or search them",
		Long: `Without a search flag, list audit events oldest first: the whole log (admins) or
one request's events (--request).

With any of --user, --target, --action, --since, --until or --before, search:
print one page of the matching events, newest first, and on stderr the command
for the next (older) page when there is one. --user matches the event's actor
or the requester of the request it is about; --action is one action
(request.approved) or every action a prefix ending in a dot names (request.).
--since and --until take an RFC 3339 time (2026-01-02T15:04:05Z) or a duration
meaning that long ago (24h, 90m, 7d). --limit is the page size (the server's
default 200, at most 1000 a page). Admins search the whole log; anyone else the
events of the requests they can see.`,
		Example: `  ajar audit --user alice@example.com --since 24h
  ajar audit --target prod-db --action request. --limit 50
  ajar audit --request req_abc123 -o json`,
		Args: argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			for name, v := range map[string]string{"request": request, "user": user, "target": target, "action": action} {
				if flags.Changed(name) && strings.TrimSpace(v) == "" {
					return usageErrorf("--"+name, "must not be empty")
				}
			}
			search := false
			for _, name := range auditSearchFlags {
				search = search || flags.Changed(name)
			}
			if !search {
				if flags.Changed("limit") {
					return usageErrorf("--limit", "sizes a search's page: add --user, --target, --action, --since, --until or --before")
				}
				return listAudit(cmd, e, request, out)
			}
			q := readmodel.AuditQuery{Request: request, User: user, Target: target, Action: action, Before: before, Limit: limit}
			var err error
			if q.From, err = auditTime(e, "--since", since); err != nil {
				return err
			}
			if q.To, err = auditTime(e, "--until", until); err != nil {
				return err
			}
			switch {
			case !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To):
				return usageErrorf("--until", "must be after --since")
			case flags.Changed("before") && before <= 0:
				return usageErrorf("--before", "must be a positive seq (the last seq of the previous page)")
			case flags.Changed("limit") && (limit <= 0 || limit > api.MaxAuditLimit):
				return usageErrorf("--limit", "must be between 1 and %d", api.MaxAuditLimit)
			}
			return searchAudit(cmd, e, q, out)
		},
	}
	cmd.Flags().StringVar(&request, "request", "", "only this request's events")
	cmd.Flags().StringVar(&user, "user", "", "search: events by this user or about their requests")
	cmd.Flags().StringVar(&target, "target", "", "search: events about requests for this target")
	cmd.Flags().StringVar(&action, "action", "", `search: this action ("request.approved") or prefix ("request.")`)
	cmd.Flags().StringVar(&since, "since", "", "search: events at or after this RFC 3339 time, or this long ago (24h, 7d)")
	cmd.Flags().StringVar(&until, "until", "", "search: events before this RFC 3339 time, or this long ago")
	cmd.Flags().Int64Var(&before, "before", 0, "search: events older than this seq (the next page)")
	cmd.Flags().IntVar(&limit, "limit", 0, "search: events per page (default 200, at most 1000 a page)")
	addOutputFlag(cmd, &out)
	return cmd
}

// listAudit prints the whole log, or one request's events, oldest first,
// page by page.
func listAudit(cmd *cobra.Command, e *cliEnv, request string, out outputFormat) error {
	c, err := e.client(true)
	if err != nil {
		return err
	}
	p := &auditPrinter{e: e, w: e.stdout, format: out}
	f := ajar.AuditFilter{Subject: request, Limit: api.MaxAuditLimit}
	for {
		events, err := c.Audit(cmd.Context(), f)
		if ae := (*ajar.Error)(nil); request == "" && errors.As(err, &ae) && ae.Code == ajar.EFORBIDDEN {
			return ajar.Errorf(ajar.EFORBIDDEN, "%s (to search the events of the requests you can see: ajar audit --since 24h, or --user, --target, --action)", ae.Message)
		}
		if err != nil {
			return err
		}
		if len(events) == 0 {
			break
		}
		last := events[len(events)-1].Seq
		if last <= f.AfterSeq {
			return fmt.Errorf("server returned audit events out of order (seq %d after %d)", last, f.AfterSeq)
		}
		f.AfterSeq = last
		if err := p.page(events); err != nil {
			return err
		}
	}
	return p.finish()
}

// searchAudit prints one page of a search, newest first, and on stderr the
// command that prints the next page when more events match.
func searchAudit(cmd *cobra.Command, e *cliEnv, q readmodel.AuditQuery, out outputFormat) error {
	c, err := e.client(true)
	if err != nil {
		return err
	}
	events, next, err := c.SearchAudit(cmd.Context(), q)
	if err != nil {
		return err
	}
	for i, ev := range events {
		if i > 0 && ev.Seq >= events[i-1].Seq || q.Before > 0 && ev.Seq >= q.Before {
			return fmt.Errorf("server returned audit events out of order (seq %d in a newest-first page)", ev.Seq)
		}
	}
	p := &auditPrinter{e: e, w: e.stdout, format: out}
	if err := p.page(events); err != nil {
		return err
	}
	if err := p.finish(); err != nil {
		return err
	}
	if next > 0 {
		if len(events) > 0 && next > events[len(events)-1].Seq || q.Before > 0 && next >= q.Before {
			return fmt.Errorf("server returned a next page (before %d) that does not go back", next)
		}
		q.Before = next
		fmt.Fprintf(e.stderr, "more events match; the next page: %s\n", auditSearchCommand(q, out))
	}
	return nil
}

// auditSearchCommand is the "ajar audit" command line of q, with times
// absolute (so "--since 24h" names the same events when run later) and
// values quoted for a POSIX shell.
func auditSearchCommand(q readmodel.AuditQuery, out outputFormat) string {
	parts := []string{"ajar", "audit"}
	add := func(flag, v string) {
		if v != "" {
			parts = append(parts, flag, shellWord(v))
		}
	}
	add("--request", q.Request)
	add("--user", q.User)
	add("--target", q.Target)
	add("--action", q.Action)
	if !q.From.IsZero() {
		add("--since", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		add("--until", q.To.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		add("--limit", strconv.Itoa(q.Limit))
	}
	add("--before", strconv.FormatInt(q.Before, 10))
	if out == outputJSON {
		add("-o", "json")
	}
	return strings.Join(parts, " ")
}

// shellWord returns s as one word for a POSIX shell, printable on a terminal:
// as it is when plain, else quoted (shellQuote).
func shellWord(s string) string {
	plain := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	})
	if plain {
		return s
	}
	return shellQuote(clean(s))
}

// auditTime parses --since or --until: an RFC 3339 time, or a duration ("24h",
// "90m", "7d") meaning that long before now. Empty is the zero time.
func auditTime(e *cliEnv, flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 100*366 {
			return time.Time{}, usageErrorf(flag, "%q is not an RFC 3339 time (2026-01-02T15:04:05Z) or a duration such as 24h or 7d", v)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			return time.Time{}, usageErrorf(flag, "%q is not an RFC 3339 time (2026-01-02T15:04:05Z) or a duration such as 24h or 7d", v)
		}
	}
	return e.now().Add(-d), nil
}
