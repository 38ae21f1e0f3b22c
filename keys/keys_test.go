package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testKey returns raw key bytes 0, 1, 2... plus seed, and their master key.
func testKey(tb testing.TB, seed byte) ([]byte, *MasterKey) {
	tb.Helper()
	raw := make([]byte, KeySize)
	for i := range raw {
		raw[i] = byte(i) + seed
	}
	k, err := NewMasterKey(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return raw, k
}

func TestSealOpenRoundTrip(t *testing.T) {
	_, k := testKey(t, 0)
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("secret"), 1000)} {
		sealed, err := k.Seal("ssh-ca", pt)
		if err != nil {
			t.Fatal(err)
		}
		if sealed[0] != sealVersion || len(sealed) != 1+12+len(pt)+16 {
			t.Fatalf("sealed layout: version %d, len %d for %d plaintext bytes", sealed[0], len(sealed), len(pt))
		}
		if len(pt) >= 8 && bytes.Contains(sealed, pt) {
			t.Fatal("sealed value contains the plaintext")
		}
		got, err := k.Open("ssh-ca", sealed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, want %q", got, pt)
		}
	}
	a, _ := k.Seal("n", []byte("same"))
	b, _ := k.Seal("n", []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal: nonce not random")
	}
}

func TestOpenFails(t *testing.T) {
	_, k := testKey(t, 0)
	_, other := testKey(t, 1)
	sealed, err := k.Seal("audit-checkpoint-key", []byte("private key"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name   string
		key    *MasterKey
		as     string
		sealed []byte
		want   string
	}{
		{"wrong name", k, "ssh-ca", sealed, ErrWrongKeyOrTampered.Error()},
		{"wrong key", other, "audit-checkpoint-key", sealed, ErrWrongKeyOrTampered.Error()},
		{"tampered nonce", k, "audit-checkpoint-key", flip(1), ErrWrongKeyOrTampered.Error()},
		{"tampered ciphertext", k, "audit-checkpoint-key", flip(14), ErrWrongKeyOrTampered.Error()},
		{"tampered tag", k, "audit-checkpoint-key", flip(len(sealed) - 1), ErrWrongKeyOrTampered.Error()},
		{"tampered version", k, "audit-checkpoint-key", flip(0), "unknown format version"},
		{"truncated", k, "audit-checkpoint-key", sealed[:20], "too short"},
		{"empty", k, "audit-checkpoint-key", nil, "too short"},
		{"empty name", k, "", sealed, "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(tt.as, tt.sealed)
			if err == nil {
				t.Fatalf("Open succeeded: %q", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if strings.HasPrefix(tt.name, "wrong") || strings.HasPrefix(tt.name, "tampered ") && tt.name != "tampered version" {
				if !errors.Is(err, ErrWrongKeyOrTampered) {
					t.Fatalf("error %v is not ErrWrongKeyOrTampered", err)
				}
			}
		})
	}
}

func TestNewMasterKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewMasterKey(make([]byte, n)); err == nil {
			t.Errorf("NewMasterKey accepted %d bytes", n)
		}
	}
}

func TestLoadMasterKeyEnv(t *testing.T) {
	raw, want := testKey(t, 7)
	sealed, _ := want.Seal("n", []byte("v"))
	for _, enc := range []string{
		base64.StdEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw),
		"  " + base64.StdEncoding.EncodeToString(raw) + "\n",
	} {
		k, err := LoadMasterKey(enc, "")
		if err != nil {
			t.Fatalf("LoadMasterKey(%q): %v", enc, err)
		}
		if _, err := k.Open("n", sealed); err != nil {
			t.Fatalf("key from %q is not the same key: %v", enc, err)
		}
	}
}

func TestLoadMasterKeyRejects(t *testing.T) {
	secretish := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xAB}, 31))
	tests := []struct {
		name, env, want string
	}{
		{"short", secretish, "decodes to 31 bytes, want 32"},
		{"long", base64.StdEncoding.EncodeToString(make([]byte, 48)), "decodes to 48 bytes, want 32"},
		{"not base64", "not*base64*at*all*" + secretish, "not valid base64"},
		{"hex", strings.Repeat("ab", 32), "decodes to 48 bytes"},
		{"blank", "   \n", "empty"},
		{"none", "", "no master key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadMasterKey(tt.env, "")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if strings.TrimSpace(tt.env) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.env)[:8]) {
				t.Fatalf("error %q quotes the key material", err)
			}
		})
	}
	if _, err := LoadMasterKey(secretish, "/some/file"); err == nil || !strings.Contains(err.Error(), "set only one") {
		t.Fatalf("env and file both set: err = %v", err)
	}
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return path
}

