// Package sshcert is the ssh-cert provider: short-lived OpenSSH user certificates
// signed by ajar's own CA (see CA).
//
// Hosts trust the CA once (TrustedUserCAKeys holds CA.AuthorizedKey) and then need
// no per-user keys. A grant creates nothing on any host: while the request is
// active, the requester asks for certificates on demand (SSHCertIssuer), each valid
// until the request's expiry at the latest. The certificate's ValidBefore is the
// lock that sshd enforces by itself (docs/architecture.md, invariant 2).
package sshcert

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// Name is the provider type in the policy file ("provider: ssh-cert").
const Name = "ssh-cert"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// ParamSourceIP is the one request parameter ssh-cert knows: the requester's
// address, required when the target's source_address is "request".
const ParamSourceIP = "source_ip"

// maxPublicKeyLen bounds the public key input; a 16384-bit RSA key is under 3 KiB.
const maxPublicKeyLen = 16 << 10

// Provider is the ssh-cert provider for one target. It is safe for concurrent use.
type Provider struct {
	target string
	cfg    Config
	ca     *CA
}

var (
	_ ajar.Provider        = (*Provider)(nil)
	_ ajar.ParamsValidator = (*Provider)(nil)
	_ ajar.SSHCertIssuer   = (*Provider)(nil)
	_ ajar.SSHHosts        = (*Provider)(nil)
)

// handleData is Handle.Data for HandleVersion 1: everything a certificate for the
// grant says besides who and until when (those are in Handle.Grant), fixed at grant
// time so that certificates never depend on today's config.
type handleData struct {
	Principals []string `json:"principals"`
	// SourceAddress is the source-address critical option: the requester's
	// source_ip in canonical form, or "" for none.
	SourceAddress string   `json:"source_address,omitempty"`
	Extensions    []string `json:"extensions"`
	// Mode is ModeAuthorizedKeys, or "" for certificates (handles written before
	// modes existed have none).
	Mode string `json:"mode,omitempty"`
}

// New returns the provider for target with its config. It returns the config's
// ajar.Problems (as the error) if CheckConfig finds any.
func New(target string, raw json.RawMessage, ca *CA) (*Provider, error) {
	if ca == nil {
		return nil, errors.New("ssh-cert provider needs the SSH CA")
	}
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	return &Provider{target: target, cfg: cfg, ca: ca}, nil
}

// Grant records what the certificates for req will say: the principals, the
// extensions and, when the target's source_address is "request", the requester's
// source_ip. It creates nothing on any host, so it is idempotent: the same request
// gives the same Handle. It returns EINVALID (field "params.source_ip") for a
// missing or malformed source_ip.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	switch {
	case req.RequestID == "":
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	case req.Target != p.target:
		return ajar.Handle{}, ajar.FieldErrorf("target", "grant for target %q sent to the provider of target %q", req.Target, p.target)
	case req.ExpiresAt.IsZero():
		return ajar.Handle{}, ajar.FieldErrorf("expires_at", "is required: certificates must expire")
	}
	if err := p.ValidateParams(req.Params); err != nil {
		return ajar.Handle{}, err
	}
	d := handleData{
		Principals: slices.Clone(p.cfg.Principals),
		Extensions: p.cfg.extensions(),
	}
	if p.cfg.mode() == ModeAuthorizedKeys {
		d.Mode = ModeAuthorizedKeys
	}
	if p.cfg.SourceAddress == SourceAddressRequest {
		ip, _ := parseSourceIP(req.Params[ParamSourceIP]) // checked by ValidateParams
		d.SourceAddress = ip.String()
	}
	data, err := json.Marshal(d)
	if err != nil {
		return ajar.Handle{}, fmt.Errorf("ssh-cert grant %s: %w", req.RequestID, err)
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

// GrantsLocally reports true: Grant only records what certificates for the
// grant will say; nothing on any host changes (ajar.LocalGranter).
func (p *Provider) GrantsLocally() bool { return true }

// Revoke returns nil: there is nothing on any host to remove, and it is idempotent.
//
// Certificates already issued for the grant stay valid until their ValidBefore,
// which is the grant's expiry. Ending a request early stops new certificates from
// being issued (the broker must not call SignCert for a request that is not
// active), and from the moment the request stops being active the broker lists the
// serials of its certificates in the revocation list it serves (GET /v1/ssh/krl),
// which host agents install as sshd's RevokedKeys; in authorized-keys mode the
// host asks for keys at every login and gets none for an ended request. Host
// agents also end the sessions that are still open. Revoke returns EINVALID for a
// handle of another provider, a wiring bug that must not pass for a successful
// revocation.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	if h.Provider != Name {
		return ajar.Errorf(ajar.EINVALID, "ssh-cert cannot revoke a %q grant", h.Provider)
	}
	return nil
}

