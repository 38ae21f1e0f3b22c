package sshcert

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// KeyName is the name under which the sealed CA private key is stored, and the name
// it is sealed with (so the ciphertext cannot be moved to another key name).
const KeyName = "ssh-ca-ed25519"

// caComment is the comment on the CA key, in the sealed OpenSSH private key and in
// AuthorizedKey.
const caComment = "ajar-ca"

// KeyStore holds sealed keys. The composition root adapts ajar.Store to it (each
// call in its own transaction).
type KeyStore interface {
	// GetKey returns the sealed key stored under name, or an error with code
	// ajar.ENOTFOUND if there is none.
	GetKey(ctx context.Context, name string) ([]byte, error)
	// PutKey stores a sealed key under name. It returns an error with code
	// ajar.ECONFLICT if name exists: keys are never overwritten.
	PutKey(ctx context.Context, name string, sealed []byte) error
}

// CA is ajar's own ed25519 SSH certificate authority for user certificates. It is
// safe for concurrent use. It never prints its private key: formatting a CA with
// any fmt verb or logging it with slog shows only its public key fingerprint.
type CA struct {
	signer     ssh.Signer
	authorized string // "ssh-ed25519 AAAA... ajar-ca"
}

// LoadOrCreateCA loads the CA key stored under KeyName, or generates, seals and
// stores a new one on first start. When several replicas start at once, exactly one
// key wins: a replica whose PutKey loses (ECONFLICT) reads and uses the winner's key.
//
// The private key is stored as an OpenSSH private key, sealed with
// sealer.Seal(KeyName, ...). It never appears in returned errors.
func LoadOrCreateCA(ctx context.Context, ks KeyStore, sealer ajar.Sealer) (*CA, error) {
	sealed, err := ks.GetKey(ctx, KeyName)
	switch {
	case err == nil:
		return openCA(sealer, sealed)
	case ajar.ErrorCode(err) != ajar.ENOTFOUND:
		return nil, fmt.Errorf("load SSH CA key %s: %w", KeyName, err)
	}

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate SSH CA key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, caComment)
	if err != nil {
		return nil, fmt.Errorf("encode SSH CA key: %w", err)
	}
	plain := pem.EncodeToMemory(block)
	clear(block.Bytes)
	sealed, err = sealer.Seal(KeyName, plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("seal SSH CA key: %w", err)
	}

	err = ks.PutKey(ctx, KeyName, sealed)
	switch {
	case err == nil:
		return newCA(priv)
	case ajar.ErrorCode(err) == ajar.ECONFLICT:
		// Another replica stored its key between our GetKey and PutKey: use theirs,
		// so every replica signs with the one key that hosts trust.
		clear(priv)
		sealed, err = ks.GetKey(ctx, KeyName)
		if err != nil {
			return nil, fmt.Errorf("load SSH CA key %s after losing the create race: %w", KeyName, err)
		}
		return openCA(sealer, sealed)
	default:
		return nil, fmt.Errorf("store SSH CA key %s: %w", KeyName, err)
	}
}

// openCA unseals and parses a stored CA key. Parse errors from x/crypto/ssh are not
// wrapped: they are not needed to act on a corrupt key, and keeping them out means
// no library can ever echo key material into an error.
func openCA(sealer ajar.Sealer, sealed []byte) (*CA, error) {
	plain, err := sealer.Open(KeyName, sealed)
	if err != nil {
		return nil, fmt.Errorf("unseal SSH CA key %s (is the master key the one it was sealed with?): %w", KeyName, err)
	}
	defer clear(plain)
	raw, err := ssh.ParseRawPrivateKey(plain)
	if err != nil {
		return nil, fmt.Errorf("unsealed SSH CA key %s is not an OpenSSH private key", KeyName)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		priv = *k
	case ed25519.PrivateKey:
		priv = k
	default:
		return nil, fmt.Errorf("unsealed SSH CA key %s is a %T, want an ed25519 key", KeyName, raw)
	}
	// The OpenSSH format carries the public half separately; make sure it is the
	// one the seed derives, so AuthorizedKey always names the key that signs.
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return nil, fmt.Errorf("unsealed SSH CA key %s is inconsistent (public half does not match the seed)", KeyName)
	}
	return newCA(priv)
}

func newCA(priv ed25519.PrivateKey) (*CA, error) {
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("SSH CA signer: %w", err)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(signer.PublicKey())), "\n")
	return &CA{signer: signer, authorized: line + " " + caComment}, nil
}

// PublicKey returns the CA's public key.
func (c *CA) PublicKey() ssh.PublicKey { return c.signer.PublicKey() }

// AuthorizedKey returns the CA public key as one authorized_keys line without a
// trailing newline ("ssh-ed25519 AAAA... ajar-ca"), as sshd's TrustedUserCAKeys
// file wants it.
func (c *CA) AuthorizedKey() string { return c.authorized }

// String describes the CA by its public key fingerprint.
func (c CA) String() string {
	return "ajar SSH CA " + ssh.FingerprintSHA256(c.signer.PublicKey())
}

// Format prints String for every verb, so that no fmt verb (%#v, %d, %x on the
// struct) can print the private key inside the signer.
func (c CA) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// LogValue keeps the private key out of slog output.
func (c CA) LogValue() slog.Value { return slog.StringValue(c.String()) }

