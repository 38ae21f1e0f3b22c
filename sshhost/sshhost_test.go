package sshhost

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/sshtest"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/sshhost/wire"
)

const sshTestPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: erin@example.com, groups: [engineers]}
  - {id: node-1@example.com, groups: [web-hosts]}
  - {id: node-2@example.com, groups: [db-hosts]}
admins: [alice@example.com]
targets:
  web:
    provider: ssh-cert
    config: {principals: [ubuntu], source_address: request, nodes: [group:web-hosts]}
  db:
    provider: ssh-cert
    config: {principals: [postgres], nodes: [group:db-hosts]}
  keys:
    provider: ssh-cert
    config: {principals: [deploy], mode: authorized-keys, nodes: [group:web-hosts]}
  web-admin:
    provider: ssh-cert
    config: {principals: [root], nodes: [node-1@example.com]}
policies:
  - name: ssh
    targets: [web, db, keys, web-admin]
    requesters: [group:engineers]
    default_duration: 5m
    max_duration: 2h
    approval:
      timeout: 10m
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("10m")'
`

// sshEnv is the core (for requests and certificates) and the host-agent
// protocol over one store, with the real ssh-cert provider and CA.
type sshEnv struct {
	*sshtest.Env
	ssh   *sshaccess.Service // "ajar ssh", to make requests and certificates
	hosts *Service
}

func newSSHEnv(t *testing.T) *sshEnv {
	t.Helper()
	e := sshtest.New(t, sshTestPolicy)
	hosts, err := New(Config{Store: e.Store, Providers: e.Provs, Audit: e.Svc.AppendAudit, SSHCA: e.CA.AuthorizedKey, SSHKRL: e.CA.KRL})
	if err != nil {
		t.Fatal(err)
	}
	return &sshEnv{Env: e, ssh: sshaccess.New(e.Svc, e.Store, e.Policy, e.Provs, e.CA.AuthorizedKey), hosts: hosts}
}

// access asks for SSH access to target as user with a new key.
func (e *sshEnv) access(t *testing.T, user, target, dur string, params map[string]string) *sshaccess.Output {
	t.Helper()
	out, err := e.ssh.SSHAccess(t.Context(), e.Users[user], sshaccess.Input{
		Target: target, Duration: dur, Reason: "test", Params: params, PublicKey: sshtest.PublicKey(t),
	})
	if err != nil {
		t.Fatalf("SSHAccess %s %s: %v", target, dur, err)
	}
	return out
}

func (e *sshEnv) get(t *testing.T, id string) *ajar.Request {
	t.Helper()
	var r *ajar.Request
	err := e.Store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		r, err = tx.GetRequest(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *sshEnv) actions(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	err := e.Store.View(t.Context(), func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{Subject: id})
		for _, ev := range evs {
			out = append(out, ev.Action)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if ajar.ErrorCode(err) != code {
		t.Fatalf("error %v: code %q, want %q", err, ajar.ErrorCode(err), code)
	}
}

func TestNewRequiresAudit(t *testing.T) {
	e := newSSHEnv(t)
	if _, err := New(Config{Store: e.Store, Providers: e.Provs}); err == nil {
		t.Fatal("New without Audit succeeded: session reports would not be audited")
	}
}

// krlSerials returns the serials the current KRL revokes.
func (e *sshEnv) krlSerials(t *testing.T) []uint64 {
	t.Helper()
	e.hosts.krl.mu.Lock()
	e.hosts.krl.out = nil // the cache is for polling hosts; the test moves a fake clock
	e.hosts.krl.mu.Unlock()
	out, err := e.hosts.SSHKRL(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	k, err := sshcert.ParseKRL(out.Data)
	if err != nil {
		t.Fatalf("ParseKRL: %v", err)
	}
	if got := k.Serials(e.CA.PublicKey()); len(got) != out.Serials {
		t.Fatalf("KRL holds %d serials, output says %d", len(got), out.Serials)
	}
	return k.Serials(e.CA.PublicKey())
}

var src = map[string]string{"source_ip": "127.0.0.1"}

func TestSSHKRL(t *testing.T) {
	e := newSSHEnv(t)
	a := e.access(t, "alice", "web", "5m", src)
	b := e.access(t, "alice", "db", "5m", nil)
	if a.Cert == nil || b.Cert == nil || a.Cert.Certificate == "" {
		t.Fatalf("auto-approved access without a certificate: %+v %+v", a, b)
	}
	if got := e.krlSerials(t); len(got) != 0 {
		t.Fatalf("KRL with only active requests revokes %v", got)
	}
	first, err := e.hosts.SSHKRL(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := e.hosts.SSHKRL(t.Context())
	if again.ETag != first.ETag || !slices.Equal(again.Data, first.Data) {
		t.Fatal("the same KRL twice has different bytes or ETags")
	}

	// Revoked early: its serial is revoked at once, the other one is not.
	if _, err := e.Svc.Revoke(t.Context(), e.Users["alice"], a.Request.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.krlSerials(t); !slices.Equal(got, []uint64{a.Cert.Info.Serial}) {
		t.Fatalf("after revoking %s: KRL = %v, want [%d]", a.Request.ID, got, a.Cert.Info.Serial)
	}

	// Expired: b's serial is listed until krlSkew after its ValidBefore, for hosts
	// with slow clocks; then both leave, so the list stays small.
	e.Advance(t, 5*time.Minute)
	if st := e.get(t, b.Request.ID).State; st != ajar.StateExpired {
		t.Fatalf("b is %s", st)
	}
	want := []uint64{a.Cert.Info.Serial, b.Cert.Info.Serial}
	slices.Sort(want)
	if got := e.krlSerials(t); !slices.Equal(got, want) {
		t.Fatalf("just after expiry: KRL = %v, want %v", got, want)
	}
	e.Advance(t, krlSkew)
	if got := e.krlSerials(t); len(got) != 0 {
		t.Fatalf("%s after the certificates expired the KRL still revokes %v", krlSkew, got)
	}
}

func TestSSHKRLWithoutCA(t *testing.T) {
	e := newSSHEnv(t)
	hosts, err := New(Config{Store: e.Store, Providers: e.Provs, Audit: e.Svc.AppendAudit})
	if err != nil {
		t.Fatal(err)
	}
	_, err = hosts.SSHKRL(t.Context())
	wantCode(t, err, ajar.ENOTFOUND)
}

func TestSSHAuthorizedKeys(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	out := e.access(t, "alice", "keys", "5m", nil)
	if out.Cert == nil || out.Cert.Certificate != "" || out.Cert.Info.PublicKey == "" {
		t.Fatalf("authorized-keys access: %+v", out.Cert)
	}
	node := e.Users["node-1"]
	lines, err := e.hosts.SSHAuthorizedKeys(ctx, node, "keys", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	exp := e.Clock.Now().Add(5 * time.Minute).UTC().Format("20060102150405")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], `expiry-time="`+exp+`Z",restrict,`) ||
		!strings.Contains(lines[0], out.Cert.Info.PublicKey+" ajar:"+out.Request.ID+":alice@example.com") {
		t.Fatalf("keys = %q", lines)
	}
	if lines, _ := e.hosts.SSHAuthorizedKeys(ctx, node, "keys", "root"); len(lines) != 0 {
		t.Fatalf("keys for root: %q", lines)
	}
	// A certificate target's keys are never printed as plain keys.
	e.access(t, "alice", "web", "5m", src)
	if lines, _ := e.hosts.SSHAuthorizedKeys(ctx, node, "web", "ubuntu"); len(lines) != 0 {
		t.Fatalf("certificate target printed keys: %q", lines)
	}
	for _, u := range []ajar.User{e.Users["alice"], e.Users["node-2"]} {
		_, err := e.hosts.SSHAuthorizedKeys(ctx, u, "keys", "deploy")
		wantCode(t, err, ajar.EFORBIDDEN)
	}
	_, err = e.hosts.SSHAuthorizedKeys(ctx, node, "no-such-target", "deploy")
	wantCode(t, err, ajar.EFORBIDDEN)
	for _, bad := range []string{"", "-oProxyCommand", "a b", "a/b", strings.Repeat("a", 300)} {
		_, err := e.hosts.SSHAuthorizedKeys(ctx, node, "keys", bad)
		if ajar.ErrorField(err) != "user" {
			t.Errorf("user %q: %v", bad, err)
		}
	}

	// Revoked: gone at once.
	if _, err := e.Svc.Revoke(ctx, e.Users["alice"], out.Request.ID); err != nil {
		t.Fatal(err)
	}
	if lines, _ := e.hosts.SSHAuthorizedKeys(ctx, node, "keys", "deploy"); len(lines) != 0 {
		t.Fatalf("keys after revocation: %q", lines)
	}
}

func TestReportSSHSessions(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	node := e.Users["node-1"]
	web := e.access(t, "alice", "web", "5m", src)
	db := e.access(t, "alice", "db", "5m", nil)
	keys := e.access(t, "alice", "keys", "5m", nil)
	certKey := func(out *sshaccess.Output) string { return out.Cert.Certificate }

	// A certificate of another CA and a plain key ajar never saw are not ajar's.
	otherCA, _ := sshcert.LoadOrCreateCA(ctx, newMemKeys(), sshtest.MasterKey(t))
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	foreign, err := otherCA.Sign(sshcert.CertSpec{PublicKey: signer.PublicKey(), Serial: web.Cert.Info.Serial,
		KeyID: "ajar:" + web.Request.ID + ":alice@example.com", Principals: []string{"ubuntu"},
		ValidAfter: e.Clock.Now().Add(-time.Hour), ValidBefore: e.Clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	started := e.Clock.Now().Add(-time.Second)
	rep := wire.SSHSessionReport{Target: "web", Host: "web-1", Sessions: []wire.SSHSession{
		{ID: "s-web", Event: wire.SessionOpened, User: "ubuntu", Key: certKey(web), Source: "127.0.0.1", PID: 42, Started: &started},
		{ID: "s-db", Event: wire.SessionOpened, User: "ubuntu", Key: certKey(db), Source: "127.0.0.1"},
		{ID: "s-foreign", Event: wire.SessionOpened, User: "ubuntu", Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(foreign)))},
		{ID: "s-plain", Event: wire.SessionOpen, User: "ubuntu", Key: sshtest.PublicKey(t)},
	}}
	got, err := e.hosts.ReportSSHSessions(ctx, node, rep)
	if err != nil {
		t.Fatal(err)
	}
	v := got.Sessions
	exp := web.Request.ExpiresAt.UTC()
	if !v[0].Known || v[0].End || v[0].RequestID != web.Request.ID || v[0].Serial != web.Cert.Info.Serial ||
		v[0].EndsAt == nil || !v[0].EndsAt.Equal(exp) {
		t.Errorf("web session: %+v", v[0])
	}
	if !v[1].Known || !v[1].End || !strings.Contains(v[1].Reason, "not for target web") || v[1].RequestID != "" || v[1].EndsAt != nil {
		t.Errorf("db certificate on a web host: %+v", v[1])
	}
	if v[2].Known || v[2].End || v[3].Known || v[3].End {
		t.Errorf("foreign sessions: %+v %+v", v[2], v[3])
	}
	// A report is about its own target only: even though node-1 is an agent of
	// web-admin too, a web-admin certificate reported for web ends, and nothing
	// is recorded on the web-admin request (or on db's).
	admin := e.access(t, "alice", "web-admin", "5m", nil)
	both, err := e.hosts.ReportSSHSessions(ctx, node, wire.SSHSessionReport{Target: "web", Host: "web-1", Sessions: []wire.SSHSession{
		{ID: "s-admin", Event: wire.SessionOpened, User: "root", Key: certKey(admin)},
	}})
	if err != nil || !both.Sessions[0].End || both.Sessions[0].RequestID != "" {
		t.Errorf("certificate of another target of the same agent: %+v, %v", both, err)
	}
	for _, r := range []*ajar.Request{admin.Request, db.Request} {
		if acts := e.actions(t, r.ID); count(acts, "ssh.session.opened") != 0 {
			t.Errorf("a web agent's report was recorded on request %s of target %s: %v", r.ID, r.Target, acts)
		}
	}
	// The key as sshd logs it (fingerprint, serial, key id, CA) is judged the
	// same as the certificate itself.
	caFP := ssh.FingerprintSHA256(parseCertLine(t, certKey(web)).SignatureKey)
	logged, err := e.hosts.ReportSSHSessions(ctx, node, wire.SSHSessionReport{Target: "web", Host: "web-1", Sessions: []wire.SSHSession{
		{ID: "l-web", Event: wire.SessionOpen, User: "ubuntu", Fingerprint: web.Cert.Info.Fingerprint, Serial: web.Cert.Info.Serial,
			KeyID: web.Cert.Info.KeyID, CA: caFP},
		{ID: "l-db", Event: wire.SessionOpen, User: "ubuntu", Fingerprint: db.Cert.Info.Fingerprint, Serial: db.Cert.Info.Serial,
			KeyID: db.Cert.Info.KeyID, CA: caFP},
		{ID: "l-other-ca", Event: wire.SessionOpen, User: "ubuntu", Fingerprint: web.Cert.Info.Fingerprint, Serial: web.Cert.Info.Serial,
			KeyID: web.Cert.Info.KeyID, CA: ssh.FingerprintSHA256(otherCA.PublicKey())},
		{ID: "l-wrong-serial", Event: wire.SessionOpen, User: "ubuntu", Fingerprint: web.Cert.Info.Fingerprint, Serial: web.Cert.Info.Serial + 1,
			KeyID: web.Cert.Info.KeyID, CA: caFP},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// A session the agent could not tie to any key is reported ended without
	// one; only an end may lack a key.
	if _, err := e.hosts.ReportSSHSessions(ctx, node, wire.SSHSessionReport{Target: "web", Host: "web-1", Sessions: []wire.SSHSession{
		{ID: "l-none", Event: wire.SessionEnded, User: "ubuntu", Reason: "the session cannot be tied to its login"}}}); err != nil {
		t.Errorf("key-less end: %v", err)
	}
	_, err = e.hosts.ReportSSHSessions(ctx, node, wire.SSHSessionReport{Target: "web", Host: "web-1", Sessions: []wire.SSHSession{
		{ID: "l-none", Event: wire.SessionOpened, User: "ubuntu"}}})
	wantCode(t, err, ajar.EINVALID)
	if lv := logged.Sessions; !lv[0].Known || lv[0].End || lv[0].RequestID != web.Request.ID || !lv[1].End || lv[1].RequestID != "" ||
		lv[2].Known || !lv[3].End {
		t.Errorf("sessions reported as logged: %+v", lv)
	}
	// The logins are in the audit log under their requests, with who, where and what.
	var opened ajar.AuditEvent
	var evs []ajar.AuditEvent
	e.Store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(ctx, ajar.AuditFilter{Subject: web.Request.ID})
		return err
	})
	for _, ev := range evs {
		if ev.Action == "ssh.session.opened" {
			opened = ev
		}
	}
	var d map[string]any
	json.Unmarshal(opened.Details, &d)
	if opened.Actor != "node-1@example.com" || d["host"] != "web-1" || d["user"] != "ubuntu" || d["source"] != "127.0.0.1" ||
		d["serial"] != float64(web.Cert.Info.Serial) || d["target"] != "web" || d["key_id"] != web.Cert.Info.KeyID {
		t.Errorf("audit event: %s by %s: %s", opened.Action, opened.Actor, opened.Details)
	}

	// Revoked: the session must end, and the agent's report of ending it is audited.
	if _, err := e.Svc.Revoke(ctx, e.Users["alice"], web.Request.ID); err != nil {
		t.Fatal(err)
	}
	rep.Sessions = rep.Sessions[:1]
	rep.Sessions[0].Event = wire.SessionOpen
	got, _ = e.hosts.ReportSSHSessions(ctx, node, rep)
	if !got.Sessions[0].End || !strings.Contains(got.Sessions[0].Reason, "revoked") {
		t.Fatalf("after revocation: %+v", got.Sessions[0])
	}
	rep.Sessions[0].Event, rep.Sessions[0].Reason = wire.SessionEnded, got.Sessions[0].Reason
	if _, err := e.hosts.ReportSSHSessions(ctx, node, rep); err != nil {
		t.Fatal(err)
	}
	if acts := e.actions(t, web.Request.ID); count(acts, "ssh.session.ended") != 1 || count(acts, "ssh.session.opened") != 1 {
		t.Errorf("audit: %v", acts)
	}
	var m dto.Metric
	if err := e.hosts.sessions.WithLabelValues(wire.SessionEnded).Write(&m); err != nil || m.GetCounter().GetValue() != 2 { // the key-less end above and this one
		t.Errorf("ended sessions metric = %v (%v)", m.GetCounter().GetValue(), err)
	}

	// A plain key of an authorized-keys grant is known, and ends at expiry.
	plain := wire.SSHSessionReport{Target: "keys", Host: "web-1", Sessions: []wire.SSHSession{
		{ID: "s-keys", Event: wire.SessionOpen, User: "deploy", Key: keys.Cert.Info.PublicKey},
	}}
	got, _ = e.hosts.ReportSSHSessions(ctx, node, plain)
	if s := got.Sessions[0]; !s.Known || s.End || s.RequestID != keys.Request.ID || s.EndsAt == nil {
		t.Fatalf("plain key session: %+v", s)
	}
	e.Advance(t, 5*time.Minute)
	got, _ = e.hosts.ReportSSHSessions(ctx, node, plain)
	if s := got.Sessions[0]; !s.Known || !s.End {
		t.Fatalf("plain key session after expiry: %+v", s)
	}

	// Only the target's agents may report, and reports are checked at the edge.
	_, err = e.hosts.ReportSSHSessions(ctx, e.Users["node-2"], rep)
	wantCode(t, err, ajar.EFORBIDDEN)
	_, err = e.hosts.ReportSSHSessions(ctx, e.Users["alice"], rep)
	wantCode(t, err, ajar.EFORBIDDEN)
	for field, mod := range map[string]func(*wire.SSHSessionReport){
		"host":               func(r *wire.SSHSessionReport) { r.Host = "web 1" },
		"sessions[0].source": func(r *wire.SSHSessionReport) { r.Sessions[0].Source = "example.com" },
		"sessions[0].key":    func(r *wire.SSHSessionReport) { r.Sessions[0].Key = "ssh-ed25519 AAAA" },
		"sessions[0].event":  func(r *wire.SSHSessionReport) { r.Sessions[0].Event = "gone" },
		"sessions[0].user":   func(r *wire.SSHSessionReport) { r.Sessions[0].User = "" },
		"sessions[0].id":     func(r *wire.SSHSessionReport) { r.Sessions[0].ID = "" },
		"sessions": func(r *wire.SSHSessionReport) {
			r.Sessions = slices.Repeat(r.Sessions[:1], maxSessionsPerReport+1)
		},
	} {
		bad := rep
		bad.Sessions = slices.Clone(rep.Sessions)
		mod(&bad)
		if _, err := e.hosts.ReportSSHSessions(ctx, node, bad); ajar.ErrorField(err) != field {
			t.Errorf("bad %s: %v", field, err)
		}
	}
}

func TestRequestOfKeyID(t *testing.T) {
	for id, want := range map[string]string{
		"ajar:req_x:alice@example.com": "req_x",
		"ajar:req_x:a:b":               "req_x",
		"ajar::alice":                  "",
		"other:req_x:alice":            "",
		"ajar:req_x":                   "",
	} {
		if got, ok := requestOfKeyID(id); got != want || ok != (want != "") {
			t.Errorf("requestOfKeyID(%q) = %q, %t", id, got, ok)
		}
	}
}

type memKeys map[string][]byte

func newMemKeys() memKeys { return memKeys{} }

func (m memKeys) GetKey(_ context.Context, name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, ajar.Errorf(ajar.ENOTFOUND, "no key")
}

func (m memKeys) PutKey(_ context.Context, name string, b []byte) error {
	m[name] = b
	return nil
}

func parseCertLine(t *testing.T, line string) *ssh.Certificate {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := k.(*ssh.Certificate)
	if !ok {
		t.Fatalf("not a certificate: %s", line)
	}
	return c
}
