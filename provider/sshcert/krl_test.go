package sshcert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// signTestCert returns a certificate with the given serial and key id from ca,
// for the user key of seed n, in authorized_keys format.
func signTestCert(tb testing.TB, ca *CA, n byte, serial uint64, keyID string) (*ssh.Certificate, []byte) {
	tb.Helper()
	_, line := userKey(tb, n)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := ca.Sign(CertSpec{PublicKey: pub, Serial: serial, KeyID: keyID, Principals: []string{"u"},
		ValidAfter: time.Unix(1000, 0), ValidBefore: time.Now().Add(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	return cert, ssh.MarshalAuthorizedKey(cert)
}

// keygenRevoked asks the real ssh-keygen whether krl revokes the certificate or
// key in certFile: ssh-keygen -Q exits 1 and says REVOKED, or exits 0 and says ok.
func keygenRevoked(tb testing.TB, keygen, krl, certFile string) bool {
	tb.Helper()
	out, err := exec.Command(keygen, "-Q", "-f", krl, certFile).CombinedOutput()
	switch {
	case err == nil && strings.Contains(string(out), ": ok"):
		return false
	case err != nil && strings.Contains(string(out), "REVOKED"):
		return true
	}
	tb.Fatalf("ssh-keygen -Q -f %s %s: %v\n%s", krl, certFile, err, out)
	return false
}

func TestKRLAgainstSSHKeygen(t *testing.T) {
	keygen := sshKeygen(t)
	dir := t.TempDir()
	ca := testCA(t)
	otherCA, err := newCA(ed25519.NewKeyFromSeed(seed(9)))
	if err != nil {
		t.Fatal(err)
	}

	revoked := []uint64{42, 1, math.MaxUint64, 1 << 63, 42, 0xdeadbeef}
	krl, err := ca.KRL(revoked, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	krlFile := filepath.Join(dir, "revoked.krl")
	if err := os.WriteFile(krlFile, krl, 0o644); err != nil {
		t.Fatal(err)
	}
	empty, err := ca.KRL(nil, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty.krl")
	if err := os.WriteFile(emptyFile, empty, 0o644); err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseKRL(krl)
	if err != nil {
		t.Fatalf("ParseKRL of our own KRL: %v", err)
	}
	if got, want := parsed.Serials(ca.PublicKey()), []uint64{1, 42, 0xdeadbeef, 1 << 63, math.MaxUint64}; !slices.Equal(got, want) {
		t.Fatalf("parsed serials = %v, want %v", got, want)
	}

	cases := []struct {
		name    string
		ca      *CA
		serial  uint64
		revoked bool
	}{
		{"serial 1", ca, 1, true},
		{"serial 42", ca, 42, true},
		{"serial 0xdeadbeef", ca, 0xdeadbeef, true},
		{"serial 2^63", ca, 1 << 63, true},
		{"serial max", ca, math.MaxUint64, true},
		{"serial 2 (not listed)", ca, 2, false},
		{"serial 41 (between)", ca, 41, false},
		{"serial 2^63-1", ca, 1<<63 - 1, false},
		{"serial 2^63+1", ca, 1<<63 + 1, false},
		{"revoked serial, other CA", otherCA, 42, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert, line := signTestCert(t, tc.ca, byte(10+i), tc.serial, fmt.Sprintf("ajar:req-%d:alice", i))
			certFile := filepath.Join(dir, fmt.Sprintf("cert-%d.pub", i))
			if err := os.WriteFile(certFile, line, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := keygenRevoked(t, keygen, krlFile, certFile); got != tc.revoked {
				t.Errorf("ssh-keygen -Q says revoked=%t, want %t", got, tc.revoked)
			}
			if got := parsed.IsRevoked(cert); got != tc.revoked {
				t.Errorf("KRL.IsRevoked = %t, want %t (disagrees with ssh-keygen)", got, tc.revoked)
			}
			if keygenRevoked(t, keygen, emptyFile, certFile) {
				t.Error("the empty KRL revokes it")
			}
			// The plain key under a revoked certificate stays usable.
			plainFile := filepath.Join(dir, fmt.Sprintf("plain-%d.pub", i))
			if err := os.WriteFile(plainFile, ssh.MarshalAuthorizedKey(cert.Key), 0o644); err != nil {
				t.Fatal(err)
			}
			if keygenRevoked(t, keygen, krlFile, plainFile) || parsed.IsRevoked(cert.Key) {
				t.Error("the plain key of the certificate is revoked")
			}
		})
	}

	// ssh-keygen -Q -l lists what it read: our header and every serial.
	out, err := exec.Command(keygen, "-Q", "-l", "-f", krlFile).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -Q -l: %v\n%s", err, out)
	}
	for _, want := range []string{"# KRL version 1800000000", "# Comment: ajar", "serial: 1\n", "serial: 42\n",
		fmt.Sprintf("serial: %d\n", uint64(math.MaxUint64)), fmt.Sprintf("serial: %d\n", uint64(1<<63))} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -Q -l output lacks %q:\n%s", want, out)
		}
	}
}

// TestParseKRLFromSSHKeygen parses KRLs that ssh-keygen itself wrote, with serial
// ranges (which it encodes as bitmaps), key ids and key hashes, and checks that
// IsRevoked agrees with ssh-keygen -Q for each of them.
func TestParseKRLFromSSHKeygen(t *testing.T) {
	keygen := sshKeygen(t)
	dir := t.TempDir()
	ca := testCA(t)
	caFile := filepath.Join(dir, "ca.pub")
	if err := os.WriteFile(caFile, []byte(ca.AuthorizedKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, plainLine := userKey(t, 40)
	plainFile := filepath.Join(dir, "plain.pub")
	if err := os.WriteFile(plainFile, plainLine, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := "serial: 5\nserial: 10-20\nserial: 1000-1000000\nserial: 18446744073709551615\nid: ajar:req-bad:mallory\n"
	specFile := filepath.Join(dir, "spec")
	if err := os.WriteFile(specFile, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	krlFile := filepath.Join(dir, "keygen.krl")
	if out, err := exec.Command(keygen, "-k", "-f", krlFile, "-s", caFile, specFile, plainFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v\n%s", err, out)
	}
	b, err := os.ReadFile(krlFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKRL(b)
	if err != nil {
		t.Fatalf("ParseKRL(ssh-keygen's KRL): %v", err)
	}
	plain, _, _, _, _ := ssh.ParseAuthorizedKey(plainLine)
	if !k.IsRevoked(plain) || !keygenRevoked(t, keygen, krlFile, plainFile) {
		t.Error("the explicitly revoked plain key is not revoked")
	}
	for i, c := range []struct {
		serial uint64
		keyID  string
	}{
		{4, "a"}, {5, "a"}, {6, "a"}, {9, "a"}, {10, "a"}, {15, "a"}, {20, "a"}, {21, "a"},
		{999, "a"}, {1000, "a"}, {500000, "a"}, {1000000, "a"}, {1000001, "a"},
		{math.MaxUint64, "a"}, {math.MaxUint64 - 1, "a"}, {77, "ajar:req-bad:mallory"},
	} {
		cert, line := signTestCert(t, ca, byte(50+i), c.serial, c.keyID)
		f := filepath.Join(dir, fmt.Sprintf("c%d.pub", i))
		if err := os.WriteFile(f, line, 0o644); err != nil {
			t.Fatal(err)
		}
		want := keygenRevoked(t, keygen, krlFile, f)
		if got := k.IsRevoked(cert); got != want {
			t.Errorf("serial %d key id %q: IsRevoked = %t, ssh-keygen says %t", c.serial, c.keyID, got, want)
		}
	}
}

func TestMarshalKRLRefuses(t *testing.T) {
	ca := testCA(t)
	if _, err := MarshalKRL(KRLSpec{Serials: []uint64{1}}); err == nil {
		t.Error("no CA: no error")
	}
	if _, err := MarshalKRL(KRLSpec{CA: ca.PublicKey(), Serials: []uint64{3, 0}}); err == nil {
		t.Error("serial 0: no error")
	}
	cert, _ := signTestCert(t, ca, 3, 5, "x")
	if _, err := MarshalKRL(KRLSpec{CA: cert, Serials: []uint64{1}}); err == nil {
		t.Error("certificate as CA: no error")
	}
	a, _ := MarshalKRL(KRLSpec{CA: ca.PublicKey(), Serials: []uint64{3, 1, 2, 3}, Generated: time.Unix(5, 0)})
	b, _ := MarshalKRL(KRLSpec{CA: ca.PublicKey(), Serials: []uint64{1, 2, 3}, Generated: time.Unix(5, 0)})
	if !bytes.Equal(a, b) {
		t.Error("equal sets of serials give different KRLs")
	}
}

func TestParseKRLRejects(t *testing.T) {
	ca := testCA(t)
	good, err := ca.KRL([]uint64{7, 8}, time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKRL(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":           nil,
		"bad magic":       append([]byte("SSHKRX\n\x00"), good[8:]...),
		"bad version":     append(append([]byte(krlMagic), 0, 0, 0, 2), good[12:]...),
		"truncated":       good[:len(good)-3],
		"trailing byte":   append(slices.Clone(good), 1),
		"unknown section": append(slices.Clone(good), 9, 0, 0, 0, 0),
		"signature":       append(slices.Clone(good), krlSectionSignature, 0, 0, 0, 0),
	}
	// A serial list holding serial 0.
	var w krlWriter
	w.str(ca.PublicKey().Marshal())
	w.str(nil)
	w.byte(krlCertSerialList)
	w.str(binary.BigEndian.AppendUint64(nil, 0))
	var sec krlWriter
	sec.byte(krlSectionCertificates)
	sec.str(w.b)
	bad["serial 0"] = append(headerOnly(t, good), sec.b...)
	// A critical extension.
	var ext krlWriter
	ext.str([]byte("future@example.com"))
	ext.byte(1)
	ext.str(nil)
	var es krlWriter
	es.byte(krlSectionExtension)
	es.str(ext.b)
	bad["critical extension"] = append(headerOnly(t, good), es.b...)
	for name, b := range bad {
		if _, err := ParseKRL(b); err == nil {
			t.Errorf("%s: ParseKRL accepted it", name)
		}
	}
}

// headerOnly returns the header of a KRL made by CA.KRL (without sections).
func headerOnly(tb testing.TB, krl []byte) []byte {
	tb.Helper()
	r := krlReader{b: krl}
	r.raw(len(krlMagic))
	r.u32()
	r.u64()
	r.u64()
	r.u64()
	r.str()
	r.str()
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return slices.Clone(krl[:len(krl)-len(r.b)])
}

// FuzzParseKRL: ParseKRL never panics, and neither does asking a KRL it accepted
// about a certificate.
func FuzzParseKRL(f *testing.F) {
	ca := testCA(f)
	for _, serials := range [][]uint64{nil, {1}, {5, 6, 7, math.MaxUint64}} {
		b, err := ca.KRL(serials, time.Unix(1, 0))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// The KRL ssh-keygen -k writes for "serial: 5", "serial: 10-20", "id: foo": a
	// bitmap and a key id section.
	f.Add([]byte("SSHKRL\n\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00k\x01}$" +
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00[\x00\x00\x003" +
		"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 \x97\x86\xddA;\xc1\xe8\x13\xb4Q\xbe\x0c\xaa|'\xff:\x95\x85V" +
		"\xec\x7f~VJ\xb6\xc7\xb0\xdf\xd7q\xa9\x00\x00\x00\x00\"\x00\x00\x00\x0f\x00\x00\x00\x00\x00\x00\x00" +
		"\x05\x00\x00\x00\x03\x00\xff\xe1#\x00\x00\x00\x07\x00\x00\x00\x03foo"))
	cert, _ := signTestCert(f, ca, 3, 6, "foo")
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKRL(b)
		if err != nil {
			return
		}
		k.IsRevoked(cert)
		k.IsRevoked(cert.Key)
		k.Serials(ca.PublicKey())
	})
}

// FuzzMarshalKRL: any set of non-zero serials round-trips through MarshalKRL and
// ParseKRL, and every one of them is revoked.
func FuzzMarshalKRL(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1}, "ajar")
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2}, "")
	ca := testCA(f)
	f.Fuzz(func(t *testing.T, raw []byte, comment string) {
		var serials []uint64
		for len(raw) >= 8 {
			if s := binary.BigEndian.Uint64(raw); s != 0 {
				serials = append(serials, s)
			}
			raw = raw[8:]
		}
		b, err := MarshalKRL(KRLSpec{CA: ca.PublicKey(), Serials: serials, Comment: comment})
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseKRL(b)
		if err != nil {
			t.Fatalf("ParseKRL(MarshalKRL(%v)): %v", serials, err)
		}
		want := slices.Clone(serials)
		slices.Sort(want)
		want = slices.Compact(want)
		if got := k.Serials(ca.PublicKey()); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("serials %v came back as %v", want, got)
		}
		if k.Comment != comment {
			t.Fatalf("comment %q came back as %q", comment, k.Comment)
		}
	})
}
