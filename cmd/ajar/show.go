package main

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
)

// history is what "ajar show" tells people beyond the request's own fields,
// read from the request's evidence (the audit events about it): who approved
// it (or the policy rule that did), who revoked it, and whether it was
// break-glass. Empty fields are not printed.
type history struct {
	approvedBy string
	revokedBy  string
	breakglass string
}

// requestHistory reads the evidence of req and sums it up. Errors are the
// evidence call's (the caller may see the request, so may see its evidence),
// except ENOTFOUND, a server without the evidence endpoint: no history, nil.
func requestHistory(ctx context.Context, c *api.Client, req *ajar.Request) (*history, error) {
	ev, err := c.Evidence(ctx, req.ID)
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h := &history{}
	var approvers []string
	for _, a := range req.Approvals {
		if a.Decision == ajar.DecisionApprove {
			approvers = append(approvers, clean(a.Approver))
		}
	}
	for _, e := range ev.Events {
		switch e.Action {
		case "request.approved":
			if e.Actor != ajar.ActorSystem {
				continue
			}
			var d struct {
				AutoApprove string `json:"auto_approve"`
			}
			if json.Unmarshal(e.Details, &d) == nil && d.AutoApprove != "" {
				approvers = append(approvers, "policy "+clean(req.Policy)+" (auto if "+clean(d.AutoApprove)+")")
			}
		case "request.revoking":
			if h.revokedBy == "" && req.State != ajar.StateExpired { // expiry is no revocation
				h.revokedBy = clean(e.Actor)
				if e.Actor == ajar.ActorSystem && req.EndReason != "" {
					h.revokedBy += " (" + clean(string(req.EndReason)) + ")"
				}
			}
		}
	}
	h.approvedBy = strings.Join(approvers, ", ")
	if b := ev.Breakglass; b != nil {
		h.breakglass = "yes, review open"
		if b.ClosedAt != nil {
			h.breakglass = "yes, reviewed by " + clean(b.ClosedBy)
		}
	}
	return h, nil
}
