package sshcert

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

const keysConfig = `{"principals":["ubuntu","deploy"],"source_address":"request","mode":"authorized-keys",` +
	`"extensions":["permit-port-forwarding"],"nodes":["group:web-hosts","node-9@example.com"]}`

func TestAuthorizedKeysMode(t *testing.T) {
	p := testProvider(t, keysConfig)
	h := grant(t, p, "203.0.113.7")
	_, line := userKey(t, 2)

	if !p.TakesPlainKeys(h) {
		t.Fatal("TakesPlainKeys = false for an authorized-keys grant")
	}
	cert, info, err := p.SignCert(h, line, 77, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		t.Fatalf("authorized-keys mode signed a certificate: %s", cert)
	}
	if info.Serial != 77 || info.RequestID != "req-1" || info.KeyID != "ajar:req-1:alice@example.com" ||
		!info.ValidBefore.Equal(testExpires) || info.PublicKey != strings.TrimSpace(string(line)) ||
		!strings.HasPrefix(info.Fingerprint, "SHA256:") {
		t.Fatalf("info = %+v", info)
	}
	if _, _, err := p.SignCert(h, []byte("ssh-rsa AAAA"), 78, testNow); ajar.ErrorField(err) != "public_key" {
		t.Fatalf("bad key: err = %v, want field public_key", err)
	}

	lines, err := p.AuthorizedKeys(h, []ajar.SSHCert{info}, "deploy", testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := `expiry-time="20260301123000Z",restrict,port-forwarding,pty,user-rc,from="203.0.113.7" ` +
		strings.TrimSpace(string(line)) + " ajar:req-1:alice@example.com"
	if len(lines) != 1 || lines[0] != want {
		t.Fatalf("AuthorizedKeys = %q\nwant          [%q]", lines, want)
	}
	// The line parses as an authorized_keys line with those options.
	if _, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(lines[0])); err != nil || len(opts) != 6 {
		t.Fatalf("ParseAuthorizedKey: %v, options %q", err, opts)
	}

	for _, tc := range []struct {
		name string
		user string
		keys []ajar.SSHCert
		now  time.Time
	}{
		{"user not a principal", "root", []ajar.SSHCert{info}, testNow},
		{"expired", "ubuntu", []ajar.SSHCert{info}, testExpires},
		{"another request's key", "ubuntu", []ajar.SSHCert{func() ajar.SSHCert { c := info; c.RequestID = "req-2"; return c }()}, testNow},
		{"no key kept", "ubuntu", []ajar.SSHCert{func() ajar.SSHCert { c := info; c.PublicKey = ""; return c }()}, testNow},
	} {
		if lines, err := p.AuthorizedKeys(h, tc.keys, tc.user, tc.now); err != nil || len(lines) != 0 {
			t.Errorf("%s: AuthorizedKeys = %q, %v; want none", tc.name, lines, err)
		}
	}

	// A key recorded as valid past the grant is cut at the grant's expiry.
	long := info
	long.ValidBefore = testExpires.Add(time.Hour)
	lines, _ = p.AuthorizedKeys(h, []ajar.SSHCert{long}, "ubuntu", testNow)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], `expiry-time="20260301123000Z"`) {
		t.Fatalf("AuthorizedKeys = %q, want the grant's expiry", lines)
	}
}

func TestAuthorizedKeysCertificateMode(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	_, line := userKey(t, 2)
	if p.TakesPlainKeys(h) {
		t.Fatal("TakesPlainKeys = true for a certificate grant")
	}
	cert, info, err := p.SignCert(h, line, 5, testNow)
	if err != nil || cert == nil {
		t.Fatalf("SignCert: %v, cert %q", err, cert)
	}
	if info.PublicKey != strings.TrimSpace(string(line)) {
		t.Fatalf("info.PublicKey = %q, want the certified key", info.PublicKey)
	}
	if lines, err := p.AuthorizedKeys(h, []ajar.SSHCert{info}, "ubuntu", testNow); err != nil || len(lines) != 0 {
		t.Fatalf("certificate mode: AuthorizedKeys = %q, %v; want none", lines, err)
	}
}

func TestAllowsNode(t *testing.T) {
	p := testProvider(t, keysConfig)
	for _, tc := range []struct {
		u    ajar.User
		want bool
	}{
		{ajar.User{ID: "node-1@example.com", Groups: []string{"web-hosts"}}, true},
		{ajar.User{ID: "node-9@example.com"}, true},
		{ajar.User{ID: "alice@example.com", Groups: []string{"engineers"}}, false},
	} {
		if got := p.AllowsNode(tc.u); got != tc.want {
			t.Errorf("AllowsNode(%v) = %t, want %t", tc.u, got, tc.want)
		}
	}
	if testProvider(t, anyConfig).AllowsNode(ajar.User{ID: "node-9@example.com", Groups: []string{"web-hosts"}}) {
		t.Error("a target without nodes allows a node")
	}
}

func TestCheckPublicKey(t *testing.T) {
	p := testProvider(t, anyConfig)
	_, line := userKey(t, 2)
	if err := p.CheckPublicKey(line); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "nonsense", "-----BEGIN OPENSSH PRIVATE KEY-----"} {
		if err := p.CheckPublicKey([]byte(bad)); ajar.ErrorField(err) != "public_key" {
			t.Errorf("CheckPublicKey(%q) = %v, want a public_key error", bad, err)
		}
	}
}

func TestRenew(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	later := testExpires.Add(time.Hour)
	h2, err := p.Renew(t.Context(), h, later)
	if err != nil || !h2.Grant.ExpiresAt.Equal(later) || string(h2.Data) != string(h.Data) {
		t.Fatalf("Renew = %+v, %v", h2, err)
	}
	_, line := userKey(t, 2)
	_, info, err := p.SignCert(h2, line, 9, testExpires.Add(time.Minute))
	if err != nil || !info.ValidBefore.Equal(later) {
		t.Fatalf("a certificate after the extension: valid before %v, %v", info.ValidBefore, err)
	}
	if _, err := p.Renew(t.Context(), ajar.Handle{Provider: "other"}, later); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("another provider's handle: %v", err)
	}
}
