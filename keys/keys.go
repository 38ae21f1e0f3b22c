// Package keys holds ajar's master key and encrypts secrets at rest with it
// (invariant 10: no secret in plaintext).
//
// The master key comes from the environment (AJAR_MASTER_KEY) or from a file only
// its owner can read; in dev mode it is generated once into the data directory.
// Private keys that ajar generates (the audit checkpoint key, the SSH CA key) are
// sealed with it before they reach the store, and bound to their name, so a sealed
// value copied to another name does not open.
package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/ajar-dev/ajar"
)

// EnvMasterKey is the environment variable that holds the base64 master key.
const EnvMasterKey = "AJAR_MASTER_KEY"

// KeySize is the master key length in bytes (AES-256).
const KeySize = 32

// sealVersion is the first byte of every sealed value, so the format can change
// later without guessing.
const sealVersion = 1

// maxKeyFile bounds how much of a key file is read: a base64 key is 44 bytes.
const maxKeyFile = 4096

// ErrWrongKeyOrTampered is returned (wrapped) by Open when a sealed value does not
// authenticate: it was sealed with another master key or under another name, or
// it was changed. AES-GCM cannot tell these apart.
var ErrWrongKeyOrTampered = errors.New("wrong master key, wrong name, or tampered value")

// MasterKey seals and opens secrets with AES-256-GCM. It implements ajar.Sealer
// and is safe for concurrent use. Make one with NewMasterKey, LoadMasterKey or
// EnsureDevMasterKey. It never prints its key material: every fmt verb renders a
// MasterKey or a *MasterKey as "MasterKey(redacted)".
type MasterKey struct {
	aead cipher.AEAD
}

var _ ajar.Sealer = (*MasterKey)(nil)

// NewMasterKey returns a master key from exactly KeySize raw bytes. It does not
// keep key; the caller may clear it.
func NewMasterKey(key []byte) (*MasterKey, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return &MasterKey{aead: aead}, nil
}

// LoadMasterKey returns the master key from env (the value of AJAR_MASTER_KEY) or
// from file, exactly one of which must be set. Either holds the key in base64
// (standard, or unpadded URL-safe), surrounded by optional whitespace, and must
// decode to 32 bytes. A file that group or others may access is refused. Errors
// never contain key material.
func LoadMasterKey(env, file string) (*MasterKey, error) {
	switch {
	case env != "" && file != "":
		return nil, fmt.Errorf("master key: both %s and a key file (%s) are set; set only one", EnvMasterKey, file)
	case env != "":
		k, err := decodeKey([]byte(env))
		if err != nil {
			return nil, fmt.Errorf("master key from %s: %w", EnvMasterKey, err)
		}
		return k, nil
	case file != "":
		return loadKeyFile(file)
	default:
		return nil, fmt.Errorf("no master key: set %s or a master key file", EnvMasterKey)
	}
}

// EnsureDevMasterKey is for dev mode: it loads the key file at path if it exists
// (with the same checks as LoadMasterKey), and otherwise generates a random key
// and writes it there in base64, mode 0600, synced to disk. The file appears
// complete or not at all, and only once: concurrent callers all get the key of
// whichever created it first.
func EnsureDevMasterKey(path string) (*MasterKey, error) {
	k, err := loadKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}

	raw := make([]byte, KeySize)
	rand.Read(raw) // never fails (crypto/rand crashes the program instead)
	defer clear(raw)
	enc := make([]byte, base64.StdEncoding.EncodedLen(KeySize)+1)
	base64.StdEncoding.Encode(enc, raw)
	enc[len(enc)-1] = '\n'
	defer clear(enc)

	// Write a private temporary file (exclusively created, 0600) and link it into
	// place: the link is atomic and fails if path exists, so a reader never sees
	// a half-written key and a racing writer never replaces one.
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("create dev master key: %w", err)
	}
	defer os.Remove(f.Name())
	if err := writeSync(f, enc); err != nil {
		return nil, fmt.Errorf("write dev master key: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadKeyFile(path)
		}
		return nil, fmt.Errorf("create dev master key: %w", err)
	}
	syncDir(dir)
	return NewMasterKey(raw)
}

func writeSync(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a newly created file's directory entry durable. It is best
// effort: some platforms cannot fsync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func loadKeyFile(path string) (*MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the mode checked is the file read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s is not a regular file", path)
	}
	// Windows has no Unix permission bits; Go reports 0666 for every file there.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("master key file %s has mode %04o: it must not be accessible by group or others (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("read master key file %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("master key file %s is too large to hold a base64 key", path)
	}
	k, err := decodeKey(b)
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// decodeKey decodes a base64 key. Its errors never quote the input (nor wrap the
// base64 error, which points into it).
func decodeKey(b []byte) (*MasterKey, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	raw := make([]byte, max(base64.StdEncoding.DecodedLen(len(b)), base64.RawURLEncoding.DecodedLen(len(b))))
	defer clear(raw)
	n, err := base64.StdEncoding.Decode(raw, b)
	if err != nil {
		n, err = base64.RawURLEncoding.Decode(raw, b)
	}
	if err != nil {
		return nil, fmt.Errorf("not valid base64 (standard or unpadded URL-safe); want %d random bytes in base64, e.g. from `head -c %d /dev/urandom | base64`", KeySize, KeySize)
	}
	if n != KeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", n, KeySize)
	}
	return NewMasterKey(raw[:n])
}

// Seal encrypts plaintext for storage under name: the result is a version byte,
// a 12-byte random nonce and the AES-GCM ciphertext with its tag. The version and
// name are authenticated, so the value opens only under the same name.
func (k *MasterKey) Seal(name string, plaintext []byte) ([]byte, error) {
	if name == "" {
		return nil, errors.New("seal: empty name")
	}
	ns := k.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return k.aead.Seal(out, out[1:], plaintext, additionalData(name)), nil
}

// Open decrypts a value sealed under name. It returns an error wrapping
// ErrWrongKeyOrTampered if the value was sealed with another key or under
// another name, or was changed since.
func (k *MasterKey) Open(name string, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	switch {
	case name == "":
		return nil, errors.New("open: empty name")
	case len(sealed) < 1+ns+k.aead.Overhead():
		return nil, fmt.Errorf("open sealed %q: %d bytes is too short to be a sealed value", name, len(sealed))
	case sealed[0] != sealVersion:
		return nil, fmt.Errorf("open sealed %q: unknown format version %d (corrupt, or written by a newer ajar?)", name, sealed[0])
	}
	pt, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], additionalData(name))
	if err != nil {
		return nil, fmt.Errorf("open sealed %q: %w", name, ErrWrongKeyOrTampered)
	}
	return pt, nil
}

func additionalData(name string) []byte {
	return append([]byte{sealVersion}, name...)
}

const redacted = "MasterKey(redacted)"

// String returns "MasterKey(redacted)".
func (MasterKey) String() string { return redacted }

// GoString returns "MasterKey(redacted)", for %#v.
func (MasterKey) GoString() string { return redacted }

// Format prints "MasterKey(redacted)" for every verb, so no verb (%x, %d, %+v...)
// can reach the key schedule.
func (MasterKey) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }
