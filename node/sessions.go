package node

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Session is one authenticated SSH connection on this host, as the privileged
// side of sshd shows it: nothing in it comes from the user.
//
// OpenSSH runs, per connection, a privileged monitor as root whose title is
// "sshd: USER [priv]" and, once the user has logged in, an unprivileged child
// running as the user ("sshd: USER@pts/0", "sshd: USER@notty", or "sshd: USER"
// for a connection without a session, such as "ssh -N" port forwarding), under
// which the user's shells and commands run. The monitor holds the connection's
// TCP socket, whose peer address and port the kernel reports; sshd logs the key
// it accepted for the login with that address and port ("Accepted publickey for
// USER from ADDR port PORT ssh2: ..."), which ties the session to its key.
type Session struct {
	// ID names the session while it lasts: the monitor's PID and start time.
	ID      string
	PID     int // sshd's privileged monitor (root)
	UID     int
	User    string
	Remote  netip.AddrPort // the client's address and port, from the monitor's socket
	Local   netip.AddrPort // this host's end of that socket: sshd's address and port
	Source  string         // the client's address
	Started time.Time

	// Login is what sshd logged when it accepted the login; nil until the
	// agent tied the session to a line of the log.
	Login *Accepted

	start uint64 // the monitor's start time in clock ticks, against PID reuse
}

// Accepted is one "Accepted METHOD for USER from ADDR port PORT ssh2: ..." line
// of sshd's log.
type Accepted struct {
	Method string // "publickey", "password", ...
	User   string
	Remote netip.AddrPort
	// For publickey logins: the key type as sshd names it ("ED25519",
	// "ED25519-CERT"), the SHA256 fingerprint of the (certified) key and, for
	// certificates, the key id, serial and the CA's fingerprint.
	KeyType       string
	Fingerprint   string
	KeyID         string
	Serial        uint64
	CAFingerprint string
}

// Cert reports whether the login used a certificate.
func (a *Accepted) Cert() bool { return a.CAFingerprint != "" }

var (
	acceptedRE = regexp.MustCompile(`Accepted (\S+) for (\S+) from (\S+) port (\d+) ssh2(?:: (.*))?$`)
	keyInfoRE  = regexp.MustCompile(`^(\S+) (SHA256:\S+)(?: ID (.*) \(serial (\d+)\) CA \S+ (SHA256:\S+))?$`)
)

// parseAccepted parses one line of sshd's log (with or without a syslog
// prefix); ok is false for any other line.
func parseAccepted(line string) (Accepted, bool) {
	m := acceptedRE.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
	if m == nil {
		return Accepted{}, false
	}
	addr, err := netip.ParseAddr(m[3])
	if err != nil {
		return Accepted{}, false
	}
	port, err := strconv.ParseUint(m[4], 10, 16)
	if err != nil {
		return Accepted{}, false
	}
	a := Accepted{Method: m[1], User: m[2], Remote: netip.AddrPortFrom(addr.Unmap(), uint16(port))}
	if m[1] == "publickey" {
		k := keyInfoRE.FindStringSubmatch(m[5])
		if k == nil {
			return Accepted{}, false
		}
		a.KeyType, a.Fingerprint = k[1], k[2]
		if k[5] != "" {
			if a.Serial, err = strconv.ParseUint(k[4], 10, 64); err != nil {
				return Accepted{}, false
			}
			a.KeyID, a.CAFingerprint = k[3], k[5]
		}
	}
	return a, true
}

// maxLogBacklog bounds what the agent reads of an existing log when it starts.
const maxLogBacklog = 64 << 20

// authLog reads the lines sshd appends to its log file, across rotation (the
// file replaced by a new one) and truncation.
type authLog struct {
	path    string
	f       *os.File
	ino     uint64
	off     int64
	partial []byte
}

