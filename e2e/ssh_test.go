package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// These tests run the real ajar binary against a real OpenSSH sshd, started by
// each test on a loopback port, as root (sshd needs it to switch users). They
// create throw-away Unix users and remove them afterwards.

// sshPolicy is the policy of the SSH tests: demo-ssh hands out certificates
// pinned to the requester's address, demo-keys authorizes plain keys; both
// auto-approve up to 5m (the default), and node@example.com is their host agent.
const sshPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
  - {id: node@example.com, groups: [ssh-nodes]}
admins: [group:admins]
targets:
  demo-ssh:
    provider: ssh-cert
    config: {principals: [%[1]s], source_address: request, nodes: [group:ssh-nodes]}
  demo-keys:
    provider: ssh-cert
    config: {principals: [%[1]s], source_address: request, mode: authorized-keys, nodes: [group:ssh-nodes]}
policies:
  - name: ssh
    targets: [demo-ssh, demo-keys]
    requesters: [group:engineers]
    default_duration: 5m
    min_duration: 5s
    max_duration: 1h
    approval:
      timeout: 30m
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("5m")'
`

// requireRoot fails (never skips) unless the tests run as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the SSH tests run sshd and create users: they must run as root (scripts/test in CI does)")
	}
}

// sshdPath returns the sshd binary; a missing one fails the test.
func sshdPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return "/usr/sbin/sshd"
	}
	t.Fatal("sshd is required for this test (scripts/test installs openssh-server)")
	return ""
}

// sshRootDir returns a new directory for sshd's files whose every path component is
// root-owned and not writable by others, as sshd's StrictModes and its checks of
// AuthorizedKeysCommand demand (/tmp would not do).
func sshRootDir(t testing.TB) string {
	t.Helper()
	for _, base := range []string{"/run", "/var/lib"} {
		fi, err := os.Stat(base)
		if err != nil || fi.Mode().Perm()&0o022 != 0 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			continue
		}
		dir, err := os.MkdirTemp(base, "ajar-e2e-sshd-")
		if err != nil {
			continue
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	t.Fatal("no root-owned directory for sshd's files (tried /run and /var/lib)")
	return ""
}

var userMu sync.Mutex

// unixUser creates a login user for the test (random name unless name is
// given) and removes it afterwards if the test created it. Its password field
// is "*": no password works, but the account is not locked, so keys can log in.
func unixUser(t testing.TB, name string) string {
	t.Helper()
	if name == "" {
		b := make([]byte, 4)
		rand.Read(b)
		name = "ajt" + hex.EncodeToString(b)
	}
	userMu.Lock() // useradd and userdel lock /etc/passwd and fail rather than wait
	defer userMu.Unlock()
	if _, err := user.Lookup(name); err == nil {
		return name
	}
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	requireTool(t, "useradd")
	run("useradd", "-m", "-s", "/bin/sh", name)
	t.Cleanup(func() {
		userMu.Lock()
		defer userMu.Unlock()
		exec.Command("userdel", "-r", "-f", name).Run()
	})
	run("usermod", "-p", "*", name)
	return name
}

func sshFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// sshd is a running "sshd -D -E LOG" for one test. Its log file is what the
// host agent reads (auth_log), as it reads /var/log/auth.log in production.
type sshd struct {
	Dir, Config, KnownHosts string
	Log                     string // the file sshd logs to
	Port                    int
	cmd                     *exec.Cmd
	mu                      sync.Mutex
	log                     bytes.Buffer // what sshd writes to stderr (errors at start)
	exited                  chan struct{}
}

func (d *sshd) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, _ := os.ReadFile(d.Log)
	return d.log.String() + string(b)
}

type sshLockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l sshLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// newSSHD prepares an sshd in dir: a host key, a known_hosts file for clients,
// and a config that reads no authorized_keys file and includes dir/ajar.conf,
// which "ajar node install --apply" writes. Start it with start.
func newSSHD(t testing.TB, dir string) *sshd {
	t.Helper()
	keygen := requireTool(t, "ssh-keygen")
	requireRoot(t)
	d := &sshd{Dir: dir, Port: sshFreePort(t), Config: filepath.Join(dir, "sshd_config"),
		KnownHosts: filepath.Join(dir, "known_hosts"), Log: filepath.Join(dir, "sshd.log"), exited: make(chan struct{})}
	hostKey := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	if err := os.Chmod(hostKey, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := readFile(t, hostKey+".pub")
	f := strings.Fields(pub)
	sshWriteFile(t, d.KnownHosts, fmt.Sprintf("[127.0.0.1]:%d %s %s\n", d.Port, f[0], f[1]), 0o644)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // the privilege separation directory
		t.Fatal(err)
	}
	sshWriteFile(t, d.Config, fmt.Sprintf(`Include %[1]s/ajar.conf
