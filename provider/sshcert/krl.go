package sshcert

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// OpenSSH key revocation lists (KRL), as specified in PROTOCOL.krl of the OpenSSH
// source. sshd reads the file named by RevokedKeys on every authentication, so a
// new KRL takes effect at once, without a restart. golang.org/x/crypto has no KRL
// code, hence this small encoder and a parser (for the host agent, which checks a
// KRL before installing it and matches open sessions against it).

// KRL wire constants from PROTOCOL.krl.
const (
	krlMagic         = "SSHKRL\n\x00"
	krlFormatVersion = 1

	krlSectionCertificates = 1
	krlSectionExplicitKey  = 2
	krlSectionSHA1         = 3
	krlSectionSignature    = 4
	krlSectionSHA256       = 5
	krlSectionExtension    = 255

	krlCertSerialList   = 0x20
	krlCertSerialRange  = 0x21
	krlCertSerialBitmap = 0x22
	krlCertKeyID        = 0x23
	krlCertExtension    = 0x39
)

// maxKRLSize bounds what ParseKRL accepts: 8 bytes per revoked serial, so 16 MiB
// is two million revocations, far more than ajar ever lists at once.
const maxKRLSize = 16 << 20

// KRLSpec is what MarshalKRL writes: a KRL that revokes certificates of one CA by
// serial number.
type KRLSpec struct {
	// CA is the key that signed the certificates to revoke. Required.
	CA ssh.PublicKey
	// Serials are the serial numbers to revoke, in any order, duplicates allowed.
	// Zero is not a serial (OpenSSH ignores it and refuses it in a KRL).
	Serials []uint64
	// Version is krl_version, a number that should grow with every new KRL.
	Version uint64
	// Generated is generated_date, kept to the second.
	Generated time.Time
	// Comment is free text that ssh-keygen -Q -l shows.
	Comment string
}

// MarshalKRL encodes spec in the binary KRL format. The serials are written sorted
// and without duplicates, so equal specs give equal bytes. A spec without serials
// gives a valid KRL that revokes nothing.
func MarshalKRL(spec KRLSpec) ([]byte, error) {
	if spec.CA == nil {
		return nil, errors.New("krl: a CA key is required")
	}
	if _, ok := spec.CA.(*ssh.Certificate); ok {
		return nil, errors.New("krl: the CA key must be a plain public key, not a certificate")
	}
	serials := slices.Clone(spec.Serials)
	slices.Sort(serials)
	serials = slices.Compact(serials)
	if len(serials) > 0 && serials[0] == 0 {
		return nil, errors.New("krl: serial 0 cannot be revoked")
	}
	var gen uint64
	if !spec.Generated.IsZero() && spec.Generated.Unix() > 0 {
		gen = uint64(spec.Generated.Unix())
	}

	var w krlWriter
	w.raw([]byte(krlMagic))
	w.u32(krlFormatVersion)
	w.u64(spec.Version)
	w.u64(gen)
	w.u64(0)   // flags: none defined
	w.str(nil) // reserved
	w.str([]byte(spec.Comment))
	if len(serials) > 0 {
		var list krlWriter
		for _, s := range serials {
			list.u64(s)
		}
		var sect krlWriter
		sect.str(spec.CA.Marshal())
		sect.str(nil) // reserved
		sect.byte(krlCertSerialList)
		sect.str(list.b)
		w.byte(krlSectionCertificates)
		w.str(sect.b)
	}
	return w.b, nil
}

// KRL returns a KRL that revokes the certificates with the given serials signed by
// c, for sshd's RevokedKeys. Its krl_version is generated's Unix time.
func (c *CA) KRL(serials []uint64, generated time.Time) ([]byte, error) {
	var version uint64
	if u := generated.Unix(); u > 0 {
		version = uint64(u)
	}
	return MarshalKRL(KRLSpec{CA: c.PublicKey(), Serials: serials, Version: version, Generated: generated, Comment: "ajar"})
}

// KRL is a parsed key revocation list. It answers whether a key or certificate is
// revoked the way sshd does (see IsRevoked).
type KRL struct {
	Version   uint64
	Generated time.Time
	Comment   string

	certs    []krlCerts
	sha1s    map[string]bool // SHA-1 of plain key blobs
	sha256s  map[string]bool // SHA-256 of plain key blobs
	explicit map[string]bool // plain key blobs
}

// krlCerts is one certificate section: revocations for one CA, or for any CA
// when ca is empty.
type krlCerts struct {
	ca      []byte // the CA's wire-format public key; empty for any CA
	serials map[uint64]bool
	ranges  [][2]uint64
	bitmaps []krlBitmap
	keyIDs  map[string]bool
}

