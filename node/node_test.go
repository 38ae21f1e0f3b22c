package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/provider/sshcert"
)

// fakeServer serves the routes the agent uses, from fields a test sets.
type fakeServer struct {
	mu          sync.Mutex
	ca          string
	krl         []byte
	down        bool
	krlFetches  int
	notModified int
	reports     []broker.SSHSessionReport
	ended       map[uint64]string // serial -> reason the server gives
	endsAt      *time.Time        // the ends_at of every verdict on a certificate
	keys        []string
	srv         *httptest.Server
}

func newFakeServer(t *testing.T, ca ssh.PublicKey) *fakeServer {
	f := &fakeServer{ca: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca))) + " ajar-ca", ended: map[uint64]string{}}
	f.setKRL(t, ca)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) setKRL(t *testing.T, ca ssh.PublicKey, serials ...uint64) {
	b, err := sshcert.MarshalKRL(sshcert.KRLSpec{CA: ca, Serials: serials})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.krl = b
	f.mu.Unlock()
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/ssh/ca":
		fmt.Fprintln(w, f.ca)
	case "GET /v1/ssh/krl":
		f.krlFetches++
		sum := sha256.Sum256(f.krl)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			f.notModified++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(f.krl)
	case "POST /v1/ssh/sessions":
		if r.Header.Get("Authorization") != "Bearer node-token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":{"code":"unauthenticated","message":"no"}}`)
			return
		}
		var rep broker.SSHSessionReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.reports = append(f.reports, rep)
		out := broker.SSHSessionsOutput{Sessions: []broker.SSHSessionVerdict{}}
		for _, s := range rep.Sessions {
			v := broker.SSHSessionVerdict{ID: s.ID}
			k, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(s.Key))
			if c, ok := k.(*ssh.Certificate); ok {
				v.Known, v.Serial, v.EndsAt = true, c.Serial, f.endsAt
				if why, ok := f.ended[c.Serial]; ok {
					v.End, v.Reason = true, why
				}
			}
			out.Sessions = append(out.Sessions, v)
		}
		json.NewEncoder(w).Encode(out)
	case "GET /v1/ssh/keys":
		for _, k := range f.keys {
			fmt.Fprintln(w, k)
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeServer) lastReports() []broker.SSHSessionReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reports)
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCert returns a user certificate from ca with serial, valid until before.
func newCert(t *testing.T, ca ssh.Signer, serial uint64, before time.Time) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: newSigner(t).PublicKey(), Serial: serial, CertType: ssh.UserCert,
		KeyId: fmt.Sprintf("ajar:req-%d:alice@example.com", serial), ValidPrincipals: []string{"root"},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(before.Unix()),
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func keyLine(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

func testConfig(t *testing.T, server string) *Config {
	t.Helper()
	dir := t.TempDir()
	yes := true
	return &Config{Server: server, Target: "web", Host: "web-1", Mode: ModeCertificate,
		CAFile: filepath.Join(dir, "ca.pub"), KRLFile: filepath.Join(dir, "revoked.krl"),
		Interval: time.Second, EndUnverifiable: &yes}
}

func newTestAgent(t *testing.T, cfg *Config, procRoot string) *Agent {
	t.Helper()
	a, err := New(cfg, Options{ProcRoot: procRoot, Client: api.NewClient(cfg.Server, "node-token")})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSync(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	cfg := testConfig(t, f.srv.URL)
	a := newTestAgent(t, cfg, t.TempDir())
	ctx := t.Context()

	res, err := a.Sync(ctx, false)
	if err != nil || !res.CAWritten || !res.KRLWritten {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	if got := readFile(t, cfg.CAFile); got != f.ca+"\n" {
		t.Fatalf("CA file = %q", got)
	}
	for _, p := range []string{cfg.CAFile, cfg.KRLFile} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644 (sshd reads it)", p, fi.Mode())
		}
	}
	// Unchanged: nothing written, and the KRL is not downloaded again.
	if res, err := a.Sync(ctx, false); err != nil || res.CAWritten || res.KRLWritten {
		t.Fatalf("second sync: %+v, %v", res, err)
	}
	if f.notModified != 1 {
		t.Fatalf("the second sync downloaded the KRL again (%d not-modified answers)", f.notModified)
	}

	// A revocation arrives.
	f.setKRL(t, ca.PublicKey(), 7, 9)
	if res, err := a.Sync(ctx, false); err != nil || !res.KRLWritten || res.Serials != 2 {
		t.Fatalf("sync after a revocation: %+v, %v", res, err)
	}
	good := readFile(t, cfg.KRLFile)

	// The server is down, or serves garbage, or another CA: the last good files stay.
	for name, breakIt := range map[string]func(){
		"down":       func() { f.down = true },
		"bad KRL":    func() { f.krl = []byte("SSHKRL\n\x00garbage") },
		"other CA":   func() { f.ca = keyLine(newSigner(t).PublicKey()); f.krl = nil },
		"cert as CA": func() { f.ca = keyLine(newCert(t, ca, 3, time.Now().Add(time.Hour))) },
	} {
		f.mu.Lock()
		saved := struct {
			ca   string
			krl  []byte
			down bool
		}{f.ca, f.krl, f.down}
		breakIt()
		if f.krl == nil { // a KRL for the other CA, revoking nothing
			f.krl, _ = sshcert.MarshalKRL(sshcert.KRLSpec{CA: newSigner(t).PublicKey()})
		}
		f.mu.Unlock()
		a.krlETag = "" // fetch in full
		_, err := a.Sync(ctx, false)
		if err == nil {
			t.Errorf("%s: sync succeeded", name)
		}
		if name == "other CA" && !errors.Is(err, ErrCAChanged) {
			t.Errorf("other CA: err = %v, want ErrCAChanged", err)
		}
		if readFile(t, cfg.KRLFile) != good || readFile(t, cfg.CAFile) != saved.ca+"\n" {
			t.Errorf("%s: the installed files changed", name)
		}
		f.mu.Lock()
		f.ca, f.krl, f.down = saved.ca, saved.krl, saved.down
		f.mu.Unlock()
	}

	// A rotated CA is taken only when asked to.
	other := newSigner(t)
	f.ca = keyLine(other.PublicKey())
	f.setKRL(t, other.PublicKey())
	if _, err := a.Sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	if readFile(t, cfg.CAFile) != f.ca+"\n" {
		t.Fatal("--accept-new-ca did not install the new CA")
	}

	// A deleted KRL file is fetched whole again, whatever the ETag says.
	os.Remove(cfg.KRLFile)
	if res, err := a.Sync(ctx, false); err != nil || !res.KRLWritten {
		t.Fatalf("sync after the KRL file was removed: %+v, %v", res, err)
	}
	assertNoTempFiles(t, filepath.Dir(cfg.KRLFile))
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer", ""} {
		if err := WriteFileAtomic(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, p); got != content {
			t.Fatalf("content %q, want %q", got, content)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v", fi.Mode())
		}
	}
	assertNoTempFiles(t, dir)
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644); err == nil {
		t.Fatal("no error for a missing directory")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.yaml")
	os.WriteFile(p, []byte("server: https://ajar.example.com\ntarget: web\ntoken_file: node.token\ninterval: 500ms\nhost: h1\n"), 0o644)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TokenFile != filepath.Join(dir, "node.token") || cfg.CAFile != DefaultCAFile || cfg.KRLFile != DefaultKRLFile ||
		cfg.Interval != 500*time.Millisecond || cfg.Mode != ModeCertificate || !*cfg.EndUnverifiable || cfg.Host != "h1" {
		t.Fatalf("config = %+v", cfg)
	}

	os.WriteFile(p, []byte("server: ftp://x\nmode: keys\ninterval: 1ms\n"), 0o644)
	_, err = LoadConfig(p)
	for _, want := range []string{"server:", "target:", "mode:", "interval:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad config: error %v lacks %q", err, want)
		}
	}
	os.WriteFile(p, []byte("server: https://x\ntarget: web\nsevrer: typo\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "sevrer") {
		t.Errorf("unknown field: %v", err)
	}
	os.WriteFile(p, []byte("server: https://x\ntarget: web\nmode: authorized-keys\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Errorf("authorized-keys without a token: %v", err)
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	cfg := &Config{TokenFile: p}
	os.WriteFile(p, []byte("ajar_secret\n"), 0o600)
	if tok, err := cfg.Token(); err != nil || tok != "ajar_secret" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	for _, mode := range []os.FileMode{0o604, 0o620, 0o666} {
		os.Chmod(p, mode)
		if _, err := cfg.Token(); err == nil {
			t.Errorf("mode %#o accepted", mode)
		}
	}
	os.Chmod(p, 0o640)
	if _, err := cfg.Token(); err != nil {
		t.Errorf("mode 0640: %v", err)
	}
	if tok, err := (&Config{}).Token(); tok != "" || err != nil {
		t.Errorf("no token file: %q, %v", tok, err)
	}
}

// fakeProc is a /proc tree for the session scanner.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "stat"), []byte("cpu 1 2 3\nbtime 1700000000\n"), 0o644)
	return &fakeProc{t: t, root: root}
}

func (f *fakeProc) add(pid, ppid, sid int, comm string, start uint64, uid int, env ...string) {
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 100\n", pid, comm, ppid, sid, sid, start)
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o444)
	os.WriteFile(filepath.Join(dir, "environ"), []byte(strings.Join(env, "\x00")+"\x00"), 0o400)
	os.WriteFile(filepath.Join(dir, "status"), []byte(fmt.Sprintf("Name:\t%s\nUid:\t%d\t%d\t%d\t%d\n", comm, uid, uid, uid, uid)), 0o444)
}

// session adds an sshd connection (monitor, the user's sshd, a shell) whose
// SSH_USER_AUTH file holds key; with key nil the file does not exist.
func (f *fakeProc) session(base int, key ssh.PublicKey) {
	auth := filepath.Join(f.t.TempDir(), "sshauth")
	if key != nil {
		os.WriteFile(auth, []byte("publickey "+keyLine(key)+"\n"), 0o600)
	}
	uid := os.Getuid()
	f.add(base, 100, 100, "sshd", 5000, 0)
	f.add(base+1, base, 100, "sshd", 5001+uint64(base), uid)
	f.add(base+2, base+1, base+2, "sh", 5002, uid, "HOME=/x", "SSH_USER_AUTH="+auth, "SSH_CONNECTION=10.0.0.9 51000 10.0.0.1 22")
	f.add(base+3, base+2, base+2, "sleep", 5003, uid, "SSH_USER_AUTH="+auth)
}

func TestScanSessions(t *testing.T) {
	ca := newSigner(t)
	p := newFakeProc(t)
	p.add(1, 0, 1, "init", 1, 0)
	p.add(100, 1, 100, "sshd", 10, 0)
	cert := newCert(t, ca, 5, time.Now().Add(time.Hour))
	p.session(1000, cert)
	p.session(2000, nil)
	// Not sessions: a process that only claims an SSH_USER_AUTH outside sshd, and
	// an sshd child without one (ExposeAuthInfo off).
	p.add(3000, 1, 3000, "bash", 7, 0, "SSH_USER_AUTH=/tmp/x")
	p.add(3100, 100, 100, "sshd", 8, 0)
	p.add(3101, 3100, 3101, "bash", 9, 0, "PATH=/bin")

	sessions, err := procFS{root: p.root}.scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 2 {
		t.Fatalf("found %d sessions, want 2: %+v", len(sessions), sessions)
	}
	s := sessions[0]
	if s.PID != 1001 || !slices.Equal(s.Children, []int{1002}) || s.Source != "10.0.0.9" || s.KeyLine != keyLine(cert) ||
		s.ID != "1001-6001" || s.Started.Unix() != 1700000000+60 {
		t.Errorf("session = %+v", s)
	}
	if c, ok := s.Key.(*ssh.Certificate); !ok || c.Serial != 5 {
		t.Errorf("key = %v", s.Key)
	}
	if sessions[1].Key != nil || sessions[1].AuthErr == "" {
		t.Errorf("session without its auth file: %+v", sessions[1])
	}
}

func TestReadAuthInfoRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t).PublicKey()
	good := filepath.Join(dir, "auth")
	os.WriteFile(good, []byte("publickey "+keyLine(key)+" extra\nkeyboard-interactive\n"), 0o600)
	if line, k, err := readAuthInfo(good, os.Getuid()); err != nil || line != keyLine(key) || k == nil {
		t.Fatalf("readAuthInfo = %q, %v, %v", line, k, err)
	}
	if _, _, err := readAuthInfo(good, os.Getuid()+1); err == nil {
		t.Error("a file of another user was read")
	}
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	if _, _, err := readAuthInfo(link, os.Getuid()); err == nil {
		t.Error("a symbolic link was followed")
	}
	if _, _, err := readAuthInfo("relative", os.Getuid()); err == nil {
		t.Error("a relative path was read")
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("password\n"), 0o600)
	if line, k, err := readAuthInfo(pw, os.Getuid()); err != nil || line != "" || k != nil {
		t.Errorf("password login: %q, %v, %v", line, k, err)
	}
}

func TestSessionProcs(t *testing.T) {
	procs := map[int]proc{
		1:   {pid: 1, ppid: 0, sid: 1, comm: "init"},
		100: {pid: 100, ppid: 1, sid: 100, comm: "sshd"},
		200: {pid: 200, ppid: 100, sid: 100, comm: "sshd", start: 5},
		201: {pid: 201, ppid: 200, sid: 100, comm: "sshd", start: 6},
		300: {pid: 300, ppid: 201, sid: 300, comm: "sh"},
		301: {pid: 301, ppid: 300, sid: 300, comm: "sleep"},
		302: {pid: 302, ppid: 1, sid: 300, comm: "daemon"}, // escaped its parent, not its session
		400: {pid: 400, ppid: 1, sid: 400, comm: "other"},
	}
	got := procFS{}.sessionProcs(procs, Session{PID: 201, start: 6})
	var pids []int
	for p := range got {
		pids = append(pids, p)
	}
	slices.Sort(pids)
	if !slices.Equal(pids, []int{201, 300, 301, 302}) {
		t.Fatalf("session processes = %v, want [201 300 301 302]", pids)
	}
	if got := (procFS{}).sessionProcs(procs, Session{PID: 201, start: 7}); len(got) != 0 {
		t.Fatalf("a reused PID was taken for the session: %v", got)
	}
}

func TestCheckSessions(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	f.setKRL(t, ca.PublicKey(), 7)
	cfg := testConfig(t, f.srv.URL)
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0)
	a := newTestAgent(t, cfg, p.root)
	var killed []int
	a.kill = func(s Session) error { killed = append(killed, s.PID); return nil }
	ctx := context.Background()
	if _, err := a.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour)
	p.session(1000, newCert(t, ca, 5, hour))                                   // fine
	p.session(2000, newCert(t, ca, 7, hour))                                   // in the installed KRL
	p.session(3000, newCert(t, ca, 8, time.Now().Add(-time.Second)))           // expired
	p.session(4000, newCert(t, ca, 9, hour))                                   // the server says it ended
	p.session(5000, newSigner(t).PublicKey())                                  // a plain key ajar does not know
	p.session(6000, newCert(t, newSigner(t), 7, time.Now().Add(-time.Second))) // another CA's
	p.session(7000, nil)                                                       // its auth file is gone
	f.ended[9] = "request req-9 is revoked"

	if err := a.CheckSessions(ctx); err != nil {
		t.Fatal(err)
	}
	slices.Sort(killed)
	if want := []int{2001, 3001, 4001, 7001}; !slices.Equal(killed, want) {
		t.Fatalf("ended sessions of sshd %v, want %v", killed, want)
	}
	reps := f.lastReports()
	if len(reps) != 2 {
		t.Fatalf("%d reports, want the sessions and then the one the server ended", len(reps))
	}
	events := map[string]string{}
	for _, r := range reps {
		if r.Target != "web" || r.Host != "web-1" {
			t.Errorf("report for %s on %s", r.Target, r.Host)
		}
		for _, s := range r.Sessions {
			events[fmt.Sprint(s.PID)] += s.Event + " " + s.Reason + ";"
		}
	}
	for pid, want := range map[string]string{
		"1001": "opened ;", "5001": "opened ;", "6001": "opened ;",
		"2001": "opened ;ended certificate serial 7 is revoked;", "3001": "opened ;ended certificate serial 8 expired",
		"4001": "opened ;ended request req-9 is revoked;", "7001": "ended the session's login key cannot be verified",
	} {
		if !strings.HasPrefix(events[pid], want) {
			t.Errorf("sshd %s reported as %q, want %q", pid, events[pid], want)
		}
	}

	// Next round: the open ones are "open", nothing is ended twice.
	killed = nil
	for _, base := range []int{2000, 3000, 4000, 7000} {
		os.RemoveAll(filepath.Join(p.root, fmt.Sprint(base+1)))
		os.RemoveAll(filepath.Join(p.root, fmt.Sprint(base+2)))
	}
	if err := a.CheckSessions(ctx); err != nil || len(killed) != 0 {
		t.Fatalf("second check: %v, ended %v", err, killed)
	}
	last := f.lastReports()[2]
	for _, s := range last.Sessions {
		if s.Event != broker.SessionOpen {
			t.Errorf("second report: %s is %s", s.ID, s.Event)
		}
	}

	// The server is down: local judgement still ends sessions, and the report of
	// it waits for the server.
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
	p.session(8000, newCert(t, ca, 7, hour))
	if err := a.CheckSessions(ctx); err == nil {
		t.Error("no error with the server down")
	}
	if !slices.Equal(killed, []int{8001}) {
		t.Fatalf("with the server down: ended %v, want [8001]", killed)
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	os.RemoveAll(filepath.Join(p.root, "8001"))
	os.RemoveAll(filepath.Join(p.root, "8002"))
	if err := a.CheckSessions(ctx); err != nil {
		t.Fatal(err)
	}
	reps = f.lastReports()
	found := false
	for _, s := range reps[len(reps)-1].Sessions {
		found = found || (s.PID == 8001 && s.Event == broker.SessionEnded)
	}
	if !found {
		t.Error("the session ended while the server was down was not reported once it was back")
	}
}

// TestCheckSessionsExtended: a certificate that expired does not end its session
// while the server says its request was extended, and does once the server
// cannot be asked any more.
func TestCheckSessionsExtended(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	cfg := testConfig(t, f.srv.URL)
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0)
	a := newTestAgent(t, cfg, p.root)
	var killed []int
	a.kill = func(s Session) error { killed = append(killed, s.PID); return nil }
	now := time.Now()
	a.now = func() time.Time { return now }
	if _, err := a.Sync(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	p.session(1000, newCert(t, ca, 5, now.Add(-time.Second)))
	later := now.Add(time.Hour)
	f.mu.Lock()
	f.endsAt = &later
	f.mu.Unlock()
	if err := a.CheckSessions(t.Context()); err != nil || len(killed) != 0 {
		t.Fatalf("extended request: %v, ended %v", err, killed)
	}
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
	now = now.Add(3*cfg.Interval + time.Second)
	a.CheckSessions(t.Context())
	if !slices.Equal(killed, []int{1001}) {
		t.Fatalf("with the server gone and the certificate expired: ended %v", killed)
	}
}

func TestCheckSessionsWithoutToken(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	cfg := testConfig(t, f.srv.URL)
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0)
	a, err := New(cfg, Options{ProcRoot: p.root, Client: api.NewClient(f.srv.URL, "")})
	if err != nil {
		t.Fatal(err)
	}
	var killed []int
	a.kill = func(s Session) error { killed = append(killed, s.PID); return nil }
	if _, err := a.Sync(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	p.session(1000, newCert(t, ca, 5, time.Now().Add(-time.Second)))
	if err := a.CheckSessions(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(killed, []int{1001}) || len(f.lastReports()) != 0 {
		t.Fatalf("ended %v, reports %d", killed, len(f.lastReports()))
	}
}

func TestKeys(t *testing.T) {
	f := newFakeServer(t, newSigner(t).PublicKey())
	k := keyLine(newSigner(t).PublicKey())
	f.keys = []string{
		`expiry-time="20300101000000Z",restrict,pty ` + k + " ajar:r1:alice",
		`restrict,pty ` + k + " no-expiry",
		"garbage",
	}
	a := newTestAgent(t, testConfig(t, f.srv.URL), t.TempDir())
	lines, err := a.Keys(t.Context(), "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], `expiry-time=`) {
		t.Fatalf("Keys = %q, want only the line with an expiry", lines)
	}
	noToken, _ := New(testConfig(t, f.srv.URL), Options{Client: api.NewClient(f.srv.URL, "")})
	if _, err := noToken.Keys(t.Context(), "deploy"); err == nil {
		t.Error("Keys without a token: no error")
	}
}

func TestSSHDConfig(t *testing.T) {
	cfg := &Config{Target: "web", Mode: ModeCertificate, CAFile: "/etc/ssh/ajar_ca.pub", KRLFile: "/etc/ssh/ajar_revoked.krl"}
	opts := InstallOptions{Binary: "/usr/local/bin/ajar", ConfigPath: "/etc/ajar/node.yaml", KeysUser: "ajar-node"}
	text, err := SSHDConfig(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TrustedUserCAKeys /etc/ssh/ajar_ca.pub\n", "RevokedKeys /etc/ssh/ajar_revoked.krl\n", "LogLevel VERBOSE\n",
		"AuthorizedPrincipalsCommand /usr/local/bin/ajar node principals --target web %u\n", "AuthorizedPrincipalsCommandUser ajar-node\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("certificate mode lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "AuthorizedKeysCommand") {
		t.Errorf("certificate mode has AuthorizedKeysCommand:\n%s", text)
	}
	for _, bad := range []InstallOptions{
		{Binary: "ajar", ConfigPath: "/etc/ajar/node.yaml", KeysUser: "ajar-node"},
		{Binary: "/usr/local/bin/ajar", ConfigPath: "/etc/ajar/node.yaml", KeysUser: "a b"},
	} {
		if _, err := SSHDConfig(cfg, bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
	if _, err := SSHDConfig(&Config{Target: "web:x", CAFile: cfg.CAFile, KRLFile: cfg.KRLFile}, opts); err == nil {
		t.Error("a target name with ':' was accepted")
	}
	cfg.Mode = ModeAuthorizedKeys
	text, err = SSHDConfig(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AuthorizedKeysFile none\n", "AuthorizedKeysCommand /usr/local/bin/ajar node keys --config /etc/ajar/node.yaml %u\n",
		"AuthorizedKeysCommandUser ajar-node\n", "LogLevel VERBOSE\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("authorized-keys mode lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "TrustedUserCAKeys") {
		t.Errorf("authorized-keys mode trusts the CA:\n%s", text)
	}
}

func TestCheckServerURL(t *testing.T) {
	for _, ok := range []string{"https://ajar.example.com", "https://10.0.0.1:8443/", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80", "http://127.3.2.1"} {
		if err := CheckServerURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://ajar.example.com", "http://10.0.0.1:8080", "http://[::ffff:10.0.0.1]", "http://127.0.0.1.nip.io",
		"http://localhost.example.com", "ftp://127.0.0.1", "https://u:p@ajar.example.com", "ajar.example.com"} {
		if err := CheckServerURL(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestApplyDropIn(t *testing.T) {
	dir := t.TempDir()
	dropIn := filepath.Join(dir, "sshd_config.d", "ajar.conf")
	ok, bad := filepath.Join(dir, "ok.sh"), filepath.Join(dir, "bad.sh")
	os.WriteFile(ok, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	os.WriteFile(bad, []byte("#!/bin/sh\necho 'line 3: Bad configuration option' >&2\nexit 255\n"), 0o755)
	if err := ApplyDropIn(dropIn, "A yes\n", ok, ""); err != nil {
		t.Fatal(err)
	}
	err := ApplyDropIn(dropIn, "B broken\n", bad, "/etc/ssh/sshd_config")
	if err == nil || !strings.Contains(err.Error(), "Bad configuration option") {
		t.Fatalf("failed check: %v", err)
	}
	if got := readFile(t, dropIn); got != "A yes\n" {
		t.Fatalf("after a failed check the drop-in is %q, want the previous one", got)
	}
	os.Remove(dropIn)
	if err := ApplyDropIn(dropIn, "B broken\n", bad, ""); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Fatal("a refused new drop-in was left in place")
	}
}
