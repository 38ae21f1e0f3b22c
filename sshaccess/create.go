package sshaccess

import (
	"context"
	"errors"
	"fmt"

	"github.com/ajar-dev/ajar"
)

// CreateWithCert creates a request exactly as the core's CreateRequest does
// and, when publicKey is set and the request is active at once, certifies the
// key for it: POST /v1/requests with "ssh_public_key". When the target's
// provider grants locally (ssh-cert), the request, its activation, the
// certificate record and every audit event are one transaction (one commit);
// otherwise the certificate is issued as IssueSSHCert does, after the grant.
// A request that is not active (it waits for approval or starts later) comes
// back without a certificate. The key is checked before anything is stored:
// EINVALID (field "ssh_public_key") for a malformed or oversized key or a
// target that gives no SSH access.
func (s *Service) CreateWithCert(ctx context.Context, u ajar.User, in ajar.CreateInput, publicKey string) (*ajar.Request, *ajar.SSHCertOutput, error) {
	in.SSHPublicKey = "" // the key is publicKey; the core refuses one in its input
	if publicKey == "" {
		r, err := s.core.CreateRequest(ctx, u, in)
		return r, nil, err
	}
	if _, err := in.Validate(); err != nil {
		return nil, nil, err
	}
	if _, err := s.pol.Match(u, in.Target); err != nil {
		return nil, nil, err
	}
	issuer, err := s.issuerFor(in.Target, "ssh_public_key", publicKey)
	if err != nil {
		return nil, nil, err
	}
	return s.createCert(ctx, u, in, issuer, publicKey)
}

// issuerFor returns the certificate issuer of target after checking
// publicKey (when set), reporting a bad key under field.
func (s *Service) issuerFor(target, field, publicKey string) (ajar.SSHCertIssuer, error) {
	prov, err := s.providers.ForTarget(target)
	if err != nil {
		return nil, fmt.Errorf("provider for %s: %w", target, err)
	}
	issuer, ok := prov.(ajar.SSHCertIssuer)
	if !ok {
		return nil, ajar.FieldErrorf("target", "target %s does not give SSH access", target)
	}
	if publicKey == "" {
		return issuer, nil
	}
	if len(publicKey) > 16<<10 {
		return nil, ajar.FieldErrorf(field, "too large")
	}
	if err := issuer.CheckPublicKey([]byte(publicKey)); err != nil {
		var e *ajar.Error
		if errors.As(err, &e) && e.Field != "" && e.Field != field {
			return nil, ajar.FieldErrorf(field, "%s", e.Message)
		}
		return nil, err
	}
	return issuer, nil
}

// createCert creates the request with the certificate in its commit when it
// can (see CreateWithCert).
func (s *Service) createCert(ctx context.Context, u ajar.User, in ajar.CreateInput, issuer ajar.SSHCertIssuer, publicKey string) (*ajar.Request, *ajar.SSHCertOutput, error) {
	var p *pendingCert
	r, ran, err := s.core.CreateRequestThen(ctx, u, in, func(ctx context.Context, tx ajar.Tx, r *ajar.Request) error {
		var err error
		p, err = s.issueInTx(ctx, tx, u, r, issuer, []byte(publicKey), true)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	var cert *ajar.SSHCertOutput
	if ran {
		if cert, err = p.sign(); err != nil {
			return r, nil, err
		}
	} else if r.State == ajar.StateActive {
		// Granted by a provider call after the commit.
		if cert, err = s.IssueSSHCert(ctx, u, r.ID, []byte(publicKey)); err != nil {
			return r, nil, err
		}
	}
	return r, cert, nil
}