// ValidateParams checks a request's parameters. The only parameter is source_ip: an
// IP address (not a prefix, host name, or address with a port or zone), required
// when the target's source_address is "request" and otherwise accepted but unused.
// It returns an EINVALID *Error with Field "params.NAME" for the first problem (in
// name order).
func (p *Provider) ValidateParams(params map[string]string) error {
	for _, k := range sortedKeys(params) {
		if k != ParamSourceIP {
			return ajar.FieldErrorf("params."+k, "unknown parameter: target %q (%s) accepts only %s", p.target, Name, ParamSourceIP)
		}
	}
	v, ok := params[ParamSourceIP]
	if !ok {
		if p.cfg.SourceAddress == SourceAddressRequest {
			return ajar.FieldErrorf("params."+ParamSourceIP,
				"is required: target %q issues certificates only for the address you connect from; pass it, for example --param %s=203.0.113.7",
				p.target, ParamSourceIP)
		}
		return nil
	}
	if _, msg := parseSourceIP(v); msg != "" {
		return ajar.FieldErrorf("params."+ParamSourceIP, "%s", msg)
	}
	return nil
}

// parseSourceIP parses one host address as it appears in a source-address option.
// An IPv4-mapped IPv6 address becomes IPv4, because sshd matches IPv4 clients
// against IPv4 entries only. msg is a user-facing reason when s is not acceptable.
func parseSourceIP(s string) (ip netip.Addr, msg string) {
	const want = "must be one IP address, like 203.0.113.7 or 2001:db8::7"
	if s == "" {
		return ip, "must not be empty: " + want
	}
	q := quoteShort(s)
	ip, err := netip.ParseAddr(s)
	switch {
	case err == nil && ip.Zone() != "":
		return netip.Addr{}, fmt.Sprintf("%s has a zone (%%%s); %s", q, ip.Zone(), want)
	case err == nil:
		ip = ip.Unmap()
		if ip.IsUnspecified() || ip.IsMulticast() {
			return netip.Addr{}, fmt.Sprintf("%s is not a host address; %s", q, want)
		}
		return ip, ""
	case strings.Contains(s, "/"):
		return ip, fmt.Sprintf("%s is a network prefix; %s", q, want)
	}
	if _, err := netip.ParseAddrPort(s); err == nil {
		return ip, fmt.Sprintf("%s has a port; %s", q, want)
	}
	return ip, fmt.Sprintf("%s is not an IP address (host names are not accepted); %s", q, want)
}

// quoteShort quotes user input for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// SignCert certifies publicKey (one authorized_keys line) for the active grant in h,
// with principals, extensions and source address from the handle (never from today's
// config), valid from now-1m (for clock skew) until the grant's expiry. The
// certificate's principals are the handle's logins scoped to the grant's target
// (Principal), so it opens only hosts of that target; info.Principals lists the
// logins.
//
// The key id is "ajar:" + request ID + ":" + requester (for example
// "ajar:req-1:alice@example.com"); sshd logs it with every login, so a login names
// the request that allowed it. The requester is last, so it may contain ':'.
//
// It returns EINVALID (field "public_key") for a key that is not exactly one plain
// public key of an accepted type (ed25519, ECDSA, their FIDO variants, or RSA of at
// least 2048 bits), and ECONFLICT if the grant has not been made yet (h is only an
// intent) or has expired at now.
func (p *Provider) SignCert(h ajar.Handle, publicKey []byte, serial uint64, now time.Time) ([]byte, ajar.SSHCert, error) {
	info, sign, err := p.PrepareCert(h, publicKey, serial, now)
	if err != nil {
		return nil, info, err
	}
	cert, err := sign()
	if err != nil {
		return nil, ajar.SSHCert{}, err
	}
	return cert, info, nil
}

