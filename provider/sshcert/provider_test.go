package sshcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	testNow     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testExpires = testNow.Add(30 * time.Minute)
)

const (
	requestConfig = `{"principals":["ubuntu","deploy"],"source_address":"request"}`
	anyConfig     = `{"principals":["ubuntu"]}`
)

func testProvider(tb testing.TB, config string) *Provider {
	tb.Helper()
	p, err := New("prod-web", json.RawMessage(config), testCA(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func grantRequest(params map[string]string) ajar.GrantRequest {
	return ajar.GrantRequest{
		RequestID: "req-1",
		Target:    "prod-web",
		Requester: "alice@example.com",
		Params:    params,
		ExpiresAt: testExpires,
	}
}

func grant(tb testing.TB, p *Provider, sourceIP string) ajar.Handle {
	tb.Helper()
	var params map[string]string
	if sourceIP != "" {
		params = map[string]string{"source_ip": sourceIP}
	}
	h, err := p.Grant(tb.Context(), grantRequest(params))
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestValidateParams(t *testing.T) {
	request, anyAddr := testProvider(t, requestConfig), testProvider(t, anyConfig)
	for _, tc := range []struct {
		name   string
		p      *Provider
		params map[string]string
		field  string // "" for no error
		msg    string
	}{
		{"v4", request, map[string]string{"source_ip": "203.0.113.7"}, "", ""},
		{"v6", request, map[string]string{"source_ip": "2001:db8::7"}, "", ""},
		{"v4-mapped v6", request, map[string]string{"source_ip": "::ffff:203.0.113.7"}, "", ""},
		{"loopback", request, map[string]string{"source_ip": "127.0.0.1"}, "", ""},
		{"missing", request, nil, "params.source_ip", "is required"},
		{"empty", request, map[string]string{"source_ip": ""}, "params.source_ip", "must not be empty"},
		{"cidr", request, map[string]string{"source_ip": "10.0.0.0/8"}, "params.source_ip", `"10.0.0.0/8" is a network prefix`},
		{"single-host cidr", request, map[string]string{"source_ip": "10.0.0.1/32"}, "params.source_ip", "network prefix"},
		{"host name", request, map[string]string{"source_ip": "example.com"}, "params.source_ip", `"example.com" is not an IP address`},
		{"v4 with port", request, map[string]string{"source_ip": "1.2.3.4:22"}, "params.source_ip", `"1.2.3.4:22" has a port`},
		{"v6 with port", request, map[string]string{"source_ip": "[2001:db8::7]:22"}, "params.source_ip", "has a port"},
		{"zone", request, map[string]string{"source_ip": "fe80::1%eth0"}, "params.source_ip", "has a zone"},
		{"unspecified", request, map[string]string{"source_ip": "0.0.0.0"}, "params.source_ip", "not a host address"},
		{"multicast", request, map[string]string{"source_ip": "ff02::1"}, "params.source_ip", "not a host address"},
		{"leading zeros", request, map[string]string{"source_ip": "010.0.0.1"}, "params.source_ip", "not an IP address"},
		{"spaces", request, map[string]string{"source_ip": " 1.2.3.4"}, "params.source_ip", "not an IP address"},
		{"list", request, map[string]string{"source_ip": "1.2.3.4,5.6.7.8"}, "params.source_ip", "not an IP address"},
		{"unknown param", request, map[string]string{"source_ip": "1.2.3.4", "port": "22"}, "params.port", "accepts only source_ip"},
		{"any: none", anyAddr, nil, "", ""},
		{"any: valid source ip is accepted", anyAddr, map[string]string{"source_ip": "203.0.113.7"}, "", ""},
		{"any: bad source ip is still an error", anyAddr, map[string]string{"source_ip": "example.com"}, "params.source_ip", "not an IP address"},
		{"any: unknown param", anyAddr, map[string]string{"user": "root"}, "params.user", "unknown parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.ValidateParams(tc.params)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("ValidateParams(%v) = %v, want nil", tc.params, err)
				}
				return
			}
			wantCode(t, err, ajar.EINVALID, tc.field)
			if !strings.Contains(ajar.ErrorMessage(err), tc.msg) {
				t.Fatalf("message %q does not contain %q", ajar.ErrorMessage(err), tc.msg)
			}
		})
	}
}

// FuzzValidateParams: every source_ip ValidateParams accepts gives a source-address
// that the CA, OpenSSH and x/crypto accept, and that matches the address itself.
func FuzzValidateParams(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "::1", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4/32", "[::1]:22", ""} {
		f.Add(s)
	}
	p := testProvider(f, requestConfig)
	f.Fuzz(func(t *testing.T, s string) {
		if p.ValidateParams(map[string]string{"source_ip": s}) != nil {
			return
		}
		ip, msg := parseSourceIP(s)
		if msg != "" {
			t.Fatalf("ValidateParams accepted %q but parseSourceIP says %s", s, msg)
		}
		if err := checkSourceAddressList(ip.String()); err != nil {
			t.Fatalf("accepted %q gives a source-address the CA rejects: %v", s, err)
		}
		if parsed := net.ParseIP(ip.String()); parsed == nil || !parsed.Equal(net.IP(ip.AsSlice())) {
			t.Fatalf("accepted %q gives %q, which x/crypto's source-address check would not match", s, ip)
		}
	})
}

