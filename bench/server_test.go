package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ajar-dev/ajar/policy"
)

// build compiles the package pkg ("./cmd/ajar") of the module this command
// runs in, without the race detector, into dir, and returns the binary's path.
func build(ctx context.Context, dir, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run ajarbench inside the ajar module (go env GOMOD: %v)", err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return bin, nil
}

// benchUsers is how many requesters share the load: the demo policy's
// engineers, each with its own API token, every request from the next one in
// turn. Many people each making a few requests is the load ajar is built for;
// the per-user limits are counted on every request as always (raised to
// 1,000, so that a run at the target rate does not reach them).
const benchUsers = 2000

// benchPolicy writes the demo policy (what ajar serve --dev runs) with the
// given storage section, benchUsers more engineers and the per-user limits
// raised.
func benchPolicy(dir, storage string) (string, error) {
	path := filepath.Join(dir, "policy.yaml")
	var users strings.Builder
	users.WriteString("users:\n")
	for i := range benchUsers {
		fmt.Fprintf(&users, "  - {id: bench%04d@example.com, groups: [engineers]}\n", i)
	}
	demo := strings.Replace(string(policy.Demo()), "users:\n", users.String(), 1)
	yaml := storage + "\n" + demo + "\nlimits: {open_requests_per_user: 1000, requests_per_minute_per_user: 1000}\n"
	return path, os.WriteFile(path, []byte(yaml), 0o600)
}

// server is a running `ajar serve --dev`.
type server struct {
	cmd    *exec.Cmd
	url    string
	token  string   // alice's dev token
	tokens []string // the bench users' dev tokens (benchPolicy)
	exited chan struct{}
	mu     sync.Mutex
	tail   []string // the last lines of its log
}

// startServer runs `ajar serve --dev` with config and its own data directory
// and waits until it serves and has written its dev tokens.
func startServer(ctx context.Context, bin, config, data string, env ...string) (*server, error) {
	cmd := exec.Command(bin, "serve", "--config", config, "--dev", "--unsafe-dev-config", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(append(os.Environ(), "AJAR_DATABASE_URL=", "AJAR_TEST_CLOCK_OFFSET="), env...)
	s, err := startProcess(ctx, cmd, "ajar serving on ")
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if s.token = devToken(filepath.Join(data, "dev-tokens.env"), "alice"); s.token != "" {
			s.tokens = benchTokens(filepath.Join(data, "dev-tokens.env"))
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("no dev token in %s:\n%s", data, s.logs())
		}
	}
}

// startProcess starts cmd and waits until it logs a line that starts with
// prefix followed by its URL.
func startProcess(ctx context.Context, cmd *exec.Cmd, prefix string) (*server, error) {
	s := &server{cmd: cmd, exited: make(chan struct{})}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			if s.tail = append(s.tail, line); len(s.tail) > 40 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				u, _, _ := strings.Cut(rest, " ")
				select {
				case urlc <- u:
				default:
				}
			}
		}
		s.cmd.Wait()
		close(s.exited)
	}()
	name := filepath.Base(cmd.Path)
	select {
	case s.url = <-urlc:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("%s exited before serving:\n%s", name, s.logs())
	case <-time.After(2 * time.Minute):
		s.stop()
		return nil, fmt.Errorf("%s did not start in 2 minutes:\n%s", name, s.logs())
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// stop ends the server (SIGTERM, then SIGKILL after 30 s) and waits for it.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// devToken reads AJAR_TOKEN_<USER> from a dev-tokens.env file, or "".
func devToken(path, user string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "AJAR_TOKEN_"+strings.ToUpper(user)+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// benchTokens reads the bench users' tokens (AJAR_TOKEN_BENCHNNNN) from a
// dev-tokens.env file.
func benchTokens(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if name, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(name, "AJAR_TOKEN_BENCH") {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the CPU time (user + system, all threads, live and ended) the
// process pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("cannot parse /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("cannot parse /proc/PID/stat")
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// ioWritten returns the bytes process pid has passed to write system calls
// (wchar in /proc/PID/io): for the server, its WAL and log writes.
func ioWritten(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "wchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no wchar in /proc/PID/io")
}
