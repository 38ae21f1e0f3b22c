package broker

import (
	"time"

	"github.com/ajar-dev/ajar"
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