func decodeData(tb testing.TB, h ajar.Handle) handleData {
	tb.Helper()
	var d handleData
	dec := json.NewDecoder(bytes.NewReader(h.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestGrantIsIdempotent(t *testing.T) {
	p := testProvider(t, requestConfig)
	req := grantRequest(map[string]string{"source_ip": "203.0.113.7"})
	h1, err := p.Grant(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := p.Grant(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h1.Data, h2.Data) {
		t.Fatalf("Grant twice gave different data:\n%s\n%s", h1.Data, h2.Data)
	}
	if h1.Provider != "ssh-cert" || h1.Version != 1 || h1.Grant.RequestID != "req-1" || !h1.Grant.ExpiresAt.Equal(testExpires) {
		t.Fatalf("handle = %+v", h1)
	}
	want := handleData{
		Principals:    []string{"ubuntu", "deploy"},
		SourceAddress: "203.0.113.7",
		Extensions:    []string{"permit-pty", "permit-user-rc"},
	}
	if d := decodeData(t, h1); !slices.Equal(d.Principals, want.Principals) || d.SourceAddress != want.SourceAddress ||
		!slices.Equal(d.Extensions, want.Extensions) {
		t.Fatalf("handle data = %+v, want %+v", d, want)
	}
}

func TestGrantSourceAddress(t *testing.T) {
	for _, tc := range []struct {
		config, sourceIP, want string
	}{
		{requestConfig, "203.0.113.7", "203.0.113.7"},
		{requestConfig, "2001:DB8:0::7", "2001:db8::7"},
		{requestConfig, "::ffff:203.0.113.7", "203.0.113.7"},
		{anyConfig, "203.0.113.7", ""},
		{anyConfig, "", ""},
	} {
		h := grant(t, testProvider(t, tc.config), tc.sourceIP)
		if got := decodeData(t, h).SourceAddress; got != tc.want {
			t.Errorf("config %s, source_ip %q: source address %q, want %q", tc.config, tc.sourceIP, got, tc.want)
		}
	}
}

func TestGrantRejects(t *testing.T) {
	p := testProvider(t, requestConfig)
	for _, tc := range []struct {
		name  string
		edit  func(*ajar.GrantRequest)
		field string
	}{
		{"missing source ip", func(r *ajar.GrantRequest) { r.Params = nil }, "params.source_ip"},
		{"bad source ip", func(r *ajar.GrantRequest) { r.Params = map[string]string{"source_ip": "10.0.0.0/8"} }, "params.source_ip"},
		{"no request id", func(r *ajar.GrantRequest) { r.RequestID = "" }, "request_id"},
		{"other target", func(r *ajar.GrantRequest) { r.Target = "db" }, "target"},
		{"no expiry", func(r *ajar.GrantRequest) { r.ExpiresAt = time.Time{} }, "expires_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := grantRequest(map[string]string{"source_ip": "203.0.113.7"})
			tc.edit(&req)
			h, err := p.Grant(t.Context(), req)
			if err == nil {
				t.Fatalf("granted %+v", h)
			}
			wantCode(t, err, ajar.EINVALID, tc.field)
		})
	}
}

func TestRevokeIsIdempotent(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	for i := range 2 {
		if err := p.Revoke(t.Context(), h); err != nil {
			t.Fatalf("Revoke #%d: %v", i+1, err)
		}
	}
	intent := ajar.Handle{Provider: "ssh-cert", Version: 1, Grant: h.Grant}
	if err := p.Revoke(t.Context(), intent); err != nil {
		t.Fatalf("Revoke of an intent: %v", err)
	}
	h.Provider = "aws-iam-group"
	wantCode(t, p.Revoke(t.Context(), h), ajar.EINVALID, "")
}

func parseCert(tb testing.TB, line []byte) *ssh.Certificate {
	tb.Helper()
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		tb.Fatalf("parse certificate %q: %v", line, err)
	}
	if len(rest) != 0 || bytes.Count(line, []byte("\n")) != 1 {
		tb.Fatalf("certificate is not one line: %q", line)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		tb.Fatalf("got a %T, want a certificate", pub)
	}
	return cert
}

func TestSignCert(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	_, pubLine := userKey(t, 2)
	userPub, _, _, _, _ := ssh.ParseAuthorizedKey(pubLine)

	line, info, err := p.SignCert(h, pubLine, 42, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, line)

	wantKeyID := "ajar:req-1:alice@example.com"
	switch {
	case cert.Serial != 42:
		t.Errorf("serial = %d", cert.Serial)
	case cert.CertType != ssh.UserCert:
		t.Errorf("type = %d, want user", cert.CertType)
	case cert.KeyId != wantKeyID:
		t.Errorf("key id = %q, want %q", cert.KeyId, wantKeyID)
	case !slices.Equal(cert.ValidPrincipals, []string{"ajar-target:prod-web:ubuntu", "ajar-target:prod-web:deploy"}):
		t.Errorf("principals = %q", cert.ValidPrincipals)
	case cert.ValidAfter != uint64(testNow.Add(-time.Minute).Unix()):
		t.Errorf("valid after = %s, want now-1m", time.Unix(int64(cert.ValidAfter), 0).UTC())
	case cert.ValidBefore != uint64(testExpires.Unix()):
		t.Errorf("valid before = %s, want the grant's expiry %s", time.Unix(int64(cert.ValidBefore), 0).UTC(), testExpires)
	case len(cert.CriticalOptions) != 1 || cert.CriticalOptions["source-address"] != "203.0.113.7":
		t.Errorf("critical options = %q, want only source-address 203.0.113.7", cert.CriticalOptions)
	case !bytes.Equal(cert.Key.Marshal(), userPub.Marshal()):
		t.Error("certificate certifies another key")
	case !bytes.Equal(cert.SignatureKey.Marshal(), p.ca.PublicKey().Marshal()):
		t.Error("certificate not signed by the CA")
	}
	var exts []string
	for e, v := range cert.Extensions {
		if v != "" {
			t.Errorf("extension %s has value %q, want empty", e, v)
		}
		exts = append(exts, e)
	}
	slices.Sort(exts)
	if !slices.Equal(exts, []string{"permit-pty", "permit-user-rc"}) {
		t.Errorf("extensions = %q, want permit-pty and permit-user-rc only", exts)
	}

	wantInfo := ajar.SSHCert{
		Serial:      42,
		RequestID:   "req-1",
		KeyID:       wantKeyID,
		Principals:  []string{"ubuntu", "deploy"},
		Fingerprint: ssh.FingerprintSHA256(userPub),
		ValidAfter:  testNow.Add(-time.Minute),
		ValidBefore: testExpires,
		IssuedAt:    testNow,
		PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(userPub))),
	}
	if got, _ := json.Marshal(info); !bytes.Equal(got, must(json.Marshal(wantInfo))) {
		t.Errorf("info = %s\nwant   %s", got, must(json.Marshal(wantInfo)))
	}

	// x/crypto's checker: the CA's signature verifies, the principals are the
	// configured ones, and the window is [now-1m, expiry).
	clock := testNow
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			return bytes.Equal(auth.Marshal(), p.ca.PublicKey().Marshal())
		},
		SupportedCriticalOptions: []string{"source-address"},
		Clock:                    func() time.Time { return clock },
	}
	if !checker.IsUserAuthority(cert.SignatureKey) {
		t.Fatal("the CA is not the certificate's authority")
	}
	for _, principal := range []string{Principal("prod-web", "ubuntu"), Principal("prod-web", "deploy")} {
		if err := checker.CheckCert(principal, cert); err != nil {
			t.Errorf("CheckCert(%s): %v", principal, err)
		}
	}
	// Bare logins and other targets' principals are not granted: a certificate
	// opens only the hosts of its own target.
	for _, principal := range []string{"ubuntu", "deploy", Principal("dev-web", "ubuntu"), Principal("prod-web", "root"), "root", "ubuntu2", ""} {
		if err := checker.CheckCert(principal, cert); err == nil {
			t.Errorf("CheckCert(%q) accepted a principal not granted", principal)
		}
	}
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{testNow.Add(-time.Minute), true},
		{testNow.Add(-time.Minute - time.Second), false},
		{testExpires.Add(-time.Second), true},
		{testExpires, false},
	} {
		clock = tc.at
		if err := checker.CheckCert(Principal("prod-web", "ubuntu"), cert); (err == nil) != tc.ok {
			t.Errorf("CheckCert at %s: %v, want ok=%v", tc.at, err, tc.ok)
		}
	}

	// OpenSSH's own rendering.
	out := keygenList(t, line)
	for _, want := range []string{
		"Type: ssh-ed25519-cert-v01@openssh.com user certificate",
		"Signing CA: ED25519 " + ssh.FingerprintSHA256(p.ca.PublicKey()),
		`Key ID: "ajar:req-1:alice@example.com"`,
		"Serial: 42",
		"Valid: from 2026-03-01T11:59:00 to 2026-03-01T12:30:00",
		"\n                ajar-target:prod-web:ubuntu\n                ajar-target:prod-web:deploy\n",
		"Critical Options: \n                source-address 203.0.113.7\n",
		"Extensions: \n                permit-pty\n                permit-user-rc\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, out)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// keygenList returns `ssh-keygen -L` for a certificate, with times in UTC.
func keygenList(tb testing.TB, certLine []byte) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cert.pub"), certLine, 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(sshKeygen(tb), "-L", "-f", "cert.pub")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	return string(out)
}

