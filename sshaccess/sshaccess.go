// Package sshaccess is the one round trip that "ajar ssh" makes: reuse the
// caller's request for a target or create one, and certify their key if the
// request is active; and the certificates for an active request
// (IssueSSHCert, cert.go). It composes the core's CreateRequest, GetRequest
// and CheckCertLimit and decides nothing itself (see docs/architecture.md); what SSH hosts and
// their agents fetch and report is package sshhost.
package sshaccess

import (
	"context"
	"maps"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/policy"
)

// Service answers SSHAccess. Its methods are safe for concurrent use.
type Service struct {
	core      *broker.Service
	store     ajar.Store
	pol       *policy.Policy
	providers broker.Providers
	ca        func() string
}

// New returns a Service over the core and the store, policy and providers
// it was built with (cmd/ajar wires the same ones); ca returns the SSH CA's
// public key line, nil when no CA is configured.
func New(core *broker.Service, st ajar.Store, pol *policy.Policy, provs broker.Providers, ca func() string) *Service {
	return &Service{core: core, store: st, pol: pol, providers: provs, ca: ca}
}

// minReuseLeft is the least time an active request must have left for "ajar
// ssh" to reuse it rather than ask for a new one.
const minReuseLeft = 30 * time.Second

// Input asks for SSH access to a target in one round trip: reuse the
// caller's request for it or create one, and certify PublicKey if the request is
// active. The request fields are ajar.CreateInput's.
type Input struct {
	Target    string            `json:"target"`
	Duration  string            `json:"duration,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Ticket    string            `json:"ticket,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
	PublicKey string            `json:"public_key,omitempty"` // authorized_keys format
}

// Output is the request SSHAccess found or created and, when it is
// active and a public key was sent, the certificate (or authorized key) for it.
type Output struct {
	Request *ajar.Request       `json:"request"`
	Reused  bool                `json:"reused"`
	Cert    *ajar.SSHCertOutput `json:"ssh_cert,omitempty"`
	// Scheduled are the caller's requests for the target that would have been
	// reused but start later (approved or pending for a future start): they
	// were skipped, so the caller can say why a new request was made.
	Scheduled []*ajar.Request `json:"scheduled,omitempty"`
}

// SSHAccess finds the caller's own request for in.Target that can be used now
// (active with at least minReuseLeft to go, else pending or approved without a
// start in the future: those are returned in Scheduled, never waited on) and whose
// parameters equal in.Params, or creates one exactly as CreateRequest does. If the
// request is active and in.PublicKey is set, it certifies the key with
// IssueSSHCert. Nothing is stored if the target does not issue SSH certificates or the
// key is malformed.
func (s *Service) SSHAccess(ctx context.Context, u ajar.User, in Input) (*Output, error) {
	create := ajar.CreateInput{Target: in.Target, Duration: in.Duration, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params}
	if _, err := create.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.pol.Match(u, in.Target); err != nil {
		return nil, err
	}
	issuer, err := s.issuerFor(in.Target, "public_key", in.PublicKey)
	if err != nil {
		return nil, err
	}
	out := &Output{}
	out.Request, out.Scheduled, err = s.reusable(ctx, u, in.Target, in.Params)
	if err != nil {
		return nil, err
	}
	if out.Request != nil {
		out.Reused = true
		if out.Request.State == ajar.StateActive && in.PublicKey != "" {
			if out.Cert, err = s.IssueSSHCert(ctx, u, out.Request.ID, []byte(in.PublicKey)); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if in.PublicKey == "" {
		out.Request, err = s.core.CreateRequest(ctx, u, create)
	} else {
		out.Request, out.Cert, err = s.createCert(ctx, u, create, issuer, in.PublicKey)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// reusable returns u's newest request for target with exactly params that is
// active with minReuseLeft to go, or else the newest pending or approved one that
// does not start later, or nil; and, when it found none, the pending or approved
// ones it skipped because they start later.
func (s *Service) reusable(ctx context.Context, u ajar.User, target string, params map[string]string) (*ajar.Request, []*ajar.Request, error) {
	var found *ajar.Request
	var later []*ajar.Request
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now := tx.Now()
		rs, err := tx.ListRequests(ctx, ajar.RequestFilter{
			Requester: u.ID, Target: target,
			States:     []ajar.State{ajar.StateActive, ajar.StateApproved, ajar.StatePending},
			SameParams: true, Params: params, // one index lookup per state
		})
		if err != nil {
			return err
		}
		var waiting *ajar.Request
		for _, r := range rs {
			if !ajar.SameUser(r.Requester, u.ID) || r.Target != target || !sameParams(r.Params, params) {
				continue
			}
			switch {
			case r.State == ajar.StateActive && r.ExpiresAt != nil && r.ExpiresAt.Sub(now) >= minReuseLeft:
				found = r
				return nil
			case r.State != ajar.StateActive && r.StartAt != nil && r.StartAt.After(now):
				later = append(later, r) // waiting on it would wait until it starts
			case r.State != ajar.StateActive && waiting == nil:
				waiting = r
			}
		}
		found = waiting
		return nil
	})
	if found != nil {
		later = nil // reused: the skipped ones do not explain anything
	}
	return found, later, err
}

func sameParams(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}
