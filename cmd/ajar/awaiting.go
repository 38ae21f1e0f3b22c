package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/reconcile"
)

// What waits for a decision: ajar requests --awaiting-me, and a pending
// extension in ajar show.

// printAwaiting prints the inbox items the caller may decide on now: a table,
// or the JSON array of reviews.
func (e *cliEnv) printAwaiting(items []readmodel.Review, format outputFormat) error {
	mine := []readmodel.Review{}
	for _, it := range items {
		if it.CanApprove || it.CanDeny {
			mine = append(mine, it)
		}
	}
	if format == outputJSON {
		return writeJSON(e.stdout, mine)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "ID\tTARGET\tREQUESTER\tDECIDE\tSTEP\tWAITING SINCE")
	for _, it := range mine {
		r := it.Request
		what, since := "request for "+fmtDuration(r.Duration), r.CreatedAt
		if x := it.Extension; x != nil {
			what, since = "extension +"+fmtDuration(x.By), x.RequestedAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(r.ID), orDash(r.Target), orDash(r.Requester),
			what, stepSummary(it), e.fmtTime(since))
	}
	return tw.Flush()
}

// stepSummary is "1 of 2: 0/1 from group:sre", or "-" when no step waits.
func stepSummary(it readmodel.Review) string {
	if it.Steps == 0 || it.Step >= it.Steps {
		return "-"
	}
	return clean(fmt.Sprintf("%d of %d: %d/%d from %s", it.Step+1, it.Steps, it.Approved, it.Count, strings.Join(it.Approvers, ",")))
}

// pendingExtension returns the extension of active request req waiting for
// approval, with what the caller may do about it, or nil. A server without
// the decision route has nothing to say (nil, nil).
func pendingExtension(ctx context.Context, c *api.Client, req *ajar.Request) (*readmodel.Review, error) {
	if req.State != ajar.StateActive {
		return nil, nil
	}
	rv, err := c.Decision(ctx, req.ID)
	switch {
	case ajar.ErrorCode(err) == ajar.ENOTFOUND:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("check request %s for a pending extension: %w", clean(req.ID), err)
	case rv.Extension == nil || rv.Extension.State != ajar.ExtensionPending:
		return nil, nil
	}
	return rv, nil
}

// printShown prints a request for ajar show with its pending extension (rv,
// nil for none): in JSON as "pending_extension" (the extension, with
// "can_approve", "can_deny" and "blocked" for the caller), for people as rows
// after the request's.
func (e *cliEnv) printShown(req *ajar.Request, rv *readmodel.Review, h *history, format outputFormat) error {
	if rv == nil {
		return e.printRequestHistory(req, h, format)
	}
	if format == outputJSON {
		b, err := json.Marshal(forJSON(req))
		if err != nil {
			return err
		}
		ext, err := json.Marshal(*rv.Extension)
		for _, f := range []struct {
			key string
			val any
		}{{"can_approve", rv.CanApprove}, {"can_deny", rv.CanDeny}, {"blocked", rv.Blocked}} {
			if err == nil && f.val != "" {
				ext, err = appendField(ext, f.key, f.val)
			}
		}
		if err == nil {
			b, err = appendField(b, "pending_extension", json.RawMessage(ext))
		}
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return err
		}
		out.WriteByte('\n')
		_, err = e.stdout.Write(out.Bytes())
		return err
	}
	if err := e.printRequestHistory(req, h, format); err != nil {
		return err
	}
	x := rv.Extension
	tw := newTable(e.stdout)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	what := fmt.Sprintf("+%s pending approval (extension %d, asked by %s at %s", fmtDuration(x.By), x.Seq, clean(x.RequestedBy), e.fmtTime(x.RequestedAt))
	if x.Reason != "" {
		what += ": " + clean(x.Reason)
	}
	row("Extension", what+")")
	row("Waiting for", "step "+stepSummary(*rv))
	switch {
	case rv.CanApprove:
		row("You", fmt.Sprintf("can approve or deny it: ajar approve %s / ajar deny %s --reason TEXT", clean(req.ID), clean(req.ID)))
	case rv.Blocked != "":
		row("You", clean(rv.Blocked))
	}
	return tw.Flush()
}

// appendField adds "key": val at the end of the JSON object obj (the types
// marshalled here have their own MarshalJSON, so embedding them in a struct
// would drop the added fields).
func appendField(obj []byte, key string, val any) ([]byte, error) {
	kb, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	vb, err := json.Marshal(val)
	if err != nil {
		return nil, err
	}
	obj = bytes.TrimSuffix(bytes.TrimSpace(obj), []byte("}"))
	if !bytes.HasSuffix(obj, []byte("{")) {
		obj = append(obj, ',')
	}
	obj = append(append(append(obj, kb...), ':'), vb...)
	return append(obj, '}'), nil
}

// printOrphans prints the open requests whose requester lost the right to
// them, with why and what ends each.
func (e *cliEnv) printOrphans(orphans []reconcile.Orphan, format outputFormat) error {
	if format == outputJSON {
		if orphans == nil {
			orphans = []reconcile.Orphan{}
		}
		return writeJSON(e.stdout, orphans)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "ID\tTARGET\tREQUESTER\tSTATE\tEXPIRES\tWHY")
	for _, o := range orphans {
		r := o.Request
		exp := "-"
		if r.ExpiresAt != nil {
			exp = e.fmtTime(*r.ExpiresAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(r.ID), orDash(r.Target), orDash(r.Requester), r.State, exp, clean(o.Why))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(orphans) > 0 {
		fmt.Fprintln(e.stderr, "end one with: ajar revoke ID (active) or ajar deny ID (pending); identity.revoke_on_loss ends them by itself")
	}
	return nil
}
