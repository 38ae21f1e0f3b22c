package node

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Session is one SSH session on this host: the sshd process that serves it
// and the processes sshd started for it, with what sshd's ExposeAuthInfo says
// about how it logged in.
//
// OpenSSH runs, per connection, a privileged monitor ("sshd: USER [priv]"), an
// unprivileged process running as the user ("sshd: USER@pts/0") and, under the
// latter, the user's shell or command in its own session (setsid). With
// ExposeAuthInfo, sshd writes the key or certificate the user logged in with to
// a file that only the user (and root) can read, and names it in the
// SSH_USER_AUTH variable of the shell's environment.
type Session struct {
	// ID names the session while it lasts: the serving sshd's PID and start time.
	ID       string
	PID      int   // the sshd process serving the session (running as the user)
	Children []int // the processes sshd started for it (shells, commands)
	UID      int
	User     string
	Source   string // the client's address, from SSH_CONNECTION
	Started  time.Time
	// KeyLine is the login key or certificate as "TYPE BASE64", and Key its
	// parsed form; both empty when the SSH_USER_AUTH file cannot be read
	// (AuthErr says why).
	KeyLine string
	Key     ssh.PublicKey
	AuthErr string

	start    uint64 // the sshd process's start time in clock ticks, against PID reuse
	authFile string // the SSH_USER_AUTH file
}

// proc is what the scanner reads of one process.
type proc struct {
	pid, ppid, sid int
	comm           string
	start          uint64
}

// isSSHD reports whether a process is one of sshd's own: "sshd" up to OpenSSH
// 9.7, "sshd-session" (and "sshd-auth") from 9.8 on.
func (p proc) isSSHD() bool {
	return p.comm == "sshd" || p.comm == "sshd-session" || p.comm == "sshd-auth"
}

// procFS reads processes from a /proc file system.
type procFS struct {
	root string // "/proc"
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
	p := proc{pid: pid, comm: string(b[open+1 : end])}
	var e1, e2, e3 error
	p.ppid, e1 = strconv.Atoi(f[1])
	p.sid, e2 = strconv.Atoi(f[3])
	p.start, e3 = strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(e1, e2, e3); err != nil {
		return proc{}, fmt.Errorf("malformed stat: %w", err)
	}
	return p, nil
}

// environ returns the variables named in want from a process's initial
// environment.
func (fs procFS) environ(pid int, want ...string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(fs.root, strconv.Itoa(pid), "environ"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if ok && slices.Contains(want, string(k)) {
			out[string(k)] = string(v)
		}
	}
	return out, nil
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

// maxAuthFile bounds what is read of an SSH_USER_AUTH file.
const maxAuthFile = 64 << 10

// scan returns the SSH sessions open now. A process counts as a session's when
// its parent is an sshd process and it is not one itself; its environment must
// name an SSH_USER_AUTH file, else sshd did not expose the session (ExposeAuthInfo
// is off) and it is not listed.
func (fs procFS) scan() ([]Session, error) {
	procs, err := fs.all()
	if err != nil {
		return nil, err
	}
	boot := fs.bootTime()
	byID := map[string]*Session{}
	var order []string
	pids := make([]int, 0, len(procs))
	for pid := range procs {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	for _, pid := range pids {
		p := procs[pid]
		parent, ok := procs[p.ppid]
		if !ok || p.isSSHD() || !parent.isSSHD() {
			continue
		}
		env, err := fs.environ(pid, "SSH_USER_AUTH", "SSH_CONNECTION")
		if err != nil || env["SSH_USER_AUTH"] == "" {
			continue
		}
		id := fmt.Sprintf("%d-%d", parent.pid, parent.start)
		if s, ok := byID[id]; ok {
			s.Children = append(s.Children, pid)
			continue
		}
		s := &Session{ID: id, PID: parent.pid, start: parent.start, Children: []int{pid}}
		if !boot.IsZero() {
			s.Started = boot.Add(time.Duration(parent.start) * time.Second / clockTicks)
		}
		if f := strings.Fields(env["SSH_CONNECTION"]); len(f) > 0 {
			if a, err := netip.ParseAddr(f[0]); err == nil {
				s.Source = a.Unmap().String()
			}
		}
		uid, err := fs.uid(pid)
		if err != nil {
			continue // it ended
		}
		s.UID = uid
		s.User = strconv.Itoa(uid)
		if u, err := user.LookupId(s.User); err == nil {
			s.User = u.Username
		}
		s.authFile = env["SSH_USER_AUTH"]
		s.KeyLine, s.Key, err = readAuthInfo(s.authFile, uid)
		if err != nil {
			s.AuthErr = err.Error()
		}
		byID[id] = s
		order = append(order, id)
	}
	out := make([]Session, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out, nil
}

// readAuthInfo reads the login key from an SSH_USER_AUTH file: the first
// "publickey TYPE BASE64" line. The path comes from a user's environment, so it
// is opened without following links and must be a regular file owned by that
// user, as sshd creates it: pointing it at another file gets nothing.
func readAuthInfo(path string, uid int) (string, ssh.PublicKey, error) {
	if !filepath.IsAbs(path) {
		return "", nil, fmt.Errorf("SSH_USER_AUTH %q is not an absolute path", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open SSH_USER_AUTH file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || !ok || int(st.Uid) != uid {
		return "", nil, fmt.Errorf("SSH_USER_AUTH file %s is not a regular file owned by the session's user", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAuthFile))
	if err != nil {
		return "", nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "publickey" {
			continue
		}
		keyLine := fields[1] + " " + fields[2]
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(keyLine))
		if err != nil {
			return "", nil, fmt.Errorf("SSH_USER_AUTH file %s: unreadable key: %w", path, err)
		}
		return keyLine, key, nil
	}
	return "", nil, nil // logged in without a key (password, GSSAPI...)
}

// end ends a session: it stops, then kills, the sshd process serving it, every
// process below it, and every process in the sessions (setsid) of the processes
// sshd started, so nothing can fork its way out in between. sshd's privileged
// monitor then closes the connection. A session already gone is not an error.
func (fs procFS) end(s Session) error {
	procs, err := fs.all()
	if err != nil {
		return err
	}
	if p, ok := procs[s.PID]; !ok || p.start != s.start || !p.isSSHD() {
		return nil // gone, or the PID was reused
	}
	targets := fs.sessionProcs(procs, s)
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
	// Stopped processes fork no more: look once more for children born meanwhile.
	if procs, err = fs.all(); err == nil {
		for pid := range fs.sessionProcs(procs, s) {
			targets[pid] = true
		}
	}
	if err := signal(targets, syscall.SIGKILL); err != nil {
		return err
	}
	removeAuthFile(s)
	return nil
}

// removeAuthFile removes the SSH_USER_AUTH file of an ended session, which sshd,
// killed, cannot clean up. The path comes from the user's environment, so only a
// file where sshd puts them (/tmp/sshauth.*, in a root-owned sticky directory
// whose entries the user cannot redirect) that is still the user's regular file
// is removed.
func removeAuthFile(s Session) {
	if filepath.Dir(s.authFile) != "/tmp" || !strings.HasPrefix(filepath.Base(s.authFile), "sshauth.") {
		return
	}
	fi, err := os.Lstat(s.authFile)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == s.UID {
		os.Remove(s.authFile)
	}
}

// sessionProcs returns the processes of s: its sshd process and everything below
// it, and every member of the sessions its children lead.
func (fs procFS) sessionProcs(procs map[int]proc, s Session) map[int]bool {
	out := map[int]bool{}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
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
	if p, ok := procs[s.PID]; ok && p.start == s.start {
		walk(s.PID)
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
