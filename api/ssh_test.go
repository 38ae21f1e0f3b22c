package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/sshhost"
	"github.com/ajar-dev/ajar/sshhost/wire"
)

// fakeSSHCore adds the SSH methods to fakeCore: SSHAccess as a core, and the
// host-agent protocol (SSHHosts).
type fakeSSHCore struct {
	*fakeCore
	krl      sshhost.SSHKRL
	access   sshaccess.Input
	keysArgs []string
	report   wire.SSHSessionReport
}

func (f *fakeSSHCore) SSHKRL(ctx context.Context) (*sshhost.SSHKRL, error) {
	return &f.krl, f.called("SSHKRL", ajar.User{})
}

func (f *fakeSSHCore) SSHAccess(ctx context.Context, u ajar.User, in sshaccess.Input) (*sshaccess.Output, error) {
	if err := f.called("SSHAccess", u); err != nil {
		return nil, err
	}
	f.access = in
	r, _ := f.lookup("r1")
	return &sshaccess.Output{Request: r, Reused: true,
		Cert: &ajar.SSHCertOutput{Certificate: "ssh-ed25519-cert-v01@openssh.com AAAA", Info: ajar.SSHCert{Serial: 9}}}, nil
}

func (f *fakeSSHCore) CreateWithCert(ctx context.Context, u ajar.User, in ajar.CreateInput, publicKey string) (*ajar.Request, *ajar.SSHCertOutput, error) {
	if err := f.called("CreateWithCert", u); err != nil {
		return nil, nil, err
	}
	if publicKey != in.SSHPublicKey {
		return nil, nil, fmt.Errorf("the key passed (%q) is not the body's (%q)", publicKey, in.SSHPublicKey)
	}
	r, _ := f.lookup("r1")
	return r, &ajar.SSHCertOutput{Certificate: "ssh-ed25519-cert-v01@openssh.com AAAA", Info: ajar.SSHCert{Serial: 11, RequestID: r.ID}}, nil
}

func (f *fakeSSHCore) SSHAuthorizedKeys(ctx context.Context, node ajar.User, target, user string) ([]string, error) {
	if err := f.called("SSHAuthorizedKeys", node); err != nil {
		return nil, err
	}
	f.keysArgs = []string{target, user}
	return []string{`expiry-time="20300101000000Z",restrict ssh-ed25519 AAAA a`, `expiry-time="20300101000000Z",restrict ssh-ed25519 BBBB b`}, nil
}

func (f *fakeSSHCore) ReportSSHSessions(ctx context.Context, node ajar.User, rep wire.SSHSessionReport) (*wire.SSHSessionsOutput, error) {
	if err := f.called("ReportSSHSessions", node); err != nil {
		return nil, err
	}
	f.report = rep
	out := &wire.SSHSessionsOutput{Sessions: []wire.SSHSessionVerdict{}}
	for _, s := range rep.Sessions {
		out.Sessions = append(out.Sessions, wire.SSHSessionVerdict{ID: s.ID, Known: true, End: true, Reason: "revoked"})
	}
	return out, nil
}

// newSSHTestServer is a server for core that serves the host-agent routes
// through core too.
func newSSHTestServer(t *testing.T, core *fakeSSHCore) *Server {
	t.Helper()
	return NewServer(core, idsOf(core), Options{Addr: "127.0.0.1:0", SSHHosts: core})
}