// PrepareCert is SignCert in two steps (see ajar.SSHCertIssuer): every check
// and what will be issued now, the signature when sign is called.
func (p *Provider) PrepareCert(h ajar.Handle, publicKey []byte, serial uint64, now time.Time) (ajar.SSHCert, func() ([]byte, error), error) {
	var info ajar.SSHCert
	if h.Provider != Name || h.Version != HandleVersion {
		return info, nil, ajar.Errorf(ajar.EINVALID, "ssh-cert cannot sign for a %q version %d grant", h.Provider, h.Version)
	}
	if len(h.Data) == 0 {
		return info, nil, ajar.Errorf(ajar.ECONFLICT, "the grant for request %s has not been made yet", h.Grant.RequestID)
	}
	// Never past the grant's latest possible end (GrantRequest.Until), nor
	// longer than any window may be: whatever the handle says, a certificate
	// cannot outlive what the policy allows (see docs/security.md, "Time
	// windows").
	until := h.Grant.Until()
	if hard := now.Add(ajar.MaxWindow); until.After(hard) {
		until = hard
	}
	if !now.Before(until) {
		return info, nil, ajar.Errorf(ajar.ECONFLICT, "request has expired")
	}
	var d handleData
	if err := json.Unmarshal(h.Data, &d); err != nil {
		return info, nil, fmt.Errorf("ssh-cert: decode handle of request %s: %w", h.Grant.RequestID, err)
	}
	key, err := parseUserKey(publicKey)
	if err != nil {
		return info, nil, err
	}
	keyID := "ajar:" + h.Grant.RequestID + ":" + h.Grant.Requester
	plain := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	if d.Mode == ModeAuthorizedKeys {
		// Nothing to sign: the key itself is what hosts will be told to accept.
		if serial == 0 {
			return info, nil, ajar.Errorf(ajar.EINVALID, "serial must not be 0")
		}
		info = ajar.SSHCert{
			Serial:      serial,
			RequestID:   h.Grant.RequestID,
			KeyID:       keyID,
			Principals:  slices.Clone(d.Principals),
			Fingerprint: ssh.FingerprintSHA256(key),
			ValidAfter:  now.UTC().Truncate(time.Second),
			ValidBefore: until.UTC().Truncate(time.Second),
			IssuedAt:    now,
			PublicKey:   plain,
		}
		return info, func() ([]byte, error) { return nil, nil }, nil
	}

	cert, err := p.ca.prepare(CertSpec{
		PublicKey:     key,
		Serial:        serial,
		KeyID:         keyID,
		Principals:    scopedPrincipals(h.Grant.Target, d.Principals),
		ValidAfter:    now.Add(-time.Minute),
		ValidBefore:   until,
		SourceAddress: d.SourceAddress,
		Extensions:    d.Extensions,
	})
	if err != nil {
		return info, nil, fmt.Errorf("ssh-cert: request %s: %w", h.Grant.RequestID, err)
	}
	info = ajar.SSHCert{
		Serial:      cert.Serial,
		RequestID:   h.Grant.RequestID,
		KeyID:       cert.KeyId,
		Principals:  slices.Clone(d.Principals), // the logins; the certificate says them per target
		Fingerprint: ssh.FingerprintSHA256(key),
		ValidAfter:  time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		IssuedAt:    now,
		PublicKey:   plain,
	}
	return info, func() ([]byte, error) {
		if err := p.ca.sign(cert); err != nil {
			return nil, fmt.Errorf("ssh-cert: request %s: %w", info.RequestID, err)
		}
		return ssh.MarshalAuthorizedKey(cert), nil
	}, nil
}

// CheckPublicKey returns the EINVALID error (field "public_key") SignCert would
// return for publicKey, or nil.
func (p *Provider) CheckPublicKey(publicKey []byte) error {
	_, err := parseUserKey(publicKey)
	return err
}

// acceptedKeyTypes are the user key types OpenSSH still accepts by default. DSA is
// gone from OpenSSH; x/crypto's ML-DSA types are unknown to it.
var acceptedKeyTypes = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoSKED25519,
	ssh.KeyAlgoECDSA256,
	ssh.KeyAlgoECDSA384,
	ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSA,
}

const minRSABits = 2048

// parseUserKey parses the one public key a user sends, in authorized_keys format.
func parseUserKey(b []byte) (ssh.PublicKey, error) {
	bad := func(format string, args ...any) error {
		return ajar.FieldErrorf("public_key", format, args...)
	}
	if len(b) > maxPublicKeyLen {
		return nil, bad("is longer than %d bytes", maxPublicKeyLen)
	}
	line := strings.TrimSpace(string(b))
	if line == "" {
		return nil, bad("is required: the contents of your public key file, like ~/.ssh/id_ed25519.pub")
	}
	if strings.ContainsAny(line, "\r\n") {
		return nil, bad("must be exactly one public key on one line")
	}
	key, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || len(rest) > 0 {
		return nil, bad("is not an OpenSSH public key (the one line in a file like ~/.ssh/id_ed25519.pub)")
	}
	if len(options) > 0 {
		return nil, bad("must be a plain public key, without authorized_keys options")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, bad("is a certificate; send the plain public key it certifies")
	}
	if !slices.Contains(acceptedKeyTypes, key.Type()) {
		return nil, bad("key type %s is not accepted (use %s); create one with ssh-keygen -t ed25519",
			key.Type(), strings.Join(acceptedKeyTypes, ", "))
	}
	if key.Type() == ssh.KeyAlgoRSA {
		if bits := rsaBits(key); bits < minRSABits {
			return nil, bad("RSA key has %d bits; at least %d are required (better: ssh-keygen -t ed25519)", bits, minRSABits)
		}
	}
	return key, nil
}

func rsaBits(key ssh.PublicKey) int {
	if ck, ok := key.(ssh.CryptoPublicKey); ok {
		if k, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok {
			return k.N.BitLen()
		}
	}
	return 0
}
