package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/keys"
)

func testSigner(tb testing.TB, name string) *Signer {
	tb.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := newSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func testMasterKey(tb testing.TB, b byte) *keys.MasterKey {
	tb.Helper()
	k, err := keys.NewMasterKey(bytes.Repeat([]byte{b}, keys.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// memKeys is an in-memory ajar.KeyStore with the store's error contract.
// beforePut, if set, runs before each PutKey, to let a test play another replica.
type memKeys struct {
	mu        sync.Mutex
	m         map[string][]byte
	beforePut func(m map[string][]byte)
}

func (s *memKeys) GetKey(_ context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[name]
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "key %q not found", name)
	}
	return bytes.Clone(b), nil
}

func (s *memKeys) PutKey(_ context.Context, name string, sealed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	if s.beforePut != nil {
		s.beforePut(s.m)
	}
	if _, ok := s.m[name]; ok {
		return ajar.Errorf(ajar.ECONFLICT, "key %q exists", name)
	}
	s.m[name] = bytes.Clone(sealed)
	return nil
}

func TestCheckpointRoundTrip(t *testing.T) {
	s := testSigner(t, "ajar.example.com/audit")
	head := sha256.Sum256([]byte("head"))
	signed, err := s.Sign(1234, head[:])
	if err != nil {
		t.Fatal(err)
	}
	wantText := "ajar.example.com/audit\n1234\n" + base64.StdEncoding.EncodeToString(head[:]) + "\n\n— ajar.example.com/audit "
	if !strings.HasPrefix(string(signed), wantText) {
		t.Fatalf("signed checkpoint:\n%s\nwant it to start with:\n%s", signed, wantText)
	}
	cp, err := ParseCheckpoint(signed, s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != "ajar.example.com/audit" || cp.Size != 1234 || !bytes.Equal(cp.Head, head[:]) || !bytes.Equal(cp.Text, signed) {
		t.Fatalf("parsed %+v", cp)
	}
	if !strings.HasPrefix(s.VerifierKey(), "ajar.example.com/audit+") || s.Name() != "ajar.example.com/audit" {
		t.Fatalf("verifier key %q, name %q", s.VerifierKey(), s.Name())
	}
}

func TestSignRejects(t *testing.T) {
	s := testSigner(t, "log")
	head := make([]byte, 32)
	for _, tt := range []struct {
		size int64
		head []byte
	}{{0, head}, {-1, head}, {1, nil}, {1, head[:31]}, {1, make([]byte, 33)}} {
		if _, err := s.Sign(tt.size, tt.head); err == nil {
			t.Errorf("Sign(%d, %d bytes) succeeded", tt.size, len(tt.head))
		}
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	s := testSigner(t, "ajar.example.com/audit")
	head := make([]byte, 32)
	signed, err := s.Sign(10, head)
	if err != nil {
		t.Fatal(err)
	}

	// Signed by another key, even one with the same name.
	other := testSigner(t, "ajar.example.com/audit")
	fromOther, _ := other.Sign(10, head)
	_, err = ParseCheckpoint(fromOther, s.VerifierKey())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) || !strings.Contains(err.Error(), "not signed by") {
		t.Fatalf("checkpoint from another key: err = %v", err)
	}
	elsewhere, _ := testSigner(t, "other.example.com/audit").Sign(10, head)
	if _, err := ParseCheckpoint(elsewhere, s.VerifierKey()); !errors.As(err, &unverified) {
		t.Fatalf("checkpoint from another log: err = %v", err)
	}

	// Altered after signing.
	altered := bytes.Replace(signed, []byte("\n10\n"), []byte("\n11\n"), 1)
	_, err = ParseCheckpoint(altered, s.VerifierKey())
	var invalid *note.InvalidSignatureError
	if !errors.As(err, &invalid) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("altered checkpoint: err = %v", err)
	}

	for _, bad := range [][]byte{nil, []byte("hello\n"), signed[:len(signed)-1], append([]byte("x"), signed...)[:10]} {
		if _, err := ParseCheckpoint(bad, s.VerifierKey()); err == nil {
			t.Errorf("ParseCheckpoint(%q) succeeded", bad)
		}
	}
	if _, err := ParseCheckpoint(signed, "not a key"); err == nil || !strings.Contains(err.Error(), "verifier key") {
		t.Errorf("bad verifier key: err = %v", err)
	}

	// Well signed, but not a checkpoint of this log.
	h := base64.StdEncoding.EncodeToString(head)
	for _, text := range []string{
		"other.example.com/audit\n10\n" + h + "\n",
		"ajar.example.com/audit\n10\n" + h + "\nextension\n",
		"ajar.example.com/audit\n10\n",
		"ajar.example.com/audit\n0\n" + h + "\n",
		"ajar.example.com/audit\n-1\n" + h + "\n",
		"ajar.example.com/audit\n+10\n" + h + "\n",
		"ajar.example.com/audit\n010\n" + h + "\n",
		"ajar.example.com/audit\n 10\n" + h + "\n",
		"ajar.example.com/audit\n99999999999999999999\n" + h + "\n",
		"ajar.example.com/audit\n10\n" + h[:40] + "\n",
		"ajar.example.com/audit\n10\n" + base64.RawStdEncoding.EncodeToString(head) + "\n",
		"ajar.example.com/audit\n10\n" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)) + "\n",
		"ajar.example.com/audit\n10\n\n",
	} {
		signed, err := note.Sign(&note.Note{Text: text}, s.signer)
		if err != nil {
			t.Fatal(err)
		}
		if cp, err := ParseCheckpoint(signed, s.VerifierKey()); err == nil {
			t.Errorf("ParseCheckpoint accepted body %q: %+v", text, cp)
		}
	}
}

