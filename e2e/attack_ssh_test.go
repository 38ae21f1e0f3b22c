package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// Attacks on SSH access (issue 10, items 2, 3, 11 and 12), through the real
// binary, a real sshd and a real host agent.

// attackSSHPolicy has an auto-approved target dev and a target prod that needs
// bob's approval, both for the same login. node@example.com is prod's host
// agent, node-dev@example.com dev's.
const attackSSHPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
  - {id: node@example.com, groups: [prod-nodes]}
  - {id: node-dev@example.com, groups: [dev-nodes]}
admins: [group:admins]
targets:
  dev:
    provider: ssh-cert
    config: {principals: [%[1]s], nodes: [group:dev-nodes]}
  prod:
    provider: ssh-cert
    config: {principals: [%[1]s], extensions: [permit-port-forwarding], nodes: [group:prod-nodes]}
policies:
  - name: dev
    targets: [dev]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 1h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'true'
  - name: prod
    targets: [prod]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 1h
    approval:
      timeout: 30m
      steps: [{approvers: [group:sre], count: 1}]
`

// attackWait is how long an attack test waits for the agent to act: long, so
// that a loaded machine does not fail it; the agent checks every 500ms.
const attackWait = 90 * time.Second

// newAttackSSH starts ajar with attackSSHPolicy and an sshd set up by "ajar node
// install" for target prod.
func newAttackSSH(t *testing.T) *sshSetup {
	t.Helper()
	login := unixUser(t, "")
	return newSSHSetupWith(t, fmt.Sprintf(attackSSHPolicy, login), login, "prod", "certificate")
}

// prodCert makes an approved prod request for alice and certifies key for it.
func (st *sshSetup) prodCert(t *testing.T, key string) (*ajar.Request, string) {
	t.Helper()
	r := st.s.request(t, "alice", "request", "prod", "--for", "30m", "--reason", "attack test")
	if r.State != ajar.StatePending {
		t.Fatalf("prod request is %s, want pending", r.State)
	}
	st.s.ok(t, "bob", "approve", r.ID)
	st.s.waitState(t, "alice", r.ID, ajar.StateActive, attackWait)
	return r, st.issue(t, r, key)
}

// devCert makes an auto-approved dev request for alice and certifies key for it.
func (st *sshSetup) devCert(t *testing.T, key string) (*ajar.Request, string) {
	t.Helper()
	r := st.s.request(t, "alice", "request", "dev", "--for", "30m", "--reason", "attack test")
	if r.State != ajar.StateActive {
		t.Fatalf("dev request is %s, want active (auto-approved)", r.State)
	}
	return r, st.issue(t, r, key)
}

func (st *sshSetup) issue(t *testing.T, r *ajar.Request, key string) string {
	t.Helper()
	cert := key + "-" + r.ID + "-cert.pub"
	st.s.ok(t, "alice", "ssh-cert", r.ID, "--public-key", key+".pub", "--out", cert)
	return cert
}

// attackSession is one ssh client run in the background.
type attackSession struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (s *attackSession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startSSH runs "ssh [opts] LOGIN@127.0.0.1 [remote...]" with key and cert.
func (st *sshSetup) startSSH(t *testing.T, key, cert string, opts []string, remote ...string) *attackSession {
	t.Helper()
	args := append(st.d.sshArgs(), "-i", key, "-o", "CertificateFile="+cert)
	args = append(args, opts...)
	args = append(args, st.login+"@127.0.0.1")
	args = append(args, remote...)
	s := &attackSession{cmd: exec.Command("ssh", args...), done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = sshLockedWriter{&s.mu, &s.out}, sshLockedWriter{&s.mu, &s.out}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.cmd.Process.Kill(); <-s.done })
	return s
}

// loginProcs lists the processes of the test's login whose command line
// contains marker.
func (st *sshSetup) loginProcs(t *testing.T, marker string) []string {
	t.Helper()
	u, err := user.Lookup(st.login)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !strings.Contains(string(status), "\nUid:\t"+u.Uid+"\t") {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if c := strings.ReplaceAll(string(cmdline), "\x00", " "); strings.Contains(c, marker) {
			out = append(out, e.Name()+": "+c)
		}
	}
	return out
}

// hiddenSessionAttack opens a session that tries to hide from the agent, checks
// that the agent found it and leaves it open while the grant is active, and
// that revoking the grant ends it.
func (st *sshSetup) hiddenSessionAttack(t *testing.T, opts []string, remote ...string) {
	t.Helper()
	key := sshNewKey(t, t.TempDir(), "id")
	r, cert := st.prodCert(t, key)
	sess := st.startSSH(t, key, cert, opts, remote...)
	// The agent ties the session to its certificate from sshd's own records,
	// whatever the session's environment says.
	st.waitAudit(t, r.ID, "ssh.session.opened", attackWait)
	select {
	case <-sess.done:
		t.Fatalf("the session ended while its grant is active:\n%s", sess.output())
	default:
	}
	st.s.ok(t, "alice", "revoke", r.ID)
	select {
	case <-sess.done:
	case <-time.After(attackWait):
		t.Fatalf("the session is still open %s after its grant was revoked", attackWait)
	}
	if sess.cmd.ProcessState.Success() {
		t.Errorf("ssh exited 0: the session ran to its end instead of being ended:\n%s", sess.output())
	}
	ended := st.waitAudit(t, r.ID, "ssh.session.ended", attackWait)
	if !strings.Contains(string(ended.Details), "revoked") {
		t.Errorf("end event: %s", ended.Details)
	}
}

// TestAttackSSHSessions: sessions that try to hide from the host agent (item 2)
// end when their grant is revoked. One server, sshd and agent for all attacks.
func TestAttackSSHSessions(t *testing.T) {
	parallel(t, costLong)
	st := newAttackSSH(t)
	st.startAgent(t)

	// TestAttackSessionHiddenEnvUnset: the session's command drops
	// SSH_USER_AUTH from its environment.
	t.Run("HiddenEnvUnset", func(t *testing.T) {
		st.hiddenSessionAttack(t, nil, "exec env -u SSH_USER_AUTH -u SSH_CONNECTION sleep 86400")
	})

	// TestAttackSessionForgedUserAuth: the session points SSH_USER_AUTH at a
	// file of its own naming a key that is not ajar's.
	t.Run("ForgedUserAuth", func(t *testing.T) {
		other := sshNewKey(t, t.TempDir(), "other")
		pub := strings.TrimSpace(readFile(t, other+".pub"))
		st.hiddenSessionAttack(t, nil, fmt.Sprintf(`f=$(mktemp); echo "publickey %s" > "$f"; exec env SSH_USER_AUTH="$f" sleep 86400`, pub))
	})

	// TestAttackSessionPortForwardN: "ssh -N" forwards a port and runs no
	// command at all.
	t.Run("PortForwardN", func(t *testing.T) {
		port := sshFreePort(t)
		st.hiddenSessionAttack(t, []string{"-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", port, st.d.Port)})
	})

	// TestAttackSessionSetsidChild: a process detached with setsid and nohup
	// outlives the login that started it; it must not outlive the grant.
	t.Run("SetsidChild", func(t *testing.T) {
		key := sshNewKey(t, t.TempDir(), "id")
		r, cert := st.prodCert(t, key)
		marker := fmt.Sprintf("sleep %d", 86400+time.Now().UnixNano()%1000000)
		// The login waits until its child is in a session of its own: a shell
		// that exits at once can take a child that has not yet detached down
		// with its session (sshd hangs it up), which is no attack at all.
		started := fmt.Sprintf("/tmp/ajar-e2e-detached-%d", time.Now().UnixNano())
		sess := st.startSSH(t, key, cert, nil, fmt.Sprintf(
			`setsid nohup sh -c 'touch %[1]s; exec %[2]s' >/dev/null 2>&1 </dev/null & while [ ! -e %[1]s ]; do sleep 0.05; done; rm -f %[1]s`,
			started, marker))
		select {
		case <-sess.done:
		case <-time.After(attackWait):
			t.Fatal("ssh did not return after detaching its child")
		}
		if !sess.cmd.ProcessState.Success() {
			t.Fatalf("the login failed:\n%s\nsshd log:\n%s", sess.output(), st.d.logs())
		}
		if procs := st.loginProcs(t, marker); len(procs) != 1 {
			t.Fatalf("the detached child is not running: %v", procs)
		}
		// Also a child detached from a session that stays open.
		sess2 := st.startSSH(t, key, cert, nil, "setsid nohup "+marker+"1 >/dev/null 2>&1 </dev/null & exec sleep 86400")
		st.waitAudit(t, r.ID, "ssh.session.opened", attackWait)
		// The grant still covers the login: the agent leaves both alone (a
		// negative check: give the agent several 500ms rounds to do wrong).
		time.Sleep(3 * time.Second)
		if procs := st.loginProcs(t, marker); len(procs) != 2 {
			t.Fatalf("the detached children ended while the grant is active: %v", procs)
		}
		st.s.ok(t, "alice", "revoke", r.ID)
		deadline := time.Now().Add(attackWait)
		for len(st.loginProcs(t, marker)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the detached children outlived the grant by %s: %v", attackWait, st.loginProcs(t, marker))
			}
			time.Sleep(200 * time.Millisecond)
		}
		select {
		case <-sess2.done:
		case <-time.After(attackWait):
			t.Fatal("the open session outlived the grant")
		}
	})
}

// TestAttackCertCrossTarget (item 3): a certificate of the auto-approved target
// dev does not log in to a host of prod, with the same login; prod's own
// certificate does.
func TestAttackCertCrossTarget(t *testing.T) {
	parallel(t, costLight)
	st := newAttackSSH(t)
	key := sshNewKey(t, t.TempDir(), "id")
	_, devCert := st.devCert(t, key)
	st.d.wantRefused(t, "a dev certificate on a prod host", key, devCert, st.login)
	if !strings.Contains(st.d.logs(), "Certificate does not contain an authorized principal") {
		t.Errorf("sshd did not refuse the dev certificate for its principal:\n%s", st.d.logs())
	}
	_, prodCert := st.prodCert(t, key)
	st.d.wantLogin(t, "a prod certificate on a prod host", key, prodCert, st.login)

	// "ajar ssh dev" against the prod host gets a dev certificate and is refused.
	args := append([]string{"ssh", "dev", "--"}, st.d.sshArgs()...)
	if r := st.s.ajar(t, "alice", append(args, st.login+"@127.0.0.1", "true")...); r.Code == 0 {
		t.Fatalf("ajar ssh dev logged in to a prod host:\n%s", r.Stderr)
	}
}

// TestAttackNodeForeignTarget (item 11): dev's host agent reports a session with
// a prod certificate, to write ssh.session.* events with a made-up host onto a
// prod request. Nothing lands on the prod request; reporting for prod itself
// is refused.
func TestAttackNodeForeignTarget(t *testing.T) {
	parallel(t, costLight)
	login := unixUser(t, "")
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	sshWriteFile(t, policyFile, fmt.Sprintf(attackSSHPolicy, login), 0o644)
	s := startServer(t, t.TempDir(), "--config", policyFile, "--dev")
	st := &sshSetup{s: s, login: login}
	key := sshNewKey(t, t.TempDir(), "id")
	prod, _ := st.prodCert(t, key)
	// What the prod certificate is, from its issue event (a node of any target
	// could learn it: sshd logs it, the KRL names the serial).
	var certs []ajar.SSHCert
	for _, e := range s.auditEvents(t) {
		if e.Action == "ssh_cert.issued" && e.Subject == prod.ID {
			var c ajar.SSHCert
			json.Unmarshal(e.Details, &c)
			certs = append(certs, c)
		}
	}
	if len(certs) != 1 || certs[0].Fingerprint == "" {
		t.Fatalf("certificates of the prod request: %+v", certs)
	}
	_, caLine := s.httpDo(t, "", "GET", "/v1/ssh/ca", "")
	caFP := sshFingerprint(t, string(caLine))
	session := func(id, event string) map[string]any {
		return map[string]any{"id": id, "event": event, "user": login, "fingerprint": certs[0].Fingerprint,
			"serial": certs[0].Serial, "key_id": certs[0].KeyID, "ca": caFP, "source": "203.0.113.66", "reason": "made up"}
	}
	report := func(target string) (int, []byte) {
		body, _ := json.Marshal(map[string]any{"target": target, "host": "prod-db-1", "sessions": []any{
			session("forged-1", "opened"), session("forged-2", "ended")}})
		return s.httpDo(t, "node_dev", "POST", "/v1/ssh/sessions", string(body))
	}
	if code, body := report("dev"); code != http.StatusOK {
		t.Fatalf("dev agent's report for dev: %d %s", code, body)
	} else if !strings.Contains(string(body), `"end":true`) || strings.Contains(string(body), prod.ID) {
		t.Errorf("verdict on a prod certificate reported for dev: %s", body)
	}
	if code, body := report("prod"); code != http.StatusForbidden {
		t.Errorf("dev agent's report for prod: %d %s, want 403", code, body)
	}
	for _, e := range s.auditEvents(t) {
		if strings.HasPrefix(e.Action, "ssh.session.") && e.Subject == prod.ID {
			t.Errorf("dev's agent wrote %s onto prod request %s: %s", e.Action, prod.ID, e.Details)
		}
	}
}

// sshFingerprint returns the SHA256 fingerprint of a public key line, with
// ssh-keygen.
func sshFingerprint(t *testing.T, line string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "k.pub")
	sshWriteFile(t, f, line, 0o644)
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", f).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		t.Fatalf("ssh-keygen -l: %s", out)
	}
	return fields[1]
}

// TestAttackNodePlainHTTP (item 12): a host agent pointed at a plain http://
// server that is not on this host refuses to talk to it, so the CA, the KRL and
// its token never cross the network in clear. The same server on loopback is
// accepted.
func TestAttackNodePlainHTTP(t *testing.T) {
	parallel(t, costLight)
	ip := nonLoopbackIP(t)
	var mu sync.Mutex
	var seen []string
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, "not ajar", http.StatusTeapot)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	sshWriteFile(t, filepath.Join(dir, "node.token"), "ajar_secret_node_token\n", 0o600)
	n := 0
	config := func(server string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("node%d.yaml", n))
		sshWriteFile(t, p, fmt.Sprintf("server: %s\ntarget: prod\ntoken_file: node.token\nca_file: ca.pub\nkrl_file: krl\nauth_log: auth.log\n", server), 0o644)
		return p
	}
	run := func(args ...string) result {
		cmd := exec.Command(bin, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{out.String(), errb.String(), code}
	}
	plain := fmt.Sprintf("http://%s", net.JoinHostPort(ip, strconv.Itoa(port)))
	for _, args := range [][]string{
		{"node", "sync", "--config", config(plain)},
		{"node", "run", "--config", config(plain)},
		{"node", "keys", "--config", config(plain), "root"},
		{"--server", plain, "node", "sync", "--config", config("https://ajar.example.invalid")},
	} {
		r := run(args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "https://") {
			t.Errorf("ajar %s: exit %d, stderr %s; want a refusal of http://", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	mu.Lock()
	if len(seen) > 0 {
		t.Errorf("the agent talked to a plain-http server off this host: %v", seen)
	}
	mu.Unlock()

	// The check is about the network, not the port: on loopback plain http is
	// fine (the server refuses it, but it was asked).
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln2)
	r := run("node", "sync", "--config", config(fmt.Sprintf("http://127.0.0.1:%d", ln2.Addr().(*net.TCPAddr).Port)))
	mu.Lock()
	defer mu.Unlock()
	if r.Code == 0 || len(seen) == 0 {
		t.Errorf("sync with a loopback http server: exit %d, requests %v\n%s", r.Code, seen, r.Stderr)
	}
}

// nonLoopbackIP returns an address of this host that is not a loopback one:
// one of its interfaces' IPv4 addresses, or 0.0.0.0 (which reaches the host
// itself too, but is no loopback address).
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "0.0.0.0"
}