// read returns the accepted logins logged since the last read. The first read
// starts at most maxLogBacklog before the end of the file.
func (l *authLog) read() ([]Accepted, error) {
	var out []Accepted
	fi, err := os.Stat(l.path)
	if err != nil {
		return nil, fmt.Errorf("sshd's log: %w", err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if l.f != nil && ino != l.ino {
		out = l.drain(out) // the rest of the rotated file
		l.f.Close()
		l.f = nil
	}
	if l.f == nil {
		f, err := os.Open(l.path)
		if err != nil {
			return out, fmt.Errorf("sshd's log: %w", err)
		}
		l.f, l.off, l.partial = f, 0, nil
		if st, err := f.Stat(); err == nil {
			l.ino = st.Sys().(*syscall.Stat_t).Ino
			if st.Size() > maxLogBacklog {
				l.off = st.Size() - maxLogBacklog
			}
		}
	} else if fi.Size() < l.off {
		l.off, l.partial = 0, nil // truncated
	}
	return l.drain(out), nil
}

// drain reads the open file from l.off to its end.
func (l *authLog) drain(out []Accepted) []Accepted {
	buf := make([]byte, 256<<10)
	for {
		n, err := l.f.ReadAt(buf, l.off)
		l.off += int64(n)
		data := append(l.partial, buf[:n]...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			if a, ok := parseAccepted(string(data[:i])); ok {
				out = append(out, a)
			}
			data = data[i+1:]
		}
		if len(data) > 64<<10 {
			data = nil // no log line is this long
		}
		l.partial = slices.Clone(data)
		if err != nil || n == 0 {
			return out
		}
	}
}

// proc is what the scanner reads of one process.
type proc struct {
	pid, ppid, sid int
	comm           string
	start          uint64
	state          string // "R", "S", "Z" (a zombie: ended, not reaped yet)...
}

// isSSHD reports whether a process is one of sshd's own: "sshd" up to OpenSSH
// 9.7, "sshd-session" (and "sshd-auth") from 9.8 on.
func (p proc) isSSHD() bool {
	return p.comm == "sshd" || p.comm == "sshd-session" || p.comm == "sshd-auth"
}

// procFS reads processes from a /proc file system.
type procFS struct {
	root string // "/proc"
	// ports are the ports of the sshd whose connections the agent judges
	// (Config.SSHPorts); connections to other ports, another sshd's, are left
	// alone. Empty: every sshd's.
	ports []uint16
}

// clockTicks is USER_HZ, the unit of start times in /proc: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// all reads every process. Processes that end while it reads are skipped.
func (fs procFS) all() (map[int]proc, error) {
	entries, err := os.ReadDir(fs.root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", fs.root, err)
	}
	out := make(map[int]proc, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if p, err := fs.stat(pid); err == nil {
			out[pid] = p
		}
	}
	return out, nil
}

// stat parses /proc/PID/stat. The command name may hold spaces and ')', so the
// fields after it are found from the last ')'.
func (fs procFS) stat(pid int) (proc, error) {
	b, err := os.ReadFile(filepath.Join(fs.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return proc{}, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return proc{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): ppid is field 4, session 6, starttime 22.
	if len(f) < 20 {
		return proc{}, errors.New("short stat")
	}
	p := proc{pid: pid, comm: string(b[open+1 : end]), state: f[0]}
	var e1, e2, e3 error
	p.ppid, e1 = strconv.Atoi(f[1])
	p.sid, e2 = strconv.Atoi(f[3])
	p.start, e3 = strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(e1, e2, e3); err != nil {
		return proc{}, fmt.Errorf("malformed stat: %w", err)
	}
	return p, nil
}

// uid returns a process's real user id.
func (fs procFS) uid(pid int) (int, error) {
	f, err := os.Open(filepath.Join(fs.root, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, errors.New("no Uid in status")
}

// title returns a process's command line as ps shows it: sshd overwrites its
// own with "sshd: USER [priv]".
func (fs procFS) title(pid int) string {
	b, err := os.ReadFile(filepath.Join(fs.root, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	return strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
}

// bootTime reads the system's boot time, to turn start times into times.
func (fs procFS) bootTime() time.Time {
	b, err := os.ReadFile(filepath.Join(fs.root, "stat"))
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			if s, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}

// uptime reads the time since boot in clock ticks, the clock of processes'
// start times (both count time suspended, both in the reader's time namespace).
// The kernel writes it as seconds with two decimals, truncated, as start times
// are.
func (fs procFS) uptime() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(fs.root, "uptime"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("empty uptime")
	}
	sec, frac, _ := strings.Cut(f[0], ".")
	s, err := strconv.ParseUint(sec, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed uptime: %w", err)
	}
	frac = (frac + "00")[:2] // hundredths, truncated
	c, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed uptime %q", f[0])
	}
	return s*clockTicks + c, nil
}

// startTime converts a start time in clock ticks since boot.
func startTime(boot time.Time, ticks uint64) time.Time {
	if boot.IsZero() {
		return time.Time{}
	}
	return boot.Add(time.Duration(ticks) * time.Second / clockTicks)
}

// monitorRE matches the title of sshd's privileged monitor of a connection.
var monitorRE = regexp.MustCompile(`^sshd(?:-session)?: (\S+) \[priv\]$`)

// tcpConn is an established TCP connection: this host's end and the peer's.
type tcpConn struct{ local, peer netip.AddrPort }

// tcpPeers maps socket inodes to the established TCP connections they are,
// from /proc/net/tcp and tcp6.
func (fs procFS) tcpPeers() map[uint64]tcpConn {
	out := map[uint64]tcpConn{}
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(fs.root, "net", name))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "01" { // 01: ESTABLISHED
				continue
			}
			local, lok := parseProcAddr(f[1])
			peer, ok := parseProcAddr(f[2])
			ino, err := strconv.ParseUint(f[9], 10, 64)
			if ok && lok && err == nil && ino != 0 {
				out[ino] = tcpConn{local: local, peer: peer}
			}
		}
	}
	return out
}

// parseProcAddr parses "0100007F:D36A" (or a 32-digit IPv6 address): the
// address in host byte order per 32-bit word, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(raw); i += 4 { // each word is little-endian on the architectures Go runs on
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// socketInodes returns the inodes of a process's sockets.
func (fs procFS) socketInodes(pid int) []uint64 {
	dir := filepath.Join(fs.root, strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range entries {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil {
				out = append(out, ino)
			}
		}
	}
	return out
}

// scan returns the SSH connections on which a user has logged in: every sshd
// monitor running as root titled "sshd: USER [priv]" with an sshd child running
// as USER (before the login, that child runs as sshd's unprivileged user), with
// the peer of its TCP socket. The processes it returns come with the map they
// were found in.
func (fs procFS) scan() ([]Session, map[int]proc, error) {
	procs, err := fs.all()
	if err != nil {
		return nil, nil, err
	}
	boot := fs.bootTime()
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var peers map[uint64]tcpConn
	var out []Session
	pids := make([]int, 0, len(procs))
	for pid := range procs {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	for _, pid := range pids {
		p := procs[pid]
		if !p.isSSHD() {
			continue
		}
		m := monitorRE.FindStringSubmatch(fs.title(pid))
		if m == nil {
			continue
		}
		if uid, err := fs.uid(pid); err != nil || uid != 0 {
			continue
		}
		u, err := user.Lookup(m[1])
		if err != nil {
			continue
		}
		uid, err := strconv.Atoi(u.Uid)
		if err != nil {
			continue
		}
		loggedIn := false
		for _, c := range children[pid] {
			if cu, err := fs.uid(c); err == nil && procs[c].isSSHD() && cu == uid {
				loggedIn = true
			}
		}
		if !loggedIn {
			continue
		}
		s := Session{ID: fmt.Sprintf("%d-%d", pid, p.start), PID: pid, UID: uid, User: m[1], start: p.start,
			Started: startTime(boot, p.start)}
		if peers == nil {
			peers = fs.tcpPeers()
		}
		for _, ino := range fs.socketInodes(pid) {
			if c, ok := peers[ino]; ok {
				s.Remote, s.Source, s.Local = c.peer, c.peer.Addr().String(), c.local
				break
			}
		}
		if s.Local.IsValid() && len(fs.ports) > 0 && !slices.Contains(fs.ports, s.Local.Port()) {
			continue // another sshd's connection (ssh_ports): not this agent's to judge
		}
		out = append(out, s)
	}
	return out, procs, nil
}

// end ends a session: it stops, then kills, sshd's monitor of the connection,
// every process below it, and every process in the sessions (setsid) of those
// processes, so nothing can fork its way out in between. Killing the monitor
// closes the connection, forwarded ports included. A session already gone is not
// an error.
func (fs procFS) end(s Session) error {
	procs, err := fs.all()
	if err != nil {
		return err
	}
	if p, ok := procs[s.PID]; !ok || p.start != s.start || !p.isSSHD() {
		return nil // gone, or the PID was reused
	}
	return fs.kill(func(procs map[int]proc) map[int]bool { return fs.sessionProcs(procs, s) })
}

// kill stops the processes pick chooses, looks again for processes born
// meanwhile (stopped processes fork no more), and kills them all.
func (fs procFS) kill(pick func(map[int]proc) map[int]bool) error {
	procs, err := fs.all()
	if err != nil {
		return err
	}
	targets := pick(procs)
	self := os.Getpid()
	signal := func(pids map[int]bool, sig syscall.Signal) error {
		var errs []error
		for pid := range pids {
			if pid <= 1 || pid == self {
				continue
			}
			if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("signal %d: %w", pid, err))
			}
		}
		return errors.Join(errs...)
	}
	if err := signal(targets, syscall.SIGSTOP); err != nil {
		return err
	}
	if procs, err = fs.all(); err == nil {
		for pid := range pick(procs) {
			targets[pid] = true
		}
	}
	return signal(targets, syscall.SIGKILL)
}

// sessionProcs returns the processes of s: its monitor and everything below it,
// and every member of the sessions led by processes below it.
func (fs procFS) sessionProcs(procs map[int]proc, s Session) map[int]bool {
	out := map[int]bool{}
	if p, ok := procs[s.PID]; ok && p.start == s.start {
		out = subtree(procs, s.PID)
	}
	sids := map[int]bool{}
	for pid := range out {
		if p := procs[pid]; p.sid == pid && pid != s.PID { // a session leader below sshd
			sids[pid] = true
		}
	}
	for pid, p := range procs {
		if sids[p.sid] {
			out[pid] = true
		}
	}
	return out
}

// subtree returns pid and every process below it.
func subtree(procs map[int]proc, pid int) map[int]bool {
	children := map[int][]int{}
	for c, p := range procs {
		children[p.ppid] = append(children[p.ppid], c)
	}
	out := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if out[pid] {
			return
		}
		out[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
	}
	walk(pid)
	return out
}

// leftovers returns the processes of uid started at or after since that run
// outside sshd: what a login left behind (nohup, setsid, daemons). Processes
// below sshd's own (root) processes, and the members of sessions led by them,
// belong to connections, which are judged on their own. Start times are known
// to a clock tick, the boot time to a second, so since is taken a second early.
func (fs procFS) leftovers(procs map[int]proc, uid int, since time.Time) map[int]bool {
	boot := fs.bootTime()
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	kept := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if kept[pid] {
			return
		}
		kept[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for pid, p := range procs {
		if p.isSSHD() && !kept[pid] {
			if u, err := fs.uid(pid); err == nil && u == 0 { // a user may name a process "sshd", not run it as root
				walk(pid)
			}
		}
	}
	sids := map[int]bool{}
	for pid := range kept {
		if procs[pid].sid == pid {
			sids[pid] = true
		}
	}
	out := map[int]bool{}
	for pid, p := range procs {
		if kept[pid] || sids[p.sid] || pid <= 1 || p.state == "Z" || p.state == "X" {
			continue
		}
		if st := startTime(boot, p.start); !boot.IsZero() && st.Before(since.Add(-time.Second)) {
			continue
		}
		if u, err := fs.uid(pid); err == nil && u == uid {
			out[pid] = true
		}
	}
	return out
}