func TestSSHRoutes(t *testing.T) {
	core := &fakeSSHCore{fakeCore: newFakeCore(), krl: sshhost.SSHKRL{Data: []byte("SSHKRL\n\x00data"), ETag: `"abc"`}}
	s := newSSHTestServer(t, core)
	h := s.Handler()

	// The KRL is public, binary, and answers 304 to its ETag.
	w := call(t, h, "GET", "/v1/ssh/krl", "", "")
	if w.Code != 200 || w.Body.String() != "SSHKRL\n\x00data" || w.Header().Get("ETag") != `"abc"` ||
		w.Header().Get("Content-Type") != KRLContentType {
		t.Fatalf("GET krl: %d %q %v", w.Code, w.Body, w.Header())
	}
	r := httptest.NewRequest("GET", "/v1/ssh/krl", nil)
	r.Header.Set("If-None-Match", `"old", "abc"`)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("conditional GET krl: %d %q", w.Code, w.Body)
	}
	wantError(t, call(t, h, "GET", "/v1/ssh/krl?x=1", "", ""), 400, ajar.EINVALID, "x")

	// Access needs a token and a strict body.
	wantError(t, call(t, h, "POST", "/v1/ssh/access", "", `{}`), 401, ajar.EUNAUTH, "")
	wantError(t, call(t, h, "POST", "/v1/ssh/access", "alice-token", `{"target":"t","key":"x"}`), 400, ajar.EINVALID, "key")
	w = call(t, h, "POST", "/v1/ssh/access", "alice-token", `{"target":"prod-web","duration":"5m","params":{"source_ip":"1.2.3.4"},"public_key":"ssh-ed25519 AAAA"}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"reused":true`) || !strings.Contains(w.Body.String(), `"approvals":[]`) {
		t.Fatalf("POST access: %d %s", w.Code, w.Body)
	}
	if core.access.Target != "prod-web" || core.access.PublicKey != "ssh-ed25519 AAAA" || core.access.Params["source_ip"] != "1.2.3.4" {
		t.Fatalf("access input = %+v", core.access)
	}

	// Keys: text lines; both query values are required.
	w = call(t, h, "GET", "/v1/ssh/keys?target=web&user=deploy", "bob-token", "")
	if w.Code != 200 || strings.Count(w.Body.String(), "\n") != 2 || core.keysArgs[0] != "web" || core.keysArgs[1] != "deploy" {
		t.Fatalf("GET keys: %d %q %v", w.Code, w.Body, core.keysArgs)
	}
	wantError(t, call(t, h, "GET", "/v1/ssh/keys?target=web", "bob-token", ""), 400, ajar.EINVALID, "user")
	wantError(t, call(t, h, "GET", "/v1/ssh/keys?target=web&user=a&user=b", "bob-token", ""), 400, ajar.EINVALID, "user")

	// Sessions: each session is decoded strictly too.
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339)
	w = call(t, h, "POST", "/v1/ssh/sessions", "bob-token",
		`{"target":"web","host":"h","sessions":[{"id":"1-2","event":"opened","user":"u","key":"k","started":"`+started+`"}]}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"end":true`) || core.report.Sessions[0].Started == nil {
		t.Fatalf("POST sessions: %d %s %+v", w.Code, w.Body, core.report)
	}
	wantError(t, call(t, h, "POST", "/v1/ssh/sessions", "bob-token", `{"target":"web","host":"h","sessions":[{"id":"1","bogus":1}]}`),
		400, ajar.EINVALID, "sessions[0]")
	wantError(t, call(t, h, "POST", "/v1/ssh/sessions", "bob-token", `{"target":"web","host":"h","sessions":[{"id":7}]}`),
		400, ajar.EINVALID, "sessions[0]")

	// A server without SSHHosts, or whose core lacks SSHAccess, answers not_found.
	plain, _ := newTestServer(t, newFakeCore())
	wantError(t, call(t, plain.Handler(), "GET", "/v1/ssh/krl", "", ""), 404, ajar.ENOTFOUND, "")
	wantError(t, call(t, plain.Handler(), "GET", "/v1/ssh/keys?target=web&user=deploy", "bob-token", ""), 404, ajar.ENOTFOUND, "")
	wantError(t, call(t, plain.Handler(), "POST", "/v1/ssh/sessions", "bob-token", `{"target":"web","host":"h","sessions":[]}`), 404, ajar.ENOTFOUND, "")
	wantError(t, call(t, plain.Handler(), "POST", "/v1/ssh/access", "alice-token", `{"target":"prod-web"}`), 404, ajar.ENOTFOUND, "")
}

func TestSSHClient(t *testing.T) {
	core := &fakeSSHCore{fakeCore: newFakeCore(), krl: sshhost.SSHKRL{Data: []byte("krl-bytes"), ETag: `"e1"`}}
	s := newSSHTestServer(t, core)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := NewClient(s.URL(), "bob-token")
	ctx := t.Context()
	data, etag, notModified, err := c.SSHKRL(ctx, "")
	if err != nil || string(data) != "krl-bytes" || etag != `"e1"` || notModified {
		t.Fatalf("SSHKRL = %q %q %t %v", data, etag, notModified, err)
	}
	if data, _, notModified, err := c.SSHKRL(ctx, `"e1"`); err != nil || !notModified || data != nil {
		t.Fatalf("SSHKRL with the ETag = %q %t %v", data, notModified, err)
	}
	lines, err := c.SSHAuthorizedKeys(ctx, "web", "deploy")
	if err != nil || len(lines) != 2 {
		t.Fatalf("SSHAuthorizedKeys = %q, %v", lines, err)
	}
	out, err := c.ReportSSHSessions(ctx, wire.SSHSessionReport{Target: "web", Host: "h",
		Sessions: []wire.SSHSession{{ID: "a", Event: wire.SessionOpen, User: "u", Key: "k"}}})
	if err != nil || len(out.Sessions) != 1 || !out.Sessions[0].End {
		t.Fatalf("ReportSSHSessions = %+v, %v", out, err)
	}
	acc, err := NewClient(s.URL(), "alice-token").SSHAccess(ctx, sshaccess.Input{Target: "prod-web"})
	if err != nil || acc.Request.ID != "r1" || acc.Cert.Info.Serial != 9 {
		t.Fatalf("SSHAccess = %+v, %v", acc, err)
	}
	// POST /v1/requests with a key: the certificate in the create response.
	created, err := NewClient(s.URL(), "alice-token").CreateRequestCert(ctx, ajar.CreateInput{Target: "prod-web", SSHPublicKey: "ssh-ed25519 AAAAkey"})
	if err != nil || created.Request.ID != "r1" || created.SSHCert == nil || created.SSHCert.Info.Serial != 11 ||
		created.SSHCert.Certificate != "ssh-ed25519-cert-v01@openssh.com AAAA" {
		t.Fatalf("CreateRequestCert = %+v, %v", created, err)
	}
	// Without a key it is the core's CreateRequest, and no ssh_cert member.
	plain, err := NewClient(s.URL(), "alice-token").CreateRequestCert(ctx, ajar.CreateInput{Target: "prod-web", Reason: "x"})
	if err != nil || plain.SSHCert != nil {
		t.Fatalf("CreateRequestCert without a key = %+v, %v", plain, err)
	}
	core.err = ajar.Errorf(ajar.EFORBIDDEN, "not a node")
	if _, err := c.SSHAuthorizedKeys(ctx, "web", "deploy"); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("forbidden keys: %v", err)
	}
}
