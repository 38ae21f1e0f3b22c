package sshcert

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// testSealer is AES-256-GCM with the name as additional data, like the real sealer:
// a value sealed under one name does not open under another.
type testSealer struct {
	aead cipher.AEAD

	mu    sync.Mutex
	names []string // names passed to Seal
}

func newTestSealer(tb testing.TB) *testSealer {
	tb.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	return &testSealer{aead: aead}
}

func (s *testSealer) Seal(name string, plaintext []byte) ([]byte, error) {
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, []byte(name)), nil
}

func (s *testSealer) Open(name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
}

// fakeKeyStore is an in-memory KeyStore with the store's error contract. beforePut,
// if set, runs (without the lock) before each PutKey, to let another "replica" in.
type fakeKeyStore struct {
	mu        sync.Mutex
	keys      map[string][]byte
	gets      int
	puts      int // successful PutKey calls
	getErr    error
	putErr    error
	beforePut func()
}

func newFakeKeyStore() *fakeKeyStore { return &fakeKeyStore{keys: map[string][]byte{}} }

func (s *fakeKeyStore) GetKey(ctx context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if s.getErr != nil {
		return nil, s.getErr
	}
	v, ok := s.keys[name]
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "key %s not found", name)
	}
	return slices.Clone(v), nil
}

func (s *fakeKeyStore) PutKey(ctx context.Context, name string, sealed []byte) error {
	if s.beforePut != nil {
		s.beforePut()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		return s.putErr
	}
	if _, ok := s.keys[name]; ok {
		return ajar.Errorf(ajar.ECONFLICT, "key %s exists", name)
	}
	s.keys[name] = slices.Clone(sealed)
	s.puts++
	return nil
}

func (s *fakeKeyStore) get(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys[name])
}

// testCA returns a CA from a fixed seed, so rendered certificates are stable.
func testCA(tb testing.TB) *CA {
	tb.Helper()
	ca, err := newCA(ed25519.NewKeyFromSeed(seed(1)))
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

// userKey returns a user key pair from a fixed seed and its public key line.
func userKey(tb testing.TB, n byte) (ssh.Signer, []byte) {
	tb.Helper()
	signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed(n)))
	if err != nil {
		tb.Fatal(err)
	}
	return signer, ssh.MarshalAuthorizedKey(signer.PublicKey())
}

func seed(n byte) []byte {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = n
	}
	return s
}

// sshKeygen returns the path of ssh-keygen. A missing ssh-keygen fails the test:
// the certificate format is only proven by the real OpenSSH tool.
func sshKeygen(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err == nil {
		return path
	}
	if _, statErr := os.Stat("/usr/bin/ssh-keygen"); statErr == nil {
		return "/usr/bin/ssh-keygen"
	}
	tb.Fatalf("ssh-keygen is required (apt-get install -y openssh-client): %v", err)
	return ""
}

func wantCode(tb testing.TB, err error, code, field string) {
	tb.Helper()
	if got := ajar.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q, want %q (err: %v)", got, code, err)
	}
	if got := ajar.ErrorField(err); got != field {
		tb.Fatalf("error field = %q, want %q (err: %v)", got, field, err)
	}
}