Port %[2]d
ListenAddress 127.0.0.1
HostKey %[3]s
PidFile none
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
PermitRootLogin no
LogLevel VERBOSE
MaxStartups 50
`, dir, d.Port, hostKey), 0o644)
	return d
}

// start runs sshd and waits until it accepts connections; it is killed when
// the test ends.
func (d *sshd) start(t testing.TB) {
	t.Helper()
	d.cmd = exec.Command(sshdPath(t), "-D", "-E", d.Log, "-f", d.Config)
	d.cmd.Stdout = sshLockedWriter{&d.mu, &d.log}
	d.cmd.Stderr = sshLockedWriter{&d.mu, &d.log}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", d.logs())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.Port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("sshd exited at start:\n%s", d.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not accept connections:\n%s", d.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sshArgs are the ssh client options for this sshd: its host key is known, no
// prompts, no other identities, no user config.
func (d *sshd) sshArgs() []string {
	return []string{"-F", "/dev/null", "-p", strconv.Itoa(d.Port), "-o", "UserKnownHostsFile=" + d.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"}
}

// login runs "ssh ... USER@127.0.0.1 COMMAND" with key (and cert, if not "")
// and returns ssh's exit code and output.
func (d *sshd) login(t testing.TB, key, cert, login string, extra ...string) (int, string) {
	t.Helper()
	args := append(d.sshArgs(), "-i", key)
	if cert != "" {
		args = append(args, "-o", "CertificateFile="+cert)
	}
	args = append(args, extra...)
	args = append(args, login+"@127.0.0.1", "echo", "logged-in-as-$(id -un)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("ssh: %v", err)
	}
	if !strings.Contains(string(out), "logged-in-as-"+login) {
		t.Fatalf("ssh exited 0 without running the command as %s:\n%s", login, out)
	}
	return 0, string(out)
}

func (d *sshd) wantLogin(t testing.TB, what, key, cert, login string, extra ...string) {
	t.Helper()
	if code, out := d.login(t, key, cert, login, extra...); code != 0 {
		t.Fatalf("%s: ssh exited %d, want a login:\n%s\nsshd log:\n%s", what, code, out, d.logs())
	}
}

func (d *sshd) wantRefused(t testing.TB, what, key, cert, login string, extra ...string) {
	t.Helper()
	if code, out := d.login(t, key, cert, login, extra...); code == 0 {
		t.Fatalf("%s: ssh logged in, want it refused:\n%s", what, out)
	}
}

func sshWriteFile(t testing.TB, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// sshSetup is an ajar server, an sshd and a node config for one test.
type sshSetup struct {
	s          *server
	d          *sshd
	login      string // the Unix user the targets' certificates are for
	nodeConfig string
	bin        string // the ajar binary, copied where sshd accepts it
}

// newSSHSetup starts ajar with sshPolicy for login, writes a node config for
// target into sshd's directory and runs "ajar node install --apply" there (which
// syncs the CA and KRL and checks sshd's config with sshd -t), then starts sshd.
func newSSHSetup(t *testing.T, login, target, mode string) *sshSetup {
	t.Helper()
	return newSSHSetupWith(t, fmt.Sprintf(sshPolicy, login), login, target, mode)
}

// newSSHSetupWith is newSSHSetup with another policy, whose target's host agent
// is node@example.com.
func newSSHSetupWith(t *testing.T, policy, login, target, mode string) *sshSetup {
	t.Helper()
	requireRoot(t)
	requireTool(t, "ssh")
	dir := sshRootDir(t)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	sshWriteFile(t, policyFile, policy, 0o644)
	st := &sshSetup{s: startServer(t, t.TempDir(), "--config", policyFile, "--dev"), login: login}
	st.d = newSSHD(t, dir)

	// sshd runs AuthorizedKeysCommand only from a root-owned path. The wrapper
	// skips the race detector's one-second sleep at exit, which every login
	// would otherwise wait for.
	sshInstallBinary(t, bin, filepath.Join(dir, "ajar-race"))
	st.bin = filepath.Join(dir, "ajar")
	sshWriteFile(t, st.bin, "#!/bin/sh\nGORACE=atexit_sleep_ms=0 exec "+filepath.Join(dir, "ajar-race")+` "$@"`+"\n", 0o755)
	sshWriteFile(t, filepath.Join(dir, "node.token"), st.s.tokens["node"]+"\n", 0o600)
	st.nodeConfig = filepath.Join(dir, "node.yaml")
	sshWriteFile(t, st.nodeConfig, fmt.Sprintf(`server: %s