// TestSignCertGolden pins OpenSSH's rendering of a certificate from fixed keys, for
// both source address modes and added extensions. Run with -update to rewrite.
func TestSignCertGolden(t *testing.T) {
	for _, tc := range []struct {
		name, config, sourceIP string
	}{
		{"request-v6", `{"principals":["ubuntu"],"source_address":"request","extensions":["permit-port-forwarding"]}`, "2001:db8::7"},
		{"any", anyConfig, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testProvider(t, tc.config)
			_, pubLine := userKey(t, 2)
			line, _, err := p.SignCert(grant(t, p, tc.sourceIP), pubLine, 7, testNow)
			if err != nil {
				t.Fatal(err)
			}
			got := keygenList(t, line)
			path := filepath.Join("testdata", "ssh-keygen-L-"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("ssh-keygen -L output differs from %s:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

func TestSignCertUsesHandleNotTodaysConfig(t *testing.T) {
	old := testProvider(t, `{"principals":["ubuntu"],"source_address":"request"}`)
	h := grant(t, old, "203.0.113.7")
	// The target's config changes after the grant: more principals, no source address.
	today := testProvider(t, `{"principals":["root"],"extensions":["permit-agent-forwarding"]}`)
	_, pubLine := userKey(t, 2)
	line, info, err := today.SignCert(h, pubLine, 9, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, line)
	if !slices.Equal(cert.ValidPrincipals, []string{Principal("prod-web", "ubuntu")}) || !slices.Equal(info.Principals, []string{"ubuntu"}) {
		t.Errorf("principals = %q, want the handle's [ubuntu]", cert.ValidPrincipals)
	}
	if cert.CriticalOptions["source-address"] != "203.0.113.7" {
		t.Errorf("source-address = %q, want the handle's", cert.CriticalOptions["source-address"])
	}
	if _, ok := cert.Extensions["permit-agent-forwarding"]; ok {
		t.Error("today's extensions leaked into a certificate for an older grant")
	}
}

func TestSignCertRefuses(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	_, pubLine := userKey(t, 2)
	for _, tc := range []struct {
		name         string
		edit         func(*ajar.Handle)
		serial       uint64
		now          time.Time
		code, errHas string
	}{
		{"at expiry", nil, 1, testExpires, ajar.ECONFLICT, "request has expired"},
		{"after expiry", nil, 1, testExpires.Add(time.Hour), ajar.ECONFLICT, "request has expired"},
		{"intent only", func(h *ajar.Handle) { h.Data = nil }, 1, testNow, ajar.ECONFLICT, "not been made"},
		{"other provider", func(h *ajar.Handle) { h.Provider = "aws-sts" }, 1, testNow, ajar.EINVALID, "aws-sts"},
		{"other version", func(h *ajar.Handle) { h.Version = 2 }, 1, testNow, ajar.EINVALID, "version 2"},
		{"serial 0", nil, 0, testNow, ajar.EINVALID, "serial"},
		{"corrupt data", func(h *ajar.Handle) { h.Data = json.RawMessage(`[`) }, 1, testNow, ajar.EINTERNAL, "decode handle"},
		{"requester with newline", func(h *ajar.Handle) { h.Grant.Requester = "eve\nfake log line" }, 1, testNow, ajar.EINVALID, "key id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h
			h.Grant.Params = nil
			if tc.edit != nil {
				tc.edit(&h)
			}
			cert, _, err := p.SignCert(h, pubLine, tc.serial, tc.now)
			if err == nil {
				t.Fatalf("signed %s", cert)
			}
			if ajar.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v (code %s), want code %s containing %q", err, ajar.ErrorCode(err), tc.code, tc.errHas)
			}
		})
	}
}

func authorizedKey(tb testing.TB, pub any) string {
	tb.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(k))
}

func TestSignCertPublicKeyInput(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	_, edLine := userKey(t, 2)
	_, edLine3 := userKey(t, 3)
	someCert, _, err := p.SignCert(h, edLine, 1, testNow)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := func(bits int) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return authorizedKey(t, &k.PublicKey)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := strings.TrimSpace(string(edLine))

	for _, tc := range []struct {
		name  string
		key   string
		errIs string // "" for accepted
	}{
		{"ed25519", ed, ""},
		{"ed25519 with comment and CRLF", ed + " alice@laptop\r\n", ""},
		{"ecdsa p256", authorizedKey(t, &ec.PublicKey), ""},
		{"rsa 2048", rsaKey(2048), ""},
		{"rsa 2047", rsaKey(2047), "has 2047 bits"},
		{"rsa 1024", rsaKey(1024), "has 1024 bits"},
		{"empty", " \n", "is required"},
		{"garbage", "hello", "not an OpenSSH public key"},
		{"truncated", ed[:30], "not an OpenSSH public key"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----", "not an OpenSSH public key"},
		{"two keys", ed + "\n" + string(edLine3), "exactly one public key"},
		{"comment line first", "# my key\n" + ed, "exactly one public key"},
		{"options", `from="10.0.0.0/8",command="id" ` + ed, "without authorized_keys options"},
		{"certificate", string(someCert), "is a certificate"},
		{"too long", ed + " " + strings.Repeat("x", maxPublicKeyLen), "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, info, err := p.SignCert(h, []byte(tc.key), 5, testNow)
			if tc.errIs == "" {
				if err != nil {
					t.Fatal(err)
				}
				cert := parseCert(t, line)
				if info.Fingerprint != ssh.FingerprintSHA256(cert.Key) || !strings.HasPrefix(info.Fingerprint, "SHA256:") {
					t.Fatalf("fingerprint %q is not the certified key's", info.Fingerprint)
				}
				return
			}
			wantCode(t, err, ajar.EINVALID, "public_key")
			if !strings.Contains(ajar.ErrorMessage(err), tc.errIs) {
				t.Fatalf("message %q does not contain %q", ajar.ErrorMessage(err), tc.errIs)
			}
		})
	}
}

// FuzzParseUserKey: parseUserKey never panics and accepts only plain keys of the
// accepted types.
func FuzzParseUserKey(f *testing.F) {
	_, ed := userKey(f, 2)
	f.Add(string(ed))
	f.Add(`command="x" ` + string(ed))
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ")
	f.Fuzz(func(t *testing.T, s string) {
		key, err := parseUserKey([]byte(s))
		if err != nil {
			if ajar.ErrorField(err) != "public_key" {
				t.Fatalf("error without field public_key: %v", err)
			}
			return
		}
		if _, ok := key.(*ssh.Certificate); ok || !slices.Contains(acceptedKeyTypes, key.Type()) {
			t.Fatalf("accepted a %s", key.Type())
		}
	})
}

// TestSourceAddressEnforced logs in to an x/crypto SSH server over loopback TCP: a
// certificate for 127.0.0.1 is accepted, one for another address is refused at
// authentication, not only by inspection.
func TestSourceAddressEnforced(t *testing.T) {
	ca := testCA(t)
	p, err := New("prod-web", json.RawMessage(requestConfig), ca)
	if err != nil {
		t.Fatal(err)
	}
	addr := startSSHServer(t, ca)
	userSigner, pubLine := userKey(t, 2)
	now := time.Now()

	for _, tc := range []struct {
		sourceIP, user string
		ok             bool
	}{
		{"127.0.0.1", "ubuntu", true},
		{"127.0.0.1", "deploy", true},
		{"127.0.0.1", "root", false},
		{"203.0.113.7", "ubuntu", false},
		{"::1", "ubuntu", false},
	} {
		req := grantRequest(map[string]string{"source_ip": tc.sourceIP})
		req.ExpiresAt = now.Add(time.Hour)
		h, err := p.Grant(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		line, _, err := p.SignCert(h, pubLine, 11, now)
		if err != nil {
			t.Fatal(err)
		}
		certSigner, err := ssh.NewCertSigner(parseCert(t, line), userSigner)
		if err != nil {
			t.Fatal(err)
		}
		client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
			User:            tc.user,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(certSigner)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), // the test checks user auth, not the host
			Timeout:         10 * time.Second,
		})
		if client != nil {
			client.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("login as %s with source-address %s: err = %v, want ok=%v", tc.user, tc.sourceIP, err, tc.ok)
		}
	}
}

