package sshcert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

func TestLoadOrCreateCACreatesOnceAndReloads(t *testing.T) {
	ks, sealer := newFakeKeyStore(), newTestSealer(t)
	ca1, err := LoadOrCreateCA(t.Context(), ks, sealer)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := LoadOrCreateCA(t.Context(), ks, sealer)
	if err != nil {
		t.Fatal(err)
	}
	if ks.puts != 1 || len(ks.keys) != 1 || ks.keys[KeyName] == nil {
		t.Fatalf("store has %d puts and keys %v, want one key %s", ks.puts, len(ks.keys), KeyName)
	}
	if !bytes.Equal(ca1.PublicKey().Marshal(), ca2.PublicKey().Marshal()) {
		t.Fatal("reloaded CA has a different key")
	}
	if ca1.AuthorizedKey() != ca2.AuthorizedKey() {
		t.Fatalf("AuthorizedKey differs: %q vs %q", ca1.AuthorizedKey(), ca2.AuthorizedKey())
	}
	if !slices.Equal(sealer.names, []string{KeyName}) {
		t.Fatalf("sealed under names %q, want only %q", sealer.names, KeyName)
	}

	// Both sign with the key they advertise.
	_, line := userKey(t, 2)
	pub, _, _, _, _ := ssh.ParseAuthorizedKey(line)
	cert, err := ca2.Sign(CertSpec{PublicKey: pub, Serial: 1, KeyID: "k", Principals: []string{"u"},
		ValidAfter: time.Unix(1000, 0), ValidBefore: time.Unix(2000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), ca1.PublicKey().Marshal()) {
		t.Fatal("certificate signed by a key other than the CA's public key")
	}
}

func TestAuthorizedKeyIsOneLine(t *testing.T) {
	ca := testCA(t)
	line := ca.AuthorizedKey()
	if !strings.HasPrefix(line, "ssh-ed25519 AAAA") || !strings.HasSuffix(line, " ajar-ca") || strings.ContainsAny(line, "\r\n") {
		t.Fatalf("AuthorizedKey = %q, want one line \"ssh-ed25519 AAAA... ajar-ca\"", line)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if comment != "ajar-ca" || !bytes.Equal(pub.Marshal(), ca.PublicKey().Marshal()) {
		t.Fatalf("AuthorizedKey parses to comment %q and another key", comment)
	}
}

// TestSealedCAKeyHoldsNoPlaintext proves the key goes through the sealer: the stored
// bytes contain no form of the private key, and they open only under KeyName.
func TestSealedCAKeyHoldsNoPlaintext(t *testing.T) {
	ks, sealer := newFakeKeyStore(), newTestSealer(t)
	ca, err := LoadOrCreateCA(t.Context(), ks, sealer)
	if err != nil {
		t.Fatal(err)
	}
	sealed := ks.get(KeyName)
	plain, err := sealer.Open(KeyName, sealed)
	if err != nil {
		t.Fatalf("stored key does not open under %s: %v", KeyName, err)
	}
	if _, err := sealer.Open("another-key", sealed); err == nil {
		t.Fatal("sealed CA key opens under another name")
	}
	priv := caPrivateKey(t, plain)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), ca.PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey().(ed25519.PublicKey)) {
		t.Fatal("sealed key is not the CA's key")
	}
	block, _ := pem.Decode(plain)
	for name, secret := range map[string][]byte{
		"seed":        priv.Seed(),
		"private key": priv,
		"PEM":         plain,
		"PEM body":    block.Bytes,
		"base64 body": []byte(base64.StdEncoding.EncodeToString(block.Bytes)[:64]),
	} {
		if bytes.Contains(sealed, secret) {
			t.Errorf("sealed bytes contain the %s", name)
		}
	}

	// The unsealed form is a real OpenSSH private key: ssh-keygen derives the CA's
	// public key from it.
	path := filepath.Join(t.TempDir(), "ca")
	if err := os.WriteFile(path, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sshKeygen(t), "-y", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != ca.AuthorizedKey() {
		t.Fatalf("ssh-keygen -y = %q, want %q", got, ca.AuthorizedKey())
	}
}

func caPrivateKey(tb testing.TB, plain []byte) ed25519.PrivateKey {
	tb.Helper()
	raw, err := ssh.ParseRawPrivateKey(plain)
	if err != nil {
		tb.Fatal(err)
	}
	return *raw.(*ed25519.PrivateKey)
}

// TestLoadOrCreateCALosesRace: another replica stores its key between our GetKey and
// PutKey; we must end up with its key, not ours.
func TestLoadOrCreateCALosesRace(t *testing.T) {
	sealer := newTestSealer(t)
	other := newFakeKeyStore()
	winner, err := LoadOrCreateCA(t.Context(), other, sealer)
	if err != nil {
		t.Fatal(err)
	}

	ks := newFakeKeyStore()
	ks.beforePut = func() {
		ks.mu.Lock()
		ks.keys[KeyName] = other.get(KeyName)
		ks.mu.Unlock()
	}
	ca, err := LoadOrCreateCA(t.Context(), ks, sealer)
	if err != nil {
		t.Fatal(err)
	}
	if ca.AuthorizedKey() != winner.AuthorizedKey() {
		t.Fatalf("after losing the race the CA is %s, want the winner's %s", ca, winner)
	}
	if ks.gets != 2 || ks.puts != 0 {
		t.Fatalf("gets=%d puts=%d, want 2 gets (load, re-read) and no successful put", ks.gets, ks.puts)
	}
}

func TestLoadOrCreateCAConcurrentReplicas(t *testing.T) {
	ks, sealer := newFakeKeyStore(), newTestSealer(t)
	const n = 8
	keys := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ca, err := LoadOrCreateCA(t.Context(), ks, sealer)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = ca.AuthorizedKey()
		})
	}
	wg.Wait()
	for i, k := range keys {
		if k != keys[0] {
			t.Fatalf("replica %d has CA %q, replica 0 has %q", i, k, keys[0])
		}
	}
	if ks.puts != 1 {
		t.Fatalf("%d keys stored, want 1", ks.puts)
	}
}