target: %s
mode: %s
host: e2e-host
token_file: node.token
ca_file: ajar_ca.pub
krl_file: ajar_revoked.krl
interval: 500ms
auth_log: sshd.log
ssh_ports: [%d]
`, st.s.URL, target, mode, st.d.Port), 0o644)
	sshWriteFile(t, st.d.Log, "", 0o600) // the agent may start before sshd writes it
	st.s.ok(t, "", "node", "install", "--config", st.nodeConfig, "--apply", "--dropin", filepath.Join(dir, "ajar.conf"),
		"--sshd-config", st.d.Config, "--sshd", sshdPath(t), "--keys-user", "root", "--binary", st.bin)
	st.d.start(t)
	return st
}

// sshInstallBinary copies the ajar binary to a root-owned path, mode 0755.
func sshInstallBinary(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	sshWriteFile(t, to, string(b), 0o755)
}

// sshNewKey creates an ed25519 key pair in dir and returns the private key's path.
func sshNewKey(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return path
}

// certFor makes a request as alice, certifies key for it and returns the
// request and the certificate file.
func (st *sshSetup) certFor(t testing.TB, key, dur, sourceIP string) (*ajar.Request, string) {
	t.Helper()
	r := st.s.request(t, "alice", "request", "demo-ssh", "--for", dur, "--reason", "e2e", "--param", "source_ip="+sourceIP)
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s, want active", r.State)
	}
	cert := key + "-" + r.ID + "-cert.pub"
	st.s.ok(t, "alice", "ssh-cert", r.ID, "--public-key", key+".pub", "--out", cert)
	return r, cert
}

// TestSSHCertificateLogins: a certificate from an active request logs in to a real
// sshd; the same certificate is refused for another login, from another address,
// after the request expired, and after it was revoked early and "ajar node sync"
// ran.
func TestSSHCertificateLogins(t *testing.T) {
	parallel(t, costLong)
	login := unixUser(t, "")
	other := unixUser(t, "")
	st := newSSHSetup(t, login, "demo-ssh", "certificate")
	keys := t.TempDir()
	key := sshNewKey(t, keys, "id")

	// Nothing works before there is a request.
	st.d.wantRefused(t, "plain key, no request", key, "", login)

	// Active: logs in; not as another user; not from another address.
	active, cert := st.certFor(t, key, "5m", "127.0.0.1")
	st.d.wantLogin(t, "active request", key, cert, login)
	st.d.wantRefused(t, "principal mismatch", key, cert, other)
	pinned, cert2 := st.certFor(t, key, "5m", "127.0.0.2")
	st.d.wantRefused(t, "source address differs", key, cert2, login)
	st.d.wantLogin(t, "from the pinned address", key, cert2, login, "-b", "127.0.0.2")

	// Expired: the certificate's own valid-before closes it.
	short, cert3 := st.certFor(t, key, "30s", "127.0.0.1")
	st.d.wantLogin(t, "short request, still active", key, cert3, login)
	// Revoked early: sshd learns it from the KRL that "ajar node sync" installs.
	st.s.ok(t, "alice", "revoke", pinned.ID)
	st.s.ok(t, "alice", "revoke", active.ID)
	st.d.wantLogin(t, "revoked, before node sync (the KRL is what stops it)", key, cert, login)
	st.s.ok(t, "", "node", "sync", "--config", st.nodeConfig)
	st.d.wantRefused(t, "revoked early, after node sync", key, cert, login)
	if out, err := exec.Command("ssh-keygen", "-Q", "-f", filepath.Join(st.d.Dir, "ajar_revoked.krl"), cert).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "REVOKED") {
		t.Errorf("ssh-keygen -Q on the installed KRL: %v\n%s", err, out)
	}
	if !strings.Contains(st.d.logs(), "revoked") {
		t.Errorf("sshd did not log a revoked key:\n%s", st.d.logs())
	}

	st.s.waitState(t, "alice", short.ID, ajar.StateExpired, 2*time.Minute)
	for time.Now().Before(short.ExpiresAt.Add(time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	st.d.wantRefused(t, "expired request", key, cert3, login)

	// A new request still works: revocation is per certificate.
	_, cert4 := st.certFor(t, key, "5m", "127.0.0.1")
	st.d.wantLogin(t, "a new request after the revocations", key, cert4, login)
}

// sshSession is a long-running "ssh ... sleep 60".
type sshSession struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	end  time.Time
}

func (d *sshd) startSession(t testing.TB, key, cert, login string) *sshSession {
	t.Helper()
	args := append(d.sshArgs(), "-i", key)
	if cert != "" {
		args = append(args, "-o", "CertificateFile="+cert)
	}
	args = append(args, login+"@127.0.0.1", "sleep", "60")
	s := &sshSession{cmd: exec.Command("ssh", args...), done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); s.end = time.Now(); close(s.done) }()
	t.Cleanup(func() { s.cmd.Process.Kill(); <-s.done })
	return s
}

// ended waits for the session's ssh to exit after its access ended at from,
// and fails unless it was ended (not run to its end). How long that took is
// logged, not asserted: the agent's latency is a benchmark matter, and a
// loaded machine stretches it.
func (s *sshSession) ended(t testing.TB, what string, from time.Time) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(time.Until(from.Add(2 * time.Minute))):
		t.Fatalf("%s: the session is still open %s after its access ended", what, time.Since(from).Round(time.Second))
	}
	t.Logf("%s: the session ended %s after its access ended", what, s.end.Sub(from).Round(10*time.Millisecond))
	if s.cmd.ProcessState.Success() {
		t.Errorf("%s: ssh exited 0; the session ran to its end instead of being ended", what)
	}
}

// startAgent runs "ajar node run" for the test.
func (st *sshSetup) startAgent(t testing.TB) *bytes.Buffer {
	t.Helper()
	cmd := exec.Command(bin, "node", "run", "--config", st.nodeConfig)
	var mu sync.Mutex
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = sshLockedWriter{&mu, &log}, sshLockedWriter{&mu, &log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("node agent log:\n%s", log.String())
			mu.Unlock()
		}
	})
	return &log
}

// waitAudit waits until the audit log has an event with action for request id
// and returns it.
func (st *sshSetup) waitAudit(t testing.TB, id, action string, timeout time.Duration) ajar.AuditEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var evs []ajar.AuditEvent
		if err := json.Unmarshal([]byte(st.s.ok(t, "admin", "audit", "--request", id, "-o", "json")), &evs); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Action == action {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s after %s", action, id, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSSHSessionsEndWithAccess: the host agent ends an open session after
// its request's early revocation and after its expiry, and the audit log has the
// login (user, host, request, serial, source address) and the end.
func TestSSHSessionsEndWithAccess(t *testing.T) {
	parallel(t, costLong)
	login := unixUser(t, "")
	st := newSSHSetup(t, login, "demo-ssh", "certificate")
	st.startAgent(t)
	key := sshNewKey(t, t.TempDir(), "id")
	revoked, revokedCert := st.certFor(t, key, "5m", "127.0.0.1")
	expiring, expiringCert := st.certFor(t, key, "40s", "127.0.0.1")
	s1 := st.d.startSession(t, key, revokedCert, login)
	s2 := st.d.startSession(t, key, expiringCert, login)

	// The agent reports both logins.
	opened := st.waitAudit(t, revoked.ID, "ssh.session.opened", time.Minute)
	st.waitAudit(t, expiring.ID, "ssh.session.opened", time.Minute)
	var d map[string]any
	json.Unmarshal(opened.Details, &d)
	if opened.Actor != "node@example.com" || d["user"] != login || d["host"] != "e2e-host" || d["source"] != "127.0.0.1" ||
		d["target"] != "demo-ssh" || d["key_id"] != "ajar:"+revoked.ID+":alice@example.com" || d["serial"] == nil {
		t.Errorf("login audit event: actor %s, details %s", opened.Actor, opened.Details)
	}
	select {
	case <-s1.done:
		t.Fatalf("the session ended before its access did:\n%s", s1.out.String())
	default:
	}

	// Revoked early: ended.
	at := time.Now()
	st.s.ok(t, "alice", "revoke", revoked.ID)
	s1.ended(t, "revoked", at)
	ended := st.waitAudit(t, revoked.ID, "ssh.session.ended", time.Minute)
	if !strings.Contains(string(ended.Details), "revoked") {
		t.Errorf("end audit event: %s", ended.Details)
	}

	// Expired: ended after the expiry.
	s2.ended(t, "expired", *expiring.ExpiresAt)
	st.waitAudit(t, expiring.ID, "ssh.session.ended", time.Minute)

	_, metrics := st.s.httpDo(t, "", "GET", "/metrics", "")
	if !strings.Contains(string(metrics), `ajar_ssh_session_events_total{event="ended"} 2`) {
		t.Errorf("metrics lack the two ended sessions:\n%.3000s", metrics)
	}
}

// homeSSHDirs lists every ~/.ssh of the users the test may touch, with what
// is in it, so the test can tell nothing was written there.
func homeSSHDirs(t testing.TB, users ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	cur, _ := user.Current()
	for _, name := range append(users, cur.Username) {
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(u.HomeDir, ".ssh")
		entries, err := os.ReadDir(dir)
		if err != nil {
			out[dir] = "absent"
			continue
		}
		var b strings.Builder
		for _, e := range entries {
			fi, _ := e.Info()
			fmt.Fprintf(&b, "%s %d %s;", e.Name(), fi.Size(), fi.ModTime())
		}
		out[dir] = b.String()
	}
	return out
}

// TestSSHCommand: "ajar ssh TARGET -- SSH ARGS" asks for an auto-approved
// request, logs in with a fresh key and certificate, leaves no key file behind,
// and a second run inside the window reuses the grant.
func TestSSHCommand(t *testing.T) {
	parallel(t, costLight)
	login := unixUser(t, "ajar-demo")
	st := newSSHSetup(t, login, "demo-ssh", "certificate")
	before := homeSSHDirs(t, login)

	tmp := t.TempDir()
	run := func() (result, string) {
		t.Helper()
		args := append([]string{"ssh", "demo-ssh", "--"}, st.d.sshArgs()...)
		args = append(args, login+"@127.0.0.1", "true")
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "AJAR_SERVER="+st.s.URL, "AJAR_TOKEN="+st.s.tokens["alice"],
			"TMPDIR="+tmp, "XDG_RUNTIME_DIR=")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(tmp)
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		return result{out.String(), errb.String(), code}, strings.Join(left, ",")
	}
	first, left := run()
	if first.Code != 0 {
		t.Fatalf("ajar ssh: exit %d\n%s\nsshd log:\n%s", first.Code, first.Stderr, st.d.logs())
	}
	if left != "" {
		t.Errorf("ajar ssh left files in its temporary directory: %s", left)
	}
	if !strings.Contains(first.Stderr, "new request") || !strings.Contains(first.Stderr, "certificate serial") {
		t.Errorf("ajar ssh status lines:\n%s", first.Stderr)
	}
	second, left := run()
	if second.Code != 0 || left != "" {
		t.Fatalf("second ajar ssh: exit %d, left %q\n%s", second.Code, left, second.Stderr)
	}
	if !strings.Contains(second.Stderr, "your request") {
		t.Errorf("second ajar ssh did not reuse the grant:\n%s", second.Stderr)
	}
	var reqs []ajar.Request
	if err := json.Unmarshal([]byte(st.s.ok(t, "alice", "requests", "--mine", "-o", "json")), &reqs); err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].Target != "demo-ssh" || reqs[0].Params["source_ip"] != "127.0.0.1" {
		t.Fatalf("requests after two ajar ssh runs: %+v", reqs)
	}
	issued := 0
	for _, e := range st.s.auditEvents(t) {
		if e.Action == "ssh_cert.issued" && e.Subject == reqs[0].ID {
			issued++
		}
	}
	if issued != 2 {
		t.Errorf("%d certificates issued for the one request, want 2 (one per ajar ssh, each for a fresh key)", issued)
	}

	// ssh's exit status comes through.
	args := append([]string{"ssh", "demo-ssh", "--"}, st.d.sshArgs()...)
	if r := st.s.ajar(t, "alice", append(args, login+"@127.0.0.1", "exit", "3")...); r.Code != 3 {
		t.Errorf("ajar ssh ... exit 3: exit code %d\n%s", r.Code, r.Stderr)
	}
	if after := homeSSHDirs(t, login); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("~/.ssh changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestSSHAuthorizedKeysMode: with "mode: authorized-keys" sshd asks "ajar node
// keys" for keys; a key logs in only while its request is active, sessions end
// with the request, and nothing is written under any ~/.ssh.
func TestSSHAuthorizedKeysMode(t *testing.T) {
	parallel(t, costLong)
	login := unixUser(t, "")
	st := newSSHSetup(t, login, "demo-keys", "authorized-keys")
	st.startAgent(t)
	before := homeSSHDirs(t, login)
	key := sshNewKey(t, t.TempDir(), "id")
	st.d.wantRefused(t, "no request", key, "", login)

	register := func(dur string) *ajar.Request {
		t.Helper()
		r := st.s.request(t, "alice", "request", "demo-keys", "--for", dur, "--reason", "e2e", "--param", "source_ip=127.0.0.1")
		if r.State != ajar.StateActive {
			t.Fatalf("request is %s", r.State)
		}
		res := st.s.ajar(t, "alice", "ssh-cert", r.ID, "--public-key", key+".pub")
		if res.Code != 0 || !strings.Contains(res.Stderr, "authorized") || res.Stdout != "" {
			t.Fatalf("ssh-cert for an authorized-keys target: exit %d\nstdout %q\nstderr %s", res.Code, res.Stdout, res.Stderr)
		}
		return r
	}
	r := register("5m")
	keysOut := st.s.ok(t, "", "node", "keys", "--config", st.nodeConfig, login)
	if lines := strings.Split(strings.TrimSpace(keysOut), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "expiry-time=\""+r.ExpiresAt.UTC().Format("20060102150405")+"Z\",restrict,") ||
		!strings.Contains(lines[0], strings.Fields(readFile(t, key+".pub"))[1]) {
		t.Fatalf("node keys %s:\n%s", login, keysOut)
	}
	if out := st.s.ok(t, "", "node", "keys", "--config", st.nodeConfig, "root"); out != "" {
		t.Fatalf("node keys root: %q", out)
	}
	st.d.wantLogin(t, "active request", key, "", login)
	st.d.wantRefused(t, "from another address", key, "", login, "-b", "127.0.0.2")

	// A session ends with the request; the key no longer logs in.
	sess := st.d.startSession(t, key, "", login)
	st.waitAudit(t, r.ID, "ssh.session.opened", time.Minute)
	at := time.Now()
	st.s.ok(t, "alice", "revoke", r.ID)
	sess.ended(t, "revoked", at)
	st.d.wantRefused(t, "revoked", key, "", login)

	// Expiry: sshd's own expiry-time and the keys command agree.
	short := register("30s")
	st.d.wantLogin(t, "short request", key, "", login)
	for time.Now().Before(short.ExpiresAt.Add(time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	st.d.wantRefused(t, "expired", key, "", login)

	// "ajar ssh" works the same against this target, with the plain key only.
	args := append([]string{"ssh", "demo-keys", "--"}, st.d.sshArgs()...)
	res := st.s.ajar(t, "alice", append(args, login+"@127.0.0.1", "true")...)
	if res.Code != 0 || !strings.Contains(res.Stderr, "key authorized") {
		t.Fatalf("ajar ssh demo-keys: exit %d\n%s\nsshd log:\n%s", res.Code, res.Stderr, st.d.logs())
	}
	if after := homeSSHDirs(t, login); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("~/.ssh changed:\nbefore %v\nafter  %v", before, after)
	}
}