// krlBitmap revokes serial offset+N for every bit N set in bits (big-endian, so
// bit 0 is the lowest bit of the last byte).
type krlBitmap struct {
	offset uint64
	bits   []byte
}

func (b krlBitmap) has(serial uint64) bool {
	if serial < b.offset {
		return false
	}
	n := serial - b.offset
	if n/8 >= uint64(len(b.bits)) {
		return false
	}
	return b.bits[len(b.bits)-1-int(n/8)]&(1<<(n%8)) != 0
}

// Serials returns the serials revoked by explicit lists (not ranges or bitmaps)
// for the CA whose wire-format public key is ca, sorted.
func (k *KRL) Serials(ca ssh.PublicKey) []uint64 {
	var out []uint64
	blob := ca.Marshal()
	for _, c := range k.certs {
		if bytes.Equal(c.ca, blob) {
			for s := range c.serials {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// IsRevoked reports whether sshd, given this KRL as RevokedKeys, would refuse key:
// a plain key listed explicitly or by hash; a certificate whose own key or CA key
// is listed that way, or whose serial (other than 0) or key id is revoked for its
// CA or for any CA.
func (k *KRL) IsRevoked(key ssh.PublicKey) bool {
	if cert, ok := key.(*ssh.Certificate); ok {
		if k.plainRevoked(cert.Key) || k.plainRevoked(cert.SignatureKey) {
			return true
		}
		ca := cert.SignatureKey.Marshal()
		for _, c := range k.certs {
			if len(c.ca) > 0 && !bytes.Equal(c.ca, ca) {
				continue
			}
			if c.keyIDs[cert.KeyId] {
				return true
			}
			if cert.Serial == 0 {
				continue
			}
			if c.serials[cert.Serial] {
				return true
			}
			for _, r := range c.ranges {
				if r[0] <= cert.Serial && cert.Serial <= r[1] {
					return true
				}
			}
			for _, b := range c.bitmaps {
				if b.has(cert.Serial) {
					return true
				}
			}
		}
		return false
	}
	return k.plainRevoked(key)
}

func (k *KRL) plainRevoked(key ssh.PublicKey) bool {
	blob := key.Marshal()
	s1 := sha1.Sum(blob)
	s256 := sha256.Sum256(blob)
	return k.explicit[string(blob)] || k.sha1s[string(s1[:])] || k.sha256s[string(s256[:])]
}

// ParseKRL parses a binary KRL strictly, refusing what sshd would refuse (bad
// magic or version, unknown sections, trailing data, serial 0) and, beyond that,
// signatures (OpenSSH 9.4 and later refuse signed KRLs) and critical extensions.
func ParseKRL(b []byte) (*KRL, error) {
	if len(b) > maxKRLSize {
		return nil, fmt.Errorf("krl: larger than %d bytes", maxKRLSize)
	}
	r := krlReader{b: b}
	if magic := r.raw(len(krlMagic)); string(magic) != krlMagic {
		return nil, errors.New("krl: not a KRL (bad magic)")
	}
	if v := r.u32(); r.err == nil && v != krlFormatVersion {
		return nil, fmt.Errorf("krl: format version %d, want %d", v, krlFormatVersion)
	}
	k := &KRL{sha1s: map[string]bool{}, sha256s: map[string]bool{}, explicit: map[string]bool{}}
	k.Version = r.u64()
	gen := r.u64()
	r.u64() // flags
	r.str() // reserved
	k.Comment = string(r.str())
	if r.err != nil {
		return nil, fmt.Errorf("krl: header: %w", r.err)
	}
	if gen > 1<<62 {
		return nil, fmt.Errorf("krl: generated_date %d is out of range", gen)
	}
	k.Generated = time.Unix(int64(gen), 0).UTC()
	for r.err == nil && len(r.b) > 0 {
		typ := r.byte()
		data := r.str()
		if r.err != nil {
			break
		}
		var err error
		switch typ {
		case krlSectionCertificates:
			err = k.parseCerts(data)
		case krlSectionExplicitKey:
			err = parseBlobs(data, 0, k.explicit)
		case krlSectionSHA1:
			err = parseBlobs(data, sha1.Size, k.sha1s)
		case krlSectionSHA256:
			err = parseBlobs(data, sha256.Size, k.sha256s)
		case krlSectionSignature:
			err = errors.New("signed KRLs are not supported (OpenSSH 9.4 and later refuse them)")
		case krlSectionExtension:
			err = parseExtension(data)
		default:
			err = fmt.Errorf("unknown section type %d", typ)
		}
		if err != nil {
			return nil, fmt.Errorf("krl: section %d: %w", typ, err)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("krl: %w", r.err)
	}
	return k, nil
}

func (k *KRL) parseCerts(data []byte) error {
	r := krlReader{b: data}
	c := krlCerts{ca: r.str(), serials: map[uint64]bool{}, keyIDs: map[string]bool{}}
	r.str() // reserved
	if r.err != nil {
		return r.err
	}
	if len(c.ca) > 0 {
		if _, err := ssh.ParsePublicKey(c.ca); err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
	}
	for r.err == nil && len(r.b) > 0 {
		typ := r.byte()
		sub := krlReader{b: r.str()}
		if r.err != nil {
			break
		}
		switch typ {
		case krlCertSerialList:
			for sub.err == nil && len(sub.b) > 0 {
				s := sub.u64()
				if sub.err == nil && s == 0 {
					return errors.New("serial 0 in a serial list")
				}
				c.serials[s] = true
			}
		case krlCertSerialRange:
			lo, hi := sub.u64(), sub.u64()
			if sub.err == nil && (lo == 0 || lo > hi) {
				return fmt.Errorf("bad serial range %d-%d", lo, hi)
			}
			c.ranges = append(c.ranges, [2]uint64{lo, hi})
		case krlCertSerialBitmap:
			off := sub.u64()
			bits := sub.mpint()
			if sub.err == nil && len(bits) > 0 && off+uint64(len(bits))*8-1 < off {
				return errors.New("serial bitmap wraps around")
			}
			c.bitmaps = append(c.bitmaps, krlBitmap{offset: off, bits: bits})
		case krlCertKeyID:
			n := 0
			for sub.err == nil && len(sub.b) > 0 {
				c.keyIDs[string(sub.str())] = true
				n++
			}
			if sub.err == nil && n == 0 {
				return errors.New("empty key id section")
			}
		case krlCertExtension:
			if err := parseExtension(sub.b); err != nil {
				return err
			}
			sub.b = nil
		default:
			return fmt.Errorf("unknown certificate section type %#x", typ)
		}
		if sub.err == nil && len(sub.b) > 0 {
			return fmt.Errorf("certificate section %#x has trailing data", typ)
		}
		if sub.err != nil {
			return fmt.Errorf("certificate section %#x: %w", typ, sub.err)
		}
	}
	if r.err != nil {
		return r.err
	}
	k.certs = append(k.certs, c)
	return nil
}

// parseBlobs reads a list of strings, each size bytes long unless size is 0.
func parseBlobs(data []byte, size int, into map[string]bool) error {
	r := krlReader{b: data}
	n := 0
	for r.err == nil && len(r.b) > 0 {
		blob := r.str()
		if r.err == nil && size > 0 && len(blob) != size {
			return fmt.Errorf("entry of %d bytes, want %d", len(blob), size)
		}
		into[string(blob)] = true
		n++
	}
	if r.err == nil && n == 0 {
		return errors.New("empty section")
	}
	return r.err
}

// parseExtension accepts a non-critical extension (ignored) and refuses a critical
// one: its meaning is unknown, so the KRL cannot be trusted to say what it means.
func parseExtension(data []byte) error {
	r := krlReader{b: data}
	name := r.str()
	critical := r.byte()
	r.str() // contents
	switch {
	case r.err != nil:
		return r.err
	case len(r.b) > 0:
		return errors.New("extension has trailing data")
	case critical > 1:
		return errors.New("extension has a bad boolean")
	case critical == 1:
		return fmt.Errorf("unsupported critical extension %q", name)
	}
	return nil
}

// krlWriter appends SSH wire-format values.
type krlWriter struct{ b []byte }

func (w *krlWriter) raw(p []byte) { w.b = append(w.b, p...) }
func (w *krlWriter) byte(v byte)  { w.b = append(w.b, v) }
func (w *krlWriter) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *krlWriter) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *krlWriter) str(p []byte) {
	w.u32(uint32(len(p)))
	w.b = append(w.b, p...)
}

// krlReader reads SSH wire-format values, keeping the first error; after an
// error every read returns a zero value.
type krlReader struct {
	b   []byte
	err error
}

var errKRLShort = errors.New("truncated")

func (r *krlReader) raw(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = errKRLShort
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *krlReader) byte() byte {
	if p := r.raw(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *krlReader) u32() uint32 {
	if p := r.raw(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *krlReader) u64() uint64 {
	if p := r.raw(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *krlReader) str() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.err = errKRLShort
		return nil
	}
	return r.raw(int(n))
}

// mpint reads an SSH mpint as unsigned big-endian bytes (a bitmap is never
// negative; a negative one is refused).
func (r *krlReader) mpint() []byte {
	p := r.str()
	if r.err != nil {
		return nil
	}
	if len(p) > 0 && p[0]&0x80 != 0 {
		r.err = errors.New("negative mpint")
		return nil
	}
	return bytes.TrimLeft(p, "\x00")
}
