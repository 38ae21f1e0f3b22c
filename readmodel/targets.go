package readmodel

import (
	"context"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// Targets lists what u may request, with limits and approvers.
func (s *Reader) Targets(ctx context.Context, u ajar.User) ([]TargetInfo, error) {
	var out []TargetInfo
	for _, v := range s.pol.TargetsFor(u) {
		out = append(out, targetInfo(v))
	}
	return out, nil
}

// TargetInfo is a target a user may request, with its limits and approvers.
type TargetInfo struct {
	Name            string     `json:"name"`
	Provider        string     `json:"provider"`
	Policy          string     `json:"policy"`
	DefaultDuration string     `json:"default_duration"`
	MinDuration     string     `json:"min_duration,omitempty"`
	MaxDuration     string     `json:"max_duration"`
	RequireReason   bool       `json:"require_reason"`
	TicketPattern   string     `json:"ticket_pattern,omitempty"`
	AutoApprove     string     `json:"auto_approve,omitempty"`
	ApprovalTimeout string     `json:"approval_timeout"`
	Steps           []StepInfo `json:"steps"`
}

// StepInfo is one approval step.
type StepInfo struct {
	Approvers []string `json:"approvers"`
	Count     int      `json:"count"`
}

func targetInfo(v policy.TargetView) TargetInfo {
	r := v.Rule
	ti := TargetInfo{
		Name: v.Target.Name, Provider: v.Target.Provider, Policy: r.Name,
		DefaultDuration: ajar.FormatDuration(r.DefaultDuration), MaxDuration: ajar.FormatDuration(r.MaxDuration),
		RequireReason: r.RequireReason, TicketPattern: r.TicketPattern,
		ApprovalTimeout: ajar.FormatDuration(r.Approval.Timeout), Steps: []StepInfo{},
	}
	if r.MinDuration > 0 {
		ti.MinDuration = ajar.FormatDuration(r.MinDuration)
	}
	if r.Approval.AutoApprove != nil {
		ti.AutoApprove = r.Approval.AutoApprove.String()
	}
	for _, st := range r.Approval.Steps {
		ti.Steps = append(ti.Steps, StepInfo{Approvers: st.Approvers, Count: st.Count})
	}
	return ti
}
