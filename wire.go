package ajar

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// The inputs and outputs of the core's operations that are not domain types
// themselves. The HTTP API, its Go client (the CLI's, and the host agent's)
// and the core share them, so their JSON shape is the API's; they live here,
// with the types they carry, so that nothing on the client side links the
// core to name them (see docs/architecture.md).

// CreateInput is a new access request.
type CreateInput struct {
	Target   string            `json:"target"`
	Duration string            `json:"duration"` // Go syntax ("30m"); empty means the policy's default
	Reason   string            `json:"reason"`
	Ticket   string            `json:"ticket,omitempty"`
	Start    *time.Time        `json:"start,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	// SSHPublicKey (authorized_keys format), when set, asks POST /v1/requests
	// for a certificate in its response if the request is active at once
	// (CreateOutput). The API hands it to package sshaccess; the core's
	// CreateRequest refuses it, so a caller that cannot honour it fails
	// instead of dropping it.
	SSHPublicKey string `json:"ssh_public_key,omitempty"`
}

// CreateOutput is the response of POST /v1/requests: the request's own JSON
// object, with "ssh_cert" added when a certificate was asked for
// (CreateInput.SSHPublicKey) and the request is active.
type CreateOutput struct {
	Request *Request
	SSHCert *SSHCertOutput
}

// MarshalJSON writes the request object with "ssh_cert" as one more member.
func (o CreateOutput) MarshalJSON() ([]byte, error) {
	if o.Request == nil {
		return nil, errors.New("create output: no request")
	}
	b, err := o.Request.MarshalJSON() // compact and escaped already: encoded once
	if err != nil || o.SSHCert == nil {
		return b, err
	}
	c, err := json.Marshal(o.SSHCert)
	if err != nil {
		return nil, err
	}
	if len(b) < 2 || b[len(b)-1] != '}' {
		return nil, errors.New("create output: the request is not a JSON object")
	}
	out := make([]byte, 0, len(b)+len(c)+12)
	out = append(out, b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"ssh_cert":`...)
	out = append(out, c...)
	return append(out, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (o *CreateOutput) UnmarshalJSON(b []byte) error {
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	var c struct {
		SSHCert *SSHCertOutput `json:"ssh_cert"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	o.Request, o.SSHCert = &r, c.SSHCert
	return nil
}

// Limits on a request's fields, checked at the edge: by Validate, and by the
// core for reasons and comments.
const (
	MaxTargetLen  = 200
	MaxReasonLen  = 2000
	MaxTicketLen  = 200
	MaxCommentLen = 2000
	MaxParams     = 16
	MaxParamLen   = 256
	MaxStartAhead = 90 * 24 * time.Hour // CheckStart
)

// Validate checks the fields of a new request (also a break-glass request
// and an explanation) before anyone asks the policy, and returns its duration
// (0: the policy's default). Free text is checked with CheckText and
// CheckLines (see docs/security.md, "Free text"). EINVALID names the field.
func (in CreateInput) Validate() (time.Duration, error) {
	if strings.TrimSpace(in.Target) == "" {
		return 0, FieldErrorf("target", "a target is required")
	}
	if len(in.Target) > MaxTargetLen {
		return 0, FieldErrorf("target", "longer than %d characters", MaxTargetLen)
	}
	var d time.Duration
	if in.Duration != "" {
		var err error
		d, err = time.ParseDuration(in.Duration)
		if err != nil {
			return 0, FieldErrorf("duration", "%q is not a duration (use Go syntax, e.g. 90s or 30m)", in.Duration)
		}
		if d <= 0 {
			return 0, FieldErrorf("duration", "must be positive")
		}
	}
	if err := CheckText("target", in.Target, MaxTargetLen); err != nil {
		return 0, err
	}
	if err := CheckLines("reason", in.Reason, MaxReasonLen); err != nil {
		return 0, err
	}
	if err := CheckText("ticket", in.Ticket, MaxTicketLen); err != nil {
		return 0, err
	}
	for k, v := range in.Params {
		if err := CheckText("params", k, 64); err != nil {
			return 0, err
		}
		if err := CheckText("params."+k, v, MaxParamLen); err != nil {
			return 0, err
		}
	}
	if len(in.Params) > MaxParams {
		return 0, FieldErrorf("params", "at most %d parameters", MaxParams)
	}
	for k, v := range in.Params {
		if k == "" || len(k) > 64 || strings.ContainsAny(k, " \t\r\n=") {
			return 0, FieldErrorf("params", "bad parameter name %q", k)
		}
		if len(v) > MaxParamLen || strings.ContainsAny(v, "\r\n\x00") {
			return 0, FieldErrorf("params."+k, "value too long or contains control characters")
		}
	}
	return d, nil
}

// CheckStart checks the start of a new request at now: EINVALID (field
// "start") when it is in the past or more than MaxStartAhead ahead; nil for
// none.
func CheckStart(start *time.Time, now time.Time) error {
	switch {
	case start == nil:
		return nil
	case start.Before(now.Add(-time.Minute)):
		return FieldErrorf("start", "is in the past")
	case start.After(now.Add(MaxStartAhead)):
		return FieldErrorf("start", "is more than %s ahead", MaxStartAhead)
	}
	return nil
}

// ExtendInput asks for more time on an active request.
type ExtendInput struct {
	By     string `json:"by"` // Go syntax ("30m")
	Reason string `json:"reason,omitempty"`
}

// ExtendOutput is the request after an extension was asked for and the
// extension it made: applied (the request's expires_at is already the new
// one) or pending approval.
type ExtendOutput struct {
	Request   *Request  `json:"request"`
	Extension Extension `json:"extension"`
}

// SSHCertOutput is a certificate issued for an active request.
type SSHCertOutput struct {
	// Certificate is the certificate in authorized_keys format, one line. It is
	// empty when the target's hosts take the plain key instead (the ssh-cert
	// provider's authorized-keys mode): the key is then recorded in Info and
	// authorized until Info.ValidBefore.
	Certificate string  `json:"certificate"`
	Info        SSHCert `json:"info"`
}

// Caller is the caller as the server sees it (GET /v1/whoami).
type Caller struct {
	User
	Admin bool `json:"admin"`
}