func TestLoadOrCreateCAErrors(t *testing.T) {
	sealer := newTestSealer(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaBlock, err := ssh.MarshalPrivateKey(rsaKey, "")
	if err != nil {
		t.Fatal(err)
	}
	sealedWith := func(name string, plain []byte) []byte {
		b, _ := sealer.Seal(name, plain)
		return b
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	inconsistent := ed25519.PrivateKey(bytes.Clone(edPriv))
	inconsistent[40] ^= 1 // public half no longer matches the seed
	inconsistentBlock, err := ssh.MarshalPrivateKey(inconsistent, "")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		setup  func(ks *fakeKeyStore)
		code   string
		errHas string
	}{
		{"store read fails", func(ks *fakeKeyStore) { ks.getErr = fmt.Errorf("disk on fire") }, ajar.EINTERNAL, "disk on fire"},
		{"store write fails", func(ks *fakeKeyStore) { ks.putErr = ajar.Errorf(ajar.EINTERNAL, "read-only") }, ajar.EINTERNAL, "read-only"},
		{"sealed under another name", func(ks *fakeKeyStore) { ks.keys[KeyName] = sealedWith("other", []byte("x")) }, ajar.EINTERNAL, "unseal"},
		{"sealed by another master key", func(ks *fakeKeyStore) {
			ks.keys[KeyName], _ = newTestSealer(t).Seal(KeyName, pem.EncodeToMemory(rsaBlock))
		}, ajar.EINTERNAL, "unseal"},
		{"not a private key", func(ks *fakeKeyStore) { ks.keys[KeyName] = sealedWith(KeyName, []byte("hello")) }, ajar.EINTERNAL, "not an OpenSSH private key"},
		{"RSA key", func(ks *fakeKeyStore) { ks.keys[KeyName] = sealedWith(KeyName, pem.EncodeToMemory(rsaBlock)) }, ajar.EINTERNAL, "want an ed25519 key"},
		{"inconsistent ed25519 key", func(ks *fakeKeyStore) {
			ks.keys[KeyName] = sealedWith(KeyName, pem.EncodeToMemory(inconsistentBlock))
		}, ajar.EINTERNAL, "inconsistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := newFakeKeyStore()
			tc.setup(ks)
			ca, err := LoadOrCreateCA(t.Context(), ks, sealer)
			if err == nil {
				t.Fatalf("got CA %s, want an error", ca)
			}
			if ajar.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v (code %s), want code %s containing %q", err, ajar.ErrorCode(err), tc.code, tc.errHas)
			}
		})
	}
}

