package broker

import (
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// The inputs and outputs of the Service methods. The HTTP API and the CLI share
// them, so their JSON shape is the API's.

// CreateInput is a new access request.
type CreateInput struct {
	Target   string            `json:"target"`
	Duration string            `json:"duration"` // Go syntax ("30m"); empty means the policy's default
	Reason   string            `json:"reason"`
	Ticket   string            `json:"ticket,omitempty"`
	Start    *time.Time        `json:"start,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
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

// SSHCertOutput is a certificate issued for an active request.
type SSHCertOutput struct {
	// Certificate is the certificate in authorized_keys format, one line. It is
	// empty when the target's hosts take the plain key instead (the ssh-cert
	// provider's authorized-keys mode): the key is then recorded in Info and
	// authorized until Info.ValidBefore.
	Certificate string       `json:"certificate"`
	Info        ajar.SSHCert `json:"info"`
}

// Identity is the caller as the server sees it.
type Identity struct {
	ajar.User
	Admin bool `json:"admin"`
}

func targetInfo(v policy.TargetView) TargetInfo {
	r := v.Rule
	ti := TargetInfo{
		Name: v.Target.Name, Provider: v.Target.Provider, Policy: r.Name,
		DefaultDuration: r.DefaultDuration.String(), MaxDuration: r.MaxDuration.String(),
		RequireReason: r.RequireReason, TicketPattern: r.TicketPattern,
		ApprovalTimeout: r.Approval.Timeout.String(), Steps: []StepInfo{},
	}
	if r.MinDuration > 0 {
		ti.MinDuration = r.MinDuration.String()
	}
	if r.Approval.AutoApprove != nil {
		ti.AutoApprove = r.Approval.AutoApprove.String()
	}
	for _, st := range r.Approval.Steps {
		ti.Steps = append(ti.Steps, StepInfo{Approvers: st.Approvers, Count: st.Count})
	}
	return ti
}
