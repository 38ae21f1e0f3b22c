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
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/sshhost/wire"
)

// fakeServer serves the routes the agent uses, from fields a test sets.
type fakeServer struct {
	mu          sync.Mutex
	ca          string
	krl         []byte
	down        bool
	krlFetches  int
	notModified int
	reports     []wire.SSHSessionReport
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
		var rep wire.SSHSessionReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.reports = append(f.reports, rep)
		out := wire.SSHSessionsOutput{Sessions: []wire.SSHSessionVerdict{}}
		for _, s := range rep.Sessions {
			v := wire.SSHSessionVerdict{ID: s.ID}
			if s.CA == caFingerprint(f.ca) {
				v.Known, v.Serial, v.EndsAt = true, s.Serial, f.endsAt
				if why, ok := f.ended[s.Serial]; ok {
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

func caFingerprint(line string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

func (f *fakeServer) lastReports() []wire.SSHSessionReport {
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

// fakeProc is a /proc tree for the session scanner, and an sshd log file.
type fakeProc struct {
	t    *testing.T
	root string
	log  string
	tcp  []string
	user string // the login of every session: the user running the tests
	uid  int
}

func newFakeProc(t *testing.T) *fakeProc {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "stat"), []byte("cpu 1 2 3\nbtime 1700000000\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "net"), 0o755)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeProc{t: t, root: root, log: filepath.Join(t.TempDir(), "auth.log"), user: u.Username, uid: os.Getuid()}
	os.WriteFile(f.log, nil, 0o600)
	f.writeTCP()
	f.setUptime(1000000) // later than every process the tests add
	return f
}

// setUptime sets the time since boot, in clock ticks, as /proc/uptime shows it.
func (f *fakeProc) setUptime(ticks uint64) {
	up := fmt.Sprintf("%d.%02d 0.00\n", ticks/clockTicks, ticks%clockTicks)
	if err := os.WriteFile(filepath.Join(f.root, "uptime"), []byte(up), 0o444); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) writeTCP() {
	head := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	os.WriteFile(filepath.Join(f.root, "net", "tcp"), []byte(head+strings.Join(f.tcp, "")), 0o444)
}

func (f *fakeProc) add(pid, ppid, sid int, comm string, start uint64, uid int, title string) {
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 100\n", pid, comm, ppid, sid, sid, start)
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o444)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte(title+"\x00"), 0o444)
	os.WriteFile(filepath.Join(dir, "status"), []byte(fmt.Sprintf("Name:\t%s\nUid:\t%d\t%d\t%d\t%d\n", comm, uid, uid, uid, uid)), 0o444)
}

// session adds an sshd connection from 10.0.0.9 port base (monitor base, the
// user's sshd base+1, a shell base+2) and, unless key is "", the line sshd logs
// for it: key is what follows "ssh2: ".
func (f *fakeProc) session(base int, key string) {
	f.add(base, 100, base, "sshd", uint64(5000+base), 0, "sshd: "+f.user+" [priv]")
	f.add(base+1, base, base, "sshd", uint64(5001+base), f.uid, "sshd: "+f.user+"@notty")
	f.add(base+2, base+1, base+2, "sh", uint64(5002+base), f.uid, "sh")
	ino := 900000 + base
	os.Symlink(fmt.Sprintf("socket:[%d]", ino), filepath.Join(f.root, fmt.Sprint(base), "fd", "4"))
	f.tcp = append(f.tcp, fmt.Sprintf("   0: 0100000A:0016 0900000A:%04X 01 00000000:00000000 00:00000000 00000000     0        0 %d 1\n", base, ino))
	f.writeTCP()
	if key != "" {
		f.logLine(fmt.Sprintf("Dec  6 13:46:01 host sshd[%d]: Accepted publickey for %s from 10.0.0.9 port %d ssh2: %s", base, f.user, base, key))
	}
}

func (f *fakeProc) logLine(line string) {
	lf, err := os.OpenFile(f.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer lf.Close()
	fmt.Fprintln(lf, line)
}

func (f *fakeProc) gone(base int) {
	for i := range 3 {
		os.RemoveAll(filepath.Join(f.root, fmt.Sprint(base+i)))
	}
}

// logged is what sshd logs for a login with a certificate of ca.
func logged(c *ssh.Certificate) string {
	return fmt.Sprintf("ED25519-CERT %s ID %s (serial %d) CA ED25519 %s", ssh.FingerprintSHA256(c.Key), c.KeyId, c.Serial,
		ssh.FingerprintSHA256(c.SignatureKey))
}

func TestParseAccepted(t *testing.T) {
	for line, want := range map[string]Accepted{
		"Accepted publickey for bob from 127.0.0.1 port 54122 ssh2: ED25519-CERT SHA256:Iq8ycBcEdG6ewmZqkkfrrn73qRfjvE3zrhNYC7LhtwU ID ajar:R1:a b (serial 42) CA ED25519 SHA256:xzyFuMuiS7U5hSpNr2iPKHyAaIgMP8hRTPMnokR4E6Q": {
			Method: "publickey", User: "bob", Remote: netip.MustParseAddrPort("127.0.0.1:54122"), KeyType: "ED25519-CERT",
			Fingerprint: "SHA256:Iq8ycBcEdG6ewmZqkkfrrn73qRfjvE3zrhNYC7LhtwU", KeyID: "ajar:R1:a b", Serial: 42,
			CAFingerprint: "SHA256:xzyFuMuiS7U5hSpNr2iPKHyAaIgMP8hRTPMnokR4E6Q"},
		"Dec  6 13:46:01 h sshd[9]: Accepted publickey for u from ::ffff:10.0.0.1 port 7 ssh2: RSA SHA256:abc": {
			Method: "publickey", User: "u", Remote: netip.MustParseAddrPort("10.0.0.1:7"), KeyType: "RSA", Fingerprint: "SHA256:abc"},
		"Accepted password for u from 2001:db8::1 port 22 ssh2": {Method: "password", User: "u", Remote: netip.MustParseAddrPort("[2001:db8::1]:22")},
	} {
		got, ok := parseAccepted(line)
		if !ok || got != want {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", line, got, ok, want)
		}
	}
	for _, line := range []string{"Failed publickey for u from 1.2.3.4 port 1 ssh2: RSA SHA256:x", "Accepted publickey for u from nowhere port 1 ssh2: RSA SHA256:x", ""} {
		if _, ok := parseAccepted(line); ok {
			t.Errorf("%q parsed", line)
		}
	}
}

func TestScanSessions(t *testing.T) {
	p := newFakeProc(t)
	p.add(1, 0, 1, "init", 1, 0, "init")
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
	p.session(1000, "")
	// Not sessions: a connection still authenticating (its child runs as
	// another user), a user's process titled like a monitor, a monitor-like
	// title on a process that is not sshd.
	p.add(2000, 100, 2000, "sshd", 7, 0, "sshd: "+p.user+" [priv]")
	p.add(2001, 2000, 2000, "sshd", 8, p.uid+1, "sshd: "+p.user+" [net]")
	p.add(3000, 1, 3000, "sshd", 9, p.uid+1, "sshd: "+p.user+" [priv]")
	p.add(3001, 3000, 3000, "sshd", 9, p.uid+1, "sshd: "+p.user+"@notty")
	p.add(4000, 1, 4000, "bash", 9, 0, "sshd: "+p.user+" [priv]")
	p.add(4001, 4000, 4000, "sshd", 9, p.uid, "sshd")

	sessions, _, err := procFS{root: p.root}.scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 1 {
		t.Fatalf("found %d sessions, want 1: %+v", len(sessions), sessions)
	}
	s := sessions[0]
	if s.PID != 1000 || s.User != p.user || s.Remote != netip.MustParseAddrPort("10.0.0.9:1000") || s.Source != "10.0.0.9" ||
		s.ID != "1000-6000" || s.Started.Unix() != 1700000000+60 {
		t.Errorf("session = %+v", s)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:D36A":                         "127.0.0.1:54122",
		"00000000000000000000000001000000:0016": "[::1]:22",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80",
	} {
		if got, ok := parseProcAddr(in); !ok || got.String() != want {
			t.Errorf("%s = %v, want %s", in, got, want)
		}
	}
}

func TestSessionProcs(t *testing.T) {
	procs := map[int]proc{
		1:   {pid: 1, ppid: 0, sid: 1, comm: "init"},
		100: {pid: 100, ppid: 1, sid: 100, comm: "sshd"},
		200: {pid: 200, ppid: 100, sid: 200, comm: "sshd", start: 5},
		201: {pid: 201, ppid: 200, sid: 200, comm: "sshd", start: 6},
		300: {pid: 300, ppid: 201, sid: 300, comm: "sh"},
		301: {pid: 301, ppid: 300, sid: 300, comm: "sleep"},
		302: {pid: 302, ppid: 1, sid: 300, comm: "daemon"}, // escaped its parent, not its session
		400: {pid: 400, ppid: 1, sid: 400, comm: "other"},
	}
	got := procFS{}.sessionProcs(procs, Session{PID: 200, start: 5})
	var pids []int
	for p := range got {
		pids = append(pids, p)
	}
	slices.Sort(pids)
	if !slices.Equal(pids, []int{200, 201, 300, 301, 302}) {
		t.Fatalf("session processes = %v, want [200 201 300 301 302]", pids)
	}
	if got := (procFS{}).sessionProcs(procs, Session{PID: 200, start: 7}); len(got) != 0 {
		t.Fatalf("a reused PID was taken for the session: %v", got)
	}
}

// testAgent is an agent on a fake /proc whose kills are recorded.
type testAgent struct {
	*Agent
	killed []int
	swept  []int // uids whose leftovers were ended
}

func newCheckAgent(t *testing.T, cfg *Config, p *fakeProc, token string) *testAgent {
	t.Helper()
	cfg.AuthLog = p.log
	a, err := New(cfg, Options{ProcRoot: p.root, Client: api.NewClient(cfg.Server, token)})
	if err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{Agent: a}
	a.kill = func(s Session) error { ta.killed = append(ta.killed, s.PID); return nil }
	a.sweep = func(uid int, since time.Time) (int, error) {
		ta.swept = append(ta.swept, uid)
		return 0, nil
	}
	if _, err := a.Sync(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	return ta
}

func TestCheckSessions(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	f.setKRL(t, ca.PublicKey(), 7)
	cfg := testConfig(t, f.srv.URL)
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: listener")
	a := newCheckAgent(t, cfg, p, "node-token")
	ctx := context.Background()
	hour := time.Now().Add(time.Hour)
	p.session(1000, logged(newCert(t, ca, 5, hour)))                            // fine
	p.session(2000, logged(newCert(t, ca, 7, hour)))                            // in the installed KRL
	p.session(4000, logged(newCert(t, ca, 9, hour)))                            // the server says it ended
	p.session(5000, "ED25519 "+ssh.FingerprintSHA256(newSigner(t).PublicKey())) // a plain key ajar does not know
	p.session(6000, logged(newCert(t, newSigner(t), 7, hour)))                  // another CA's
	f.ended[9] = "request req-9 is revoked"

	if err := a.CheckSessions(ctx); err != nil {
		t.Fatal(err)
	}
	slices.Sort(a.killed)
	if want := []int{2000, 4000}; !slices.Equal(a.killed, want) {
		t.Fatalf("ended sessions %v, want %v", a.killed, want)
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
		"1000": "opened ;", "5000": "opened ;", "6000": "opened ;",
		"2000": "opened ;ended certificate serial 7 is revoked;", "4000": "opened ;ended request req-9 is revoked;",
	} {
		if !strings.HasPrefix(events[pid], want) {
			t.Errorf("sshd %s reported as %q, want %q", pid, events[pid], want)
		}
	}

	// Next round: the open ones are "open", nothing is ended twice.
	a.killed = nil
	p.gone(2000)
	p.gone(4000)
	if err := a.CheckSessions(ctx); err != nil || len(a.killed) != 0 {
		t.Fatalf("second check: %v, ended %v", err, a.killed)
	}
	last := f.lastReports()[2]
	for _, s := range last.Sessions {
		if s.Event != wire.SessionOpen {
			t.Errorf("second report: %s is %s", s.ID, s.Event)
		}
	}

	// A login sshd's log never names, and one it names twice (a line forged
	// into the log after the real one), cannot be tied to a key: both end.
	p.session(7000, "")
	p.session(8000, logged(newCert(t, ca, 5, hour)))
	p.logLine(fmt.Sprintf("Accepted publickey for %s from 10.0.0.9 port 8000 ssh2: ED25519 %s", p.user, ssh.FingerprintSHA256(newSigner(t).PublicKey())))
	now := time.Now()
	a.now = func() time.Time { return now }
	for range 3 {
		a.CheckSessions(ctx)
		now = now.Add(unboundGrace)
	}
	slices.Sort(a.killed)
	if !slices.Equal(a.killed, []int{7000, 8000}) {
		t.Fatalf("unverifiable sessions: ended %v, want [7000 8000]", a.killed)
	}
	reported := map[int]bool{}
	for _, r := range f.lastReports() {
		for _, s := range r.Sessions {
			if s.Event == wire.SessionEnded && strings.Contains(s.Reason, "cannot be tied") {
				reported[s.PID] = true
			}
		}
	}
	if !reported[7000] || !reported[8000] {
		t.Errorf("unverifiable sessions reported ended: %v", reported)
	}
	a.now = time.Now

	// The server is down: local judgement still ends sessions, and the report of
	// it waits for the server.
	a.killed = nil
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
	p.session(9000, logged(newCert(t, ca, 7, hour)))
	if err := a.CheckSessions(ctx); err == nil {
		t.Error("no error with the server down")
	}
	if !slices.Equal(a.killed, []int{9000}) {
		t.Fatalf("with the server down: ended %v, want [9000]", a.killed)
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	p.gone(9000)
	if err := a.CheckSessions(ctx); err != nil {
		t.Fatal(err)
	}
	reps = f.lastReports()
	found := false
	for _, s := range reps[len(reps)-1].Sessions {
		found = found || (s.PID == 9000 && s.Event == wire.SessionEnded)
	}
	if !found {
		t.Error("the session ended while the server was down was not reported once it was back")
	}
}

// bindTest drives an agent without a token, its clock and /proc's uptime, for
// the tests of how sessions are tied to sshd's log.
type bindTest struct {
	*testAgent
	p   *fakeProc
	ca  ssh.Signer
	now time.Time
}

func newBindTest(t *testing.T) *bindTest {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: listener")
	b := &bindTest{testAgent: newCheckAgent(t, testConfig(t, f.srv.URL), p, ""), p: p, ca: ca, now: time.Now()}
	b.Agent.now = func() time.Time { return b.now }
	return b
}

// check runs a check at uptime ticks since boot, then moves the clock on by
// step.
func (b *bindTest) check(t *testing.T, uptime uint64, step time.Duration) {
	t.Helper()
	b.p.setUptime(uptime)
	if err := b.CheckSessions(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(step)
}

// line logs sshd's line for a login from 10.0.0.9 port port; key is what
// follows "ssh2: ".
func (b *bindTest) line(port int, key string) {
	b.p.logLine(fmt.Sprintf("Dec  7 07:00:01 host sshd[%d]: Accepted publickey for %s from 10.0.0.9 port %d ssh2: %s", port, b.p.user, port, key))
}

// session returns the tracked session whose monitor is pid, or nil.
func (b *bindTest) session(pid int) *tracked {
	for _, t := range b.tracked {
		if t.s.PID == pid {
			return t
		}
	}
	return nil
}

// loginOf returns the login a tracked session is tied to, or nil.
func loginOf(t *tracked) *Accepted {
	if t == nil {
		return nil
	}
	return t.s.Login
}

// TestBindLateSession: under load sshd can log a login and start the session's
// processes several checks later. The session is still tied to its line, and
// is not ended as unverifiable.
func TestBindLateSession(t *testing.T) {
	b := newBindTest(t)
	const tick = 500 * time.Millisecond
	// The connection's monitor starts at 60s since boot (fakeProc.session:
	// 5000+1000 ticks); the agent's first check is before it.
	b.check(t, 5900, tick)
	line := logged(newCert(t, b.ca, 5, time.Now().Add(time.Hour)))
	b.line(1000, line)
	b.check(t, 6000, tick) // reads the line, in the clock tick the monitor started
	b.check(t, 6150, tick)
	b.check(t, 6200, tick)
	b.p.session(1000, "") // the session's processes, three checks after its line
	b.check(t, 6250, tick)
	for range 3 {
		b.check(t, 6300, unboundGrace)
	}
	s := b.session(1000)
	if len(b.killed) != 0 || s == nil {
		t.Fatalf("the session was ended (%v) or is not tracked", b.killed)
	}
	if s.s.Login == nil || s.s.Login.Serial != 5 || s.unverifiable != "" {
		t.Fatalf("the session is tied to %s (unverifiable: %q), want its line: certificate serial 5", describeLogin(s.s.Login), s.unverifiable)
	}
}

// TestBindStaleLine: an earlier connection from the same address and port
// logged a line before this session's monitor started. The session is not tied
// to it, also when its own line comes only after it is seen, and also when the
// stale line was read at the check just before the one that saw the session.
func TestBindStaleLine(t *testing.T) {
	b := newBindTest(t)
	b.check(t, 5000, 500*time.Millisecond)
	// A certificate login from port 1000 that came and went between checks.
	b.line(1000, logged(newCert(t, b.ca, 9, time.Now().Add(time.Hour))))
	b.check(t, 5999, 500*time.Millisecond) // a clock tick before the next monitor starts
	// Then a login with a plain key from the same port: its monitor started
	// at 6000 ticks, its line reaches the log after its processes are seen.
	b.p.session(1000, "")
	b.check(t, 6100, 500*time.Millisecond)
	if s := b.session(1000); s == nil || s.s.Login != nil {
		t.Fatalf("before its own line was logged the session is tied to %s (tracked: %v), want to no line", describeLogin(loginOf(s)), s != nil)
	}
	plain := "ED25519 " + ssh.FingerprintSHA256(newSigner(t).PublicKey())
	b.line(1000, plain)
	b.check(t, 6150, 500*time.Millisecond)
	for range 3 {
		b.check(t, 6200, unboundGrace)
	}
	s := b.session(1000)
	if len(b.killed) != 0 || s == nil {
		t.Fatalf("the session was ended (%v) or is not tracked", b.killed)
	}
	if s.s.Login == nil || s.s.Login.Fingerprint != strings.TrimPrefix(plain, "ED25519 ") || s.s.Login.Cert() {
		t.Fatalf("the session is tied to %s, want its own line: %s", describeLogin(s.s.Login), plain)
	}
}

// TestBindForgedLine: a line forged into the log for the session's address,
// port and user (logger(1)), before or after its real line and before its
// processes are seen, makes it unverifiable: it is ended.
func TestBindForgedLine(t *testing.T) {
	for _, forgedFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("forgedFirst=%v", forgedFirst), func(t *testing.T) {
			b := newBindTest(t)
			const tick = 500 * time.Millisecond
			b.check(t, 5900, tick)
			// The real login used a plain key; the forged line names one of
			// ajar's certificates.
			first := "ED25519 " + ssh.FingerprintSHA256(newSigner(t).PublicKey())
			second := logged(newCert(t, b.ca, 5, time.Now().Add(time.Hour)))
			if forgedFirst {
				first, second = second, first
			}
			b.line(1000, first)
			b.check(t, 6100, tick)
			b.line(1000, second)
			b.check(t, 6150, tick)
			b.check(t, 6200, tick)
			b.p.session(1000, "")
			b.check(t, 6250, tick)
			if !slices.Equal(b.killed, []int{1000}) {
				t.Fatalf("ended %v, want the session (1000) as soon as it is seen; it is tied to %s", b.killed, describeLogin(loginOf(b.session(1000))))
			}
		})
	}
}

// TestBindWithoutUptime: without /proc/uptime a line counts when read at the
// check before the one that saw the session or later, not earlier.
func TestBindWithoutUptime(t *testing.T) {
	b := newBindTest(t)
	if err := os.Remove(filepath.Join(b.p.root, "uptime")); err != nil {
		t.Fatal(err)
	}
	step := func() {
		t.Helper()
		if err := b.CheckSessions(t.Context()); err != nil {
			t.Fatal(err)
		}
		b.now = b.now.Add(500 * time.Millisecond)
	}
	step()
	b.line(1000, logged(newCert(t, b.ca, 9, time.Now().Add(time.Hour)))) // an earlier connection's
	step()
	step()
	b.p.session(1000, "")
	step()
	if s := b.session(1000); s == nil || s.s.Login != nil {
		t.Fatalf("the session is tied to %s (tracked: %v), want to no line: its only line was read two checks before it was seen", describeLogin(loginOf(s)), s != nil)
	}
	plain := "ED25519 " + ssh.FingerprintSHA256(newSigner(t).PublicKey())
	b.line(1000, plain)
	step()
	if s := b.session(1000); s == nil || s.s.Login == nil || s.s.Login.Fingerprint != strings.TrimPrefix(plain, "ED25519 ") || len(b.killed) != 0 {
		t.Fatalf("the session is tied to %s, ended %v, want tied to its own line %s", describeLogin(loginOf(s)), b.killed, plain)
	}
}

func TestUptime(t *testing.T) {
	root := t.TempDir()
	for in, want := range map[string]uint64{"12345.67 2345.01\n": 1234567, "3.5 1.0": 350, "7": 700} {
		os.WriteFile(filepath.Join(root, "uptime"), []byte(in), 0o444)
		if got, err := (procFS{root: root}).uptime(); err != nil || got != want {
			t.Errorf("uptime %q = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x.10 1", "1.x 1"} {
		os.WriteFile(filepath.Join(root, "uptime"), []byte(in), 0o444)
		if got, err := (procFS{root: root}).uptime(); err == nil {
			t.Errorf("uptime %q = %d, want an error", in, got)
		}
	}
}

// TestCheckSessionsEndsAt: a session ends at the expiry the server gave, also
// once the server cannot be asked any more; the leftovers of its login are
// ended once no grant covers the login.
func TestCheckSessionsEndsAt(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	cfg := testConfig(t, f.srv.URL)
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: listener")
	a := newCheckAgent(t, cfg, p, "node-token")
	now := time.Now()
	a.now = func() time.Time { return now }
	p.session(1000, logged(newCert(t, ca, 5, now.Add(time.Hour))))
	later := now.Add(time.Minute)
	f.mu.Lock()
	f.endsAt = &later
	f.mu.Unlock()
	if err := a.CheckSessions(t.Context()); err != nil || len(a.killed) != 0 || len(a.swept) != 0 {
		t.Fatalf("active request: %v, ended %v, swept %v", err, a.killed, a.swept)
	}
	f.mu.Lock()
	f.down = true
	f.mu.Unlock()
	now = later
	a.CheckSessions(t.Context())
	wantSwept := []int{p.uid}
	if p.uid == 0 {
		wantSwept = nil // root's leftovers are never swept
	}
	if !slices.Equal(a.killed, []int{1000}) || !slices.Equal(a.swept, wantSwept) {
		t.Fatalf("with the server gone and the access ended: ended %v, swept %v", a.killed, a.swept)
	}
}

func TestCheckSessionsWithoutToken(t *testing.T) {
	ca := newSigner(t)
	f := newFakeServer(t, ca.PublicKey())
	f.setKRL(t, ca.PublicKey(), 5)
	cfg := testConfig(t, f.srv.URL)
	p := newFakeProc(t)
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: listener")
	a := newCheckAgent(t, cfg, p, "")
	p.session(1000, logged(newCert(t, ca, 5, time.Now().Add(time.Hour))))
	if err := a.CheckSessions(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.killed, []int{1000}) || len(f.lastReports()) != 0 {
		t.Fatalf("ended %v, reports %d", a.killed, len(f.lastReports()))
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

func TestLeftovers(t *testing.T) {
	p := newFakeProc(t)
	const uid = 4242
	// Start times are clock ticks after boot (1700000000): 100 ticks is 1s.
	since := time.Unix(1700000000+100, 0)
	p.add(1, 0, 1, "init", 1, 0, "init")
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: listener")
	p.add(200, 100, 200, "sshd", 20000, 0, "sshd: u [priv]")
	p.add(201, 200, 200, "sshd", 20001, uid, "sshd: u@notty")
	p.add(300, 201, 300, "sh", 20002, uid, "sh")
	p.add(301, 1, 300, "sleep", 20003, uid, "nohup sleep") // left its parent, not its session: the connection's
	p.add(400, 1, 400, "sleep", 20004, uid, "setsid sleep")
	p.add(401, 400, 400, "sleep", 20005, uid, "its child")
	p.add(500, 1, 500, "sshd", 20006, uid, "a user's process named sshd")
	p.add(501, 500, 500, "sleep", 20007, uid, "below it")
	p.add(600, 1, 600, "cron", 50, uid, "started before the login")
	p.add(700, 1, 700, "other", 20008, uid+1, "another user's")
	p.add(800, 1, 800, "sleep", 20009, uid, "zombie")
	os.WriteFile(filepath.Join(p.root, "800", "stat"), []byte("800 (sleep) Z 1 800 800 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 20009 0 0\n"), 0o444)
	fs := procFS{root: p.root}
	procs, err := fs.all()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for pid := range fs.leftovers(procs, uid, since) {
		got = append(got, pid)
	}
	slices.Sort(got)
	if want := []int{400, 401, 500, 501}; !slices.Equal(got, want) {
		t.Fatalf("leftovers = %v, want %v", got, want)
	}
}

func TestPrincipals(t *testing.T) {
	p := sshcert.Principal("prod-web", "ubuntu")
	if p != "ajar-target:prod-web:ubuntu" {
		t.Fatalf("Principal = %q", p)
	}
	if tg, l, ok := sshcert.ParsePrincipal(p); !ok || tg != "prod-web" || l != "ubuntu" {
		t.Fatalf("ParsePrincipal = %q %q %v", tg, l, ok)
	}
	for _, bad := range []string{"ubuntu", "ajar-target:prod-web", "ajar-target::ubuntu", "ajar-target:a:b:c"} {
		if _, _, ok := sshcert.ParsePrincipal(bad); ok {
			t.Errorf("ParsePrincipal(%q) ok", bad)
		}
	}
}

// TestScanSessionsOfOwnSSHD: the agent judges only the connections of the sshd
// it serves (ssh_ports); another sshd's sessions on the same machine are not
// its to end.
func TestScanSessionsOfOwnSSHD(t *testing.T) {
	p := newFakeProc(t)
	p.add(1, 0, 1, "init", 1, 0, "init")
	p.add(100, 1, 100, "sshd", 10, 0, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
	p.session(1000, "") // local port 22
	p.session(2000, "")
	// Move the second connection to another sshd's port, 2222.
	p.tcp[len(p.tcp)-1] = strings.Replace(p.tcp[len(p.tcp)-1], "0100000A:0016", "0100000A:08AE", 1)
	p.writeTCP()

	ids := func(ports []uint16) []int {
		sessions, _, err := procFS{root: p.root, ports: ports}.scan()
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for _, s := range sessions {
			out = append(out, s.PID)
		}
		return out
	}
	if got := ids([]uint16{22}); fmt.Sprint(got) != "[1000]" {
		t.Errorf("ssh_ports [22]: sessions %v, want [1000]", got)
	}
	if got := ids([]uint16{2222}); fmt.Sprint(got) != "[2000]" {
		t.Errorf("ssh_ports [2222]: sessions %v, want [2000]", got)
	}
	if got := ids(nil); fmt.Sprint(got) != "[1000 2000]" {
		t.Errorf("no ports: sessions %v, want both", got)
	}
}