// TestCAPrintsNoSecret: no fmt verb and no slog handler can print the private key.
func TestCAPrintsNoSecret(t *testing.T) {
	ks, sealer := newFakeKeyStore(), newTestSealer(t)
	ca, err := LoadOrCreateCA(t.Context(), ks, sealer)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := sealer.Open(KeyName, ks.get(KeyName))
	if err != nil {
		t.Fatal(err)
	}
	priv := caPrivateKey(t, plain)

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("ca", "ca", ca)
	outputs := []string{logged.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%X", "%q"} {
		outputs = append(outputs, fmt.Sprintf(verb, ca))
		outputs = append(outputs, fmt.Sprintf(verb, *ca))
	}
	for _, out := range outputs {
		for _, secret := range []string{
			string(priv.Seed()),
			hex.EncodeToString(priv.Seed()[:8]),
			strings.Trim(fmt.Sprint(priv.Seed()[:8]), "[]"),
		} {
			if strings.Contains(strings.ToLower(out), secret) {
				t.Fatalf("formatted CA %q contains the private key", out)
			}
		}
		if !strings.Contains(out, ssh.FingerprintSHA256(ca.PublicKey())) {
			t.Fatalf("formatted CA %q does not name its fingerprint", out)
		}
	}
}

func TestSignRejectsBadSpecs(t *testing.T) {
	ca := testCA(t)
	_, line := userKey(t, 2)
	pub, _, _, _, _ := ssh.ParseAuthorizedKey(line)
	good := CertSpec{
		PublicKey: pub, Serial: 7, KeyID: "ajar:r:alice", Principals: []string{"ubuntu"},
		ValidAfter: time.Unix(1_700_000_000, 0), ValidBefore: time.Unix(1_700_003_600, 0),
		SourceAddress: "192.0.2.1,2001:db8::/32", Extensions: []string{"permit-pty"},
	}
	if _, err := ca.Sign(good); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	goodCert, _ := ca.Sign(good)

	for _, tc := range []struct {
		name string
		edit func(*CertSpec)
	}{
		{"no key", func(s *CertSpec) { s.PublicKey = nil }},
		{"certificate as key", func(s *CertSpec) { s.PublicKey = goodCert }},
		{"serial 0", func(s *CertSpec) { s.Serial = 0 }},
		{"empty key id", func(s *CertSpec) { s.KeyID = "" }},
		{"key id with newline", func(s *CertSpec) { s.KeyID = "a\nb" }},
		{"no principals", func(s *CertSpec) { s.Principals = nil }},
		{"empty principal", func(s *CertSpec) { s.Principals = []string{""} }},
		{"principal with comma", func(s *CertSpec) { s.Principals = []string{"a,b"} }},
		{"duplicate principal", func(s *CertSpec) { s.Principals = []string{"a", "a"} }},
		{"empty window", func(s *CertSpec) { s.ValidBefore = s.ValidAfter }},
		{"window under a second", func(s *CertSpec) { s.ValidBefore = s.ValidAfter.Add(500 * time.Millisecond) }},
		{"reversed window", func(s *CertSpec) { s.ValidBefore = s.ValidAfter.Add(-time.Hour) }},
		{"zero valid after", func(s *CertSpec) { s.ValidAfter = time.Time{} }},
		{"source host name", func(s *CertSpec) { s.SourceAddress = "example.com" }},
		{"source with space", func(s *CertSpec) { s.SourceAddress = "192.0.2.1, 192.0.2.2" }},
		{"source prefix with host bits", func(s *CertSpec) { s.SourceAddress = "10.0.0.1/8" }},
		{"source with zone", func(s *CertSpec) { s.SourceAddress = "fe80::1%eth0" }},
		{"unknown extension", func(s *CertSpec) { s.Extensions = []string{"permit-everything"} }},
		{"duplicate extension", func(s *CertSpec) { s.Extensions = []string{"permit-pty", "permit-pty"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := good
			spec.Principals = append([]string(nil), good.Principals...)
			tc.edit(&spec)
			cert, err := ca.Sign(spec)
			if err == nil {
				t.Fatalf("signed %+v", cert)
			}
			wantCode(t, err, ajar.EINVALID, "")
		})
	}
}
