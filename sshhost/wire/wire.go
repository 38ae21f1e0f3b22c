// Package wire holds the SSH host-agent protocol's messages: what a host agent
// ("ajar node") reports about the SSH sessions on its host and what the server
// answers. The agent and the server (package sshhost) share them; this package
// imports no other part of ajar, so the agent never links the server. See
// docs/architecture.md.
package wire

import "time"

// Session events a host agent reports.
const (
	SessionOpened = "opened" // first seen: a login, audited
	SessionOpen   = "open"   // still open, seen before: only judged
	SessionEnded  = "ended"  // the agent ended it (Reason says why): audited
)

// SSHSessionReport is what a host agent sees on its host: the SSH sessions open
// now (or ended by it since the last report).
type SSHSessionReport struct {
	Target   string       `json:"target"`
	Host     string       `json:"host"`
	Sessions []SSHSession `json:"sessions"`
}

// SSHSession is one SSH session on a host, with the key sshd logged for its
// login. Either Key, or Fingerprint (with Serial, KeyID and CA for a
// certificate), names the key.
type SSHSession struct {
	// ID is the agent's name for the session, stable while it lasts.
	ID    string `json:"id"`
	Event string `json:"event"` // SessionOpened, SessionOpen or SessionEnded
	User  string `json:"user"`  // the login
	// Key is the certificate or public key the session logged in with, as
	// "TYPE BASE64", when the agent has it.
	Key string `json:"key,omitempty"`
	// Fingerprint is the SHA256 fingerprint of the key (for a certificate, of
	// the certified key), as sshd logs it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// For a certificate: its serial, key id and the SHA256 fingerprint of the
	// CA that signed it, as sshd logs them.
	Serial  uint64     `json:"serial,omitempty"`
	KeyID   string     `json:"key_id,omitempty"`
	CA      string     `json:"ca,omitempty"`
	Source  string     `json:"source,omitempty"` // the client's address
	PID     int        `json:"pid,omitempty"`
	Started *time.Time `json:"started,omitempty"`
	Reason  string     `json:"reason,omitempty"` // why the agent ended it
}

// SSHSessionVerdict says what the agent must do about one reported session.
type SSHSessionVerdict struct {
	ID string `json:"id"`
	// Known is true when the session logged in with a key or certificate ajar
	// issued; the agent leaves other sessions alone.
	Known     bool   `json:"known"`
	RequestID string `json:"request_id,omitempty"`
	Serial    uint64 `json:"serial,omitempty"`
	// End says the session must end now: its request is no longer active, or its
	// certificate is for another target.
	End bool `json:"end"`
	// EndsAt is when the session must end at the latest (its access's expiry).
	EndsAt *time.Time `json:"ends_at,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// SSHSessionsOutput answers a session report, one verdict per session in order.
type SSHSessionsOutput struct {
	Sessions []SSHSessionVerdict `json:"sessions"`
}
