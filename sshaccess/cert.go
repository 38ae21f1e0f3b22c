package sshaccess

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
)

// IssueSSHCert certifies publicKey for u's own active request. The
// certificate is recorded, counted against the policy's
// certificates_per_request (the core's CheckCertLimit) and audited in one
// transaction before it is returned. EINVALID for a missing, oversized or
// malformed key or a target that issues no certificates; ENOTFOUND for a
// request u may not see; EFORBIDDEN when u is not its requester; ECONFLICT
// when it is not active; ETOOMANY past the limit.
func (s *Service) IssueSSHCert(ctx context.Context, u ajar.User, id string, publicKey []byte) (*ajar.SSHCertOutput, error) {
	if len(publicKey) == 0 {
		return nil, ajar.FieldErrorf("public_key", "a public key is required")
	}
	if len(publicKey) > 16<<10 {
		return nil, ajar.FieldErrorf("public_key", "too large")
	}
	r, err := s.core.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	if !ajar.SameUser(r.Requester, u.ID) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only the requester can get a certificate for request %s", r.ID)
	}
	if r.State != ajar.StateActive || r.Handle == nil {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", r.ID, r.State)
	}
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return nil, err
	}
	issuer, ok := prov.(ajar.SSHCertIssuer)
	if !ok {
		return nil, ajar.Errorf(ajar.EINVALID, "target %s does not issue SSH certificates", r.Target)
	}
	var p *pendingCert
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		p, err = s.issueInTx(ctx, tx, u, cur, issuer, publicKey, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p.sign()
}

// pendingCert is a certificate recorded and audited in a transaction, to be
// signed once that transaction has committed (ajar.SSHCertIssuer's
// PrepareCert): the signature takes none of the store's writer time, and no
// certificate exists that its record does not.
type pendingCert struct {
	info   ajar.SSHCert
	signFn func() ([]byte, error)
}

// sign signs p after its transaction committed.
func (p *pendingCert) sign() (*ajar.SSHCertOutput, error) {
	cert, err := p.signFn()
	if err != nil {
		return nil, err
	}
	return &ajar.SSHCertOutput{Certificate: strings.TrimSpace(string(cert)), Info: p.info}, nil
}

// issueInTx prepares the certificate of publicKey for cur, which must be
// active at the transaction's time, and records, counts and audits it in tx.
// The caller signs it (pendingCert.sign) after tx commits.
func (s *Service) issueInTx(ctx context.Context, tx ajar.Tx, u ajar.User, cur *ajar.Request, issuer ajar.SSHCertIssuer, publicKey []byte, created bool) (*pendingCert, error) {
	now := tx.Now()
	if cur.State != ajar.StateActive || cur.Handle == nil || cur.ExpiresAt == nil || !now.Before(*cur.ExpiresAt) {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s is no longer active", cur.ID)
	}
	info, sign, err := issuer.PrepareCert(*cur.Handle, publicKey, newSerial(now), now)
	if err != nil {
		return nil, err
	}
	if err := tx.InsertSSHCert(ctx, info); err != nil {
		return nil, err
	}
	if err := s.core.CheckCertLimit(ctx, tx, u.ID, cur.ID, created); err != nil {
		return nil, err
	}
	err = s.core.AppendAudit(ctx, tx, u.ID, "ssh_cert.issued", cur.ID, map[string]any{
		"serial": info.Serial, "key_id": info.KeyID, "principals": info.Principals,
		"fingerprint": info.Fingerprint, "valid_before": info.ValidBefore,
	})
	if err != nil {
		return nil, err
	}
	return &pendingCert{info: info, signFn: sign}, nil
}

// Serials.
//
// A certificate's serial is the key of a unique index (ssh_certs.serial). Fully
// random serials put each new certificate's entry on a random page of that
// index, so a commit wrote one index page per certificate in it. newSerial
// instead starts with the issue time, so the certificates committed together
// land on the same few pages. It is the low serialTimeBits bits of the Unix
// time in milliseconds (a cycle of about 37 hours), then serialRandBits random
// bits. Two certificates get the same serial only if they are issued in the
// same millisecond of the cycle with the same random bits: at a sustained
// 3,000 certificates a second, about once in a year; against the serials of
// earlier cycles, the odds per certificate are those of a fully random serial
// (n/2^64 with n certificates issued). A collision fails that one issue with
// ECONFLICT (the unique index), never a second certificate with the serial.
// Serials need not be secret (revocation lists publish them; the certificate's
// nonce is what makes its signed bytes unpredictable).
const (
	serialTimeBits = 27
	serialRandBits = 64 - serialTimeBits
)

// newSerial returns a non-zero serial for a certificate issued at now (see
// Serials above).
func newSerial(now time.Time) uint64 {
	t := uint64(now.UnixMilli()) & (1<<serialTimeBits - 1)
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		if v := t<<serialRandBits | binary.BigEndian.Uint64(b[:])>>serialTimeBits; v != 0 {
			return v
		}
	}
}

// SSHCA returns the SSH CA public key in authorized_keys format; ENOTFOUND
// when the server has no SSH CA.
func (s *Service) SSHCA(ctx context.Context) (string, error) {
	if s.ca == nil {
		return "", ajar.Errorf(ajar.ENOTFOUND, "this server has no SSH CA")
	}
	return s.ca(), nil
}