func TestLoadOrCreateSigner(t *testing.T) {
	ctx := t.Context()
	mk := testMasterKey(t, 1)
	ks := &memKeys{}

	s1, err := LoadOrCreateSigner(ctx, ks, mk, "ajar.example.com/audit")
	if err != nil {
		t.Fatal(err)
	}
	sealed := ks.m[KeyName]
	if len(ks.m) != 1 || sealed == nil {
		t.Fatalf("stored keys: %v", ks.m)
	}
	if bytes.Contains(sealed, []byte("PRIVATE")) {
		t.Fatal("checkpoint key stored in plaintext")
	}

	// A restart, even with another name configured, keeps the key and its name.
	s2, err := LoadOrCreateSigner(ctx, ks, mk, "renamed")
	if err != nil {
		t.Fatal(err)
	}
	if s2.VerifierKey() != s1.VerifierKey() || s2.Name() != "ajar.example.com/audit" {
		t.Fatalf("second start: key %q, want %q", s2.VerifierKey(), s1.VerifierKey())
	}
	head := make([]byte, 32)
	signed, err := s2.Sign(3, head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCheckpoint(signed, s1.VerifierKey()); err != nil {
		t.Fatalf("checkpoint after restart does not verify with the first key: %v", err)
	}

	// The wrong master key cannot open it.
	if _, err := LoadOrCreateSigner(ctx, ks, testMasterKey(t, 2), "x"); !errors.Is(err, keys.ErrWrongKeyOrTampered) {
		t.Fatalf("wrong master key: err = %v", err)
	}

	for _, name := range []string{"", "a b", "a+b", "tab\there", "new\nline"} {
		if _, err := LoadOrCreateSigner(ctx, &memKeys{}, mk, name); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

func TestLoadOrCreateSignerLostRace(t *testing.T) {
	mk := testMasterKey(t, 1)
	// Another replica stores its key between our read and our write.
	skey, _, _ := note.GenerateKey(rand.Reader, "ajar.example.com/audit")
	winner, _ := newSigner(skey)
	sealed, err := mk.Seal(KeyName, []byte(skey))
	if err != nil {
		t.Fatal(err)
	}
	ks := &memKeys{beforePut: func(m map[string][]byte) { m[KeyName] = sealed }}
	s, err := LoadOrCreateSigner(t.Context(), ks, mk, "ajar.example.com/audit")
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != winner.VerifierKey() {
		t.Fatalf("lost race: got key %q, want the winner's %q", s.VerifierKey(), winner.VerifierKey())
	}
}

func TestNewSignerDerivesVerifier(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "n")
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != vkey {
		t.Fatalf("derived %q, want %q", s.VerifierKey(), vkey)
	}
	if _, err := newSigner(vkey); err == nil {
		t.Fatal("a verifier key accepted as a signer key")
	}
}

func FuzzParseBody(f *testing.F) {
	f.Add("ajar.example.com/audit\n10\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n")
	f.Add("a\n1\n\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		origin, size, head, err := parseBody(text)
		if err != nil {
			return
		}
		// One checkpoint, one encoding: whatever parses formats back to itself.
		if again := formatBody(origin, size, head); again != text {
			t.Fatalf("parsed %q, formats back as %q", text, again)
		}
	})
}