func TestLoadMasterKeyFile(t *testing.T) {
	raw, want := testKey(t, 3)
	sealed, _ := want.Seal("n", []byte("v"))
	path := writeKeyFile(t, "\n"+base64.StdEncoding.EncodeToString(raw)+"\n\n", 0o600)
	k, err := LoadMasterKey("", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open("n", sealed); err != nil {
		t.Fatalf("key from file is not the same key: %v", err)
	}
	if k, err := LoadMasterKey("", writeKeyFile(t, base64.StdEncoding.EncodeToString(raw), 0o400)); err != nil || k == nil {
		t.Fatalf("read-only owner file refused: %v", err)
	}
}

func TestLoadMasterKeyFileRejects(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(make([]byte, KeySize))
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o602, 0o620} {
		path := writeKeyFile(t, good, mode)
		_, err := LoadMasterKey("", path)
		if err == nil {
			t.Errorf("mode %04o accepted", mode)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "group or others") || !strings.Contains(msg, fmt.Sprintf("%04o", mode)) || strings.Contains(msg, good) {
			t.Errorf("mode %04o: unclear error %q", mode, msg)
		}
	}

	if _, err := LoadMasterKey("", writeKeyFile(t, base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600)); err == nil || !strings.Contains(err.Error(), "decodes to 16 bytes") {
		t.Errorf("short key in file: err = %v", err)
	}
	if _, err := LoadMasterKey("", writeKeyFile(t, "", 0o600)); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: err = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := LoadMasterKey("", missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
	if _, err := LoadMasterKey("", t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: err = %v", err)
	}
}

func TestEnsureDevMasterKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	k1, err := EnsureDevMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("dev key file mode %04o, want 0600", perm)
	}
	b, _ := os.ReadFile(path)
	if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err != nil || len(raw) != KeySize {
		t.Fatalf("dev key file does not hold a base64 key: %v, %d bytes", err, len(raw))
	}

	sealed, _ := k1.Seal("n", []byte("v"))
	k2, err := EnsureDevMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open("n", sealed); err != nil {
		t.Fatalf("second EnsureDevMasterKey did not reuse the key: %v", err)
	}
	b2, _ := os.ReadFile(path)
	if !bytes.Equal(b, b2) {
		t.Fatal("second call rewrote the key file")
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the key file", len(ents))
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDevMasterKey(path); err == nil || !strings.Contains(err.Error(), "group or others") {
		t.Fatalf("group-readable dev key file: err = %v", err)
	}
}

func TestEnsureDevMasterKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	keys := make([]*MasterKey, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := EnsureDevMasterKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = k
		})
	}
	wg.Wait()
	final, err := EnsureDevMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := final.Seal("n", []byte("v"))
	for i, k := range keys {
		if k == nil {
			continue // failed above
		}
		if _, err := k.Open("n", sealed); err != nil {
			t.Errorf("caller %d got a different key than the one on disk", i)
		}
	}
}

func TestMasterKeyNeverPrinted(t *testing.T) {
	raw, k := testKey(t, 0x41) // bytes 'A', 'B', ... so a leak would be readable
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprint(*k), fmt.Sprintf("%v %+v %#v %s %x %X %d %q", k, k, k, k, k, k, k, k),
		fmt.Sprintf("%+v %#v %x", *k, *k, *k), fmt.Sprintf("%v", struct{ K *MasterKey }{k}),
		fmt.Sprintf("%+v", []*MasterKey{k}),
	} {
		for _, leak := range []string{string(raw[:8]), fmt.Sprintf("%x", raw[:8]), fmt.Sprint(raw[:8])[1:12]} {
			if strings.Contains(s, leak) {
				t.Fatalf("formatted key %q contains key material", s)
			}
		}
		if !strings.Contains(s, "MasterKey(redacted)") {
			t.Fatalf("formatted key %q is not redacted", s)
		}
	}
}

func FuzzOpen(f *testing.F) {
	_, k := testKey(f, 0)
	// A fixed nonce, so every fuzz worker process agrees on the one valid value.
	nonce := make([]byte, 12)
	sealed := k.aead.Seal(append([]byte{sealVersion}, nonce...), nonce, []byte("value"), additionalData("n"))
	if pt, err := k.Open("n", sealed); err != nil || string(pt) != "value" {
		f.Fatalf("hand-sealed value does not open: %v", err)
	}
	f.Add(sealed)
	f.Add([]byte{})
	f.Add([]byte{sealVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := k.Open("n", b)
		if err == nil && !bytes.Equal(b, sealed) {
			t.Fatalf("forged value opened: %q", pt)
		}
	})
}
