package ajar

import "time"

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