// startSSHServer runs an SSH server on 127.0.0.1 for a host of target prod-web
// that accepts user certificates from ca and nothing else, and returns its
// address. Like sshd with "ajar node principals" as its
// AuthorizedPrincipalsCommand, it wants Principal("prod-web", login).
func startSSHServer(tb testing.TB, ca *CA) string {
	tb.Helper()
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			return bytes.Equal(auth.Marshal(), ca.PublicKey().Marshal())
		},
		SupportedCriticalOptions: []string{"source-address"},
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		cert, ok := key.(*ssh.Certificate)
		if !ok || cert.CertType != ssh.UserCert || !checker.IsUserAuthority(cert.SignatureKey) {
			return nil, errors.New("not a user certificate of the CA")
		}
		if err := checker.CheckCert(Principal("prod-web", conn.User()), cert); err != nil {
			return nil, err
		}
		return &cert.Permissions, nil // x/crypto enforces the source-address option in it
	}}
	hostKey, _ := userKey(tb, 9)
	cfg.AddHostKey(hostKey)

	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0).String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				go func() {
					for ch := range chans {
						ch.Reject(ssh.Prohibited, "no channels")
					}
				}()
				sc.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkSignCert measures one certificate for an active grant: handle decode,
// key parse, sign and encode.
func BenchmarkSignCert(b *testing.B) {
	p := testProvider(b, requestConfig)
	h := grant(b, p, "203.0.113.7")
	_, pubLine := userKey(b, 2)
	var serial uint64
	for b.Loop() {
		serial++
		if _, _, err := p.SignCert(h, pubLine, serial, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