// CertSpec is what one user certificate says. Sign signs exactly this: there are no
// hidden defaults.
type CertSpec struct {
	PublicKey ssh.PublicKey // the user's key; not a certificate
	Serial    uint64        // non-zero, unique per CA (revocation lists name it)
	KeyID     string        // shown in sshd's log on every login
	// Principals are the user names the certificate is valid for; at least one
	// (an empty list would mean "any user" to OpenSSH).
	Principals  []string
	ValidAfter  time.Time // truncated to the second
	ValidBefore time.Time // truncated to the second; never later than asked
	// SourceAddress is the source-address critical option: a comma-separated list
	// of IP addresses or CIDR prefixes the certificate may be used from; "" for no
	// restriction.
	SourceAddress string
	// Extensions are the OpenSSH extensions to grant (for example "permit-pty"),
	// each one of KnownExtensions. Nil grants none: no pty, no forwarding.
	Extensions []string
}

// KnownExtensions returns the certificate extensions OpenSSH defines, sorted.
func KnownExtensions() []string {
	return []string{
		"no-touch-required",
		"permit-X11-forwarding",
		"permit-agent-forwarding",
		"permit-port-forwarding",
		"permit-pty",
		"permit-user-rc",
	}
}

// Sign issues a user certificate for spec. It returns an EINVALID *Error, without
// signing anything, if spec has a zero serial, no principals, an empty validity
// window, an unknown extension, a malformed source address, or a certificate as
// its public key.
func (c *CA) Sign(spec CertSpec) (*ssh.Certificate, error) {
	cert, err := c.prepare(spec)
	if err != nil {
		return nil, err
	}
	return cert, c.sign(cert)
}

// prepare checks spec as Sign does and returns the certificate Sign would
// issue, unsigned.
func (c *CA) prepare(spec CertSpec) (*ssh.Certificate, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             spec.PublicKey,
		Serial:          spec.Serial,
		CertType:        ssh.UserCert,
		KeyId:           spec.KeyID,
		ValidPrincipals: slices.Clone(spec.Principals),
		ValidAfter:      uint64(spec.ValidAfter.Unix()),
		ValidBefore:     uint64(spec.ValidBefore.Unix()),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{},
			Extensions:      map[string]string{},
		},
	}
	if spec.SourceAddress != "" {
		cert.CriticalOptions["source-address"] = spec.SourceAddress
	}
	for _, e := range spec.Extensions {
		cert.Extensions[e] = "" // every OpenSSH extension is a flag with an empty value
	}
	return cert, nil
}

// sign signs cert, made by prepare, with the CA's key.
func (c *CA) sign(cert *ssh.Certificate) error {
	if err := cert.SignCert(rand.Reader, c.signer); err != nil {
		return fmt.Errorf("sign SSH certificate serial %d: %w", cert.Serial, err)
	}
	return nil
}

func (s CertSpec) check() error {
	bad := func(format string, args ...any) error {
		return ajar.Errorf(ajar.EINVALID, "SSH certificate: "+format, args...)
	}
	if s.PublicKey == nil {
		return bad("no public key")
	}
	if _, ok := s.PublicKey.(*ssh.Certificate); ok {
		return bad("the public key is a certificate")
	}
	if s.Serial == 0 {
		return bad("serial must not be 0")
	}
	if s.KeyID == "" || hasControl(s.KeyID) {
		return bad("key id must be non-empty printable text")
	}
	if len(s.Principals) == 0 {
		return bad("at least one principal is required (none would mean any user)")
	}
	for i, p := range s.Principals {
		if p == "" || hasControl(p) || strings.ContainsAny(p, ", \t") {
			return bad("principal %d (%q) must be non-empty without spaces or commas", i, p)
		}
		if slices.Contains(s.Principals[:i], p) {
			return bad("principal %q is listed twice", p)
		}
	}
	after, before := s.ValidAfter.Unix(), s.ValidBefore.Unix()
	if after < 0 {
		return bad("valid after %s is before 1970", s.ValidAfter)
	}
	if before <= after {
		return bad("valid before (%s) must be after valid after (%s)", s.ValidBefore, s.ValidAfter)
	}
	if s.SourceAddress != "" {
		if err := checkSourceAddressList(s.SourceAddress); err != nil {
			return bad("source address: %v", err)
		}
	}
	known := KnownExtensions()
	for i, e := range s.Extensions {
		if !slices.Contains(known, e) {
			return bad("unknown extension %q (known: %s)", e, strings.Join(known, ", "))
		}
		if slices.Contains(s.Extensions[:i], e) {
			return bad("extension %q is listed twice", e)
		}
	}
	return nil
}

// checkSourceAddressList accepts what both OpenSSH (addr_match_cidr_list) and
// x/crypto/ssh accept: comma-separated addresses or CIDR prefixes, no spaces, no
// zones.
func checkSourceAddressList(list string) error {
	for _, s := range strings.Split(list, ",") {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil || p != p.Masked() {
				return fmt.Errorf("%q is not a CIDR prefix with its host bits clear", s)
			}
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("%q is not an IP address", s)
		}
	}
	return nil
}

func hasControl(s string) bool { return strings.ContainsFunc(s, unicode.IsControl) }
