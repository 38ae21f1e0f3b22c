// Package e2e drives the real ajar binary: a server on a loopback port and the CLI
// against it, as a user would.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// bin is the ajar binary built once for all tests.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "ajar-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "ajar")
	build := exec.Command("go", "build", "-race", "-o", bin, "../cmd/ajar")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ajar:", err)
		os.Exit(1)
	}
	noRaceExitSleep()
	defaultParallel()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// noRaceExitSleep makes every process the tests start inherit
// GORACE=atexit_sleep_ms=0 (unless GORACE sets it already). The ajar binary is
// built with -race, whose runtime otherwise sleeps a second before every exit:
// a second added to each of the hundreds of CLI runs (each waitState poll is
// one) and to each graceful server stop. Races are still reported as they
// happen, and fail the run: a CLI or server that saw one exits 66.
func noRaceExitSleep() {
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
}

// defaultParallel sets -test.parallel high, unless it was given (go test's
// own default is GOMAXPROCS, 2 in CI): how many tests run at once is
// the scheduler's business (see parallel), which knows which ones load the
// CPU and which ones wait out long windows and should start first.
func defaultParallel() {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		flag.Set("test.parallel", strconv.Itoa(max(256, runtime.GOMAXPROCS(0))))
	}
}

// cost is what a test takes of the scheduler's slotUnits while it runs, and
// its turn: tests with a higher first go before those waiting with a lower one.
type cost struct {
	units int
	first int
}

var (
	// costLight is most tests: a server or two that mostly waits.
	costLight = cost{units: 1}
	// costLong is a light test that waits out windows of tens of seconds
	// (expiries, the host agent's rounds): started first, it overlaps them
	// with the others instead of trailing behind them.
	costLong = cost{units: 1, first: 1}
	// costHeavy starts database servers or several replicas.
	costHeavy = cost{units: 2}
	// costHeaviest loads replicas with thousands of requests and freezes one
	// while it holds claimed work, which more load beside it can make it miss:
	// the longest test, it goes before all others and runs alone.
	costHeaviest = cost{units: slotUnits, first: 2}
)

// slotUnits is how much runs at once: the tests mostly wait (on expiries,
// schedulers, sshd, the IdP), so more of them than the machine's cores overlap
// their waits. More than this stretches every test's waits on two loaded cores
// and starves the servers under test: at 8 at a time the host agent once could
// not tie a session to its login (it looks one check back in sshd's log).
const slotUnits = 4

// parallel marks t parallel and waits until the scheduler has room for c, which
// it holds until t ends (after t's other cleanups: its servers are gone by
// then). Call it first in a test, instead of t.Parallel. The test's elapsed
// time includes the wait, which it logs.
func parallel(t *testing.T, c cost) {
	t.Helper()
	t.Parallel()
	queued := time.Now()
	sched.acquire(c)
	t.Logf("started after %v in the queue", time.Since(queued).Round(time.Millisecond))
	t.Cleanup(func() { sched.release(c) })
}

// sched hands out slotUnits to the tests by their cost's first, and in the
// order they asked among equals. A test whose units are not
// free waits, and so do all behind it: a heavy test is not starved by light
// ones.
var sched = &scheduler{free: slotUnits}

type scheduler struct {
	mu      sync.Mutex
	free    int
	waiting []*schedWaiter
}

type schedWaiter struct {
	c     cost
	ready chan struct{}
}

func (s *scheduler) acquire(c cost) {
	c.units = min(c.units, slotUnits)
	w := &schedWaiter{c: c, ready: make(chan struct{})}
	s.mu.Lock()
	i := slices.IndexFunc(s.waiting, func(o *schedWaiter) bool { return o.c.first < c.first })
	if i < 0 {
		i = len(s.waiting)
	}
	s.waiting = slices.Insert(s.waiting, i, w)
	s.grant()
	s.mu.Unlock()
	<-w.ready
}

func (s *scheduler) release(c cost) {
	s.mu.Lock()
	s.free += min(c.units, slotUnits)
	s.grant()
	s.mu.Unlock()
}

// grant starts waiters in order while their units are free; s.mu is held.
func (s *scheduler) grant() {
	for len(s.waiting) > 0 && s.waiting[0].c.units <= s.free {
		w := s.waiting[0]
		s.waiting = s.waiting[1:]
		s.free -= w.c.units
		close(w.ready)
	}
}

// requireTool fails (never skips) when a tool the tests need is missing.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for this test (scripts/test installs it): %v", name, err)
	}
	return p
}

// server is a running "ajar serve".
type server struct {
	t      testing.TB
	cmd    *exec.Cmd
	URL    string
	Data   string
	tokens map[string]string
	logMu  sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
}

// startServer runs ajar serve on a free loopback port with data in dir and waits
// until it serves. args are extra flags (e.g. --config FILE).
func startServer(t testing.TB, dir string, args ...string) *server {
	t.Helper()
	return startServerEnv(t, dir, nil, args...)
}

// startServerEnv is startServer with env added to the server's environment
// (never to the test process's: the tests run in parallel).
func startServerEnv(t testing.TB, dir string, env []string, args ...string) *server {
	t.Helper()
	return launch(t, dir, serveOpts{
		bin:     bin,
		args:    append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, args...),
		env:     append(append(os.Environ(), "AJAR_MASTER_KEY="), env...),
		name:    "ajar serve",
		timeout: 30 * time.Second,
		cleanup: func(s *server) {
			s.kill()
			if t.Failed() {
				t.Logf("server log:\n%s", s.logs())
			}
		},
	})
}

// serveOpts says how launch runs "ajar serve".
type serveOpts struct {
	bin     string        // the ajar binary
	args    []string      // its arguments, "serve" first
	env     []string      // its whole environment
	name    string        // what failure messages call it
	timeout time.Duration // how long it may take to serve, in whole seconds
	cleanup func(*server) // run when the test ends, even if it failed to start
}

// launch runs ajar serve as o says, with data in dir (which must hold the dev
// tokens, i.e. --data dir), and waits until it serves and has written the tokens.
func launch(t testing.TB, dir string, o serveOpts) *server {
	t.Helper()
	s := &server{t: t, Data: dir, exited: make(chan struct{})}
	s.cmd = exec.Command(o.bin, devArgs(o.args)...)
	s.cmd.Env = o.env
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.log.WriteString(line + "\n")
			s.logMu.Unlock()
			if rest, ok := strings.CutPrefix(line, "ajar serving on "); ok {
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
	t.Cleanup(func() { o.cleanup(s) })
	select {
	case s.URL = <-urlc:
	case <-s.exited:
		t.Fatalf("%s exited before serving:\n%s", o.name, s.logs())
	case <-time.After(o.timeout):
		t.Fatalf("%s did not start in %ds:\n%s", o.name, int(o.timeout/time.Second), s.logs())
	}
	// The dev tokens are written after the listener opens.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.tokens = readTokens(filepath.Join(dir, "dev-tokens.env")); s.tokens != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dev tokens in %s:\n%s", dir, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// devArgs adds --unsafe-dev-config to serve arguments holding both --dev and
// --config: the tests run dev mode on their own policies knowingly.
func devArgs(args []string) []string {
	if slices.Contains(args, "--dev") && slices.Contains(args, "--config") && !slices.Contains(args, "--unsafe-dev-config") {
		return append(slices.Clone(args), "--unsafe-dev-config")
	}
	return args
}

func (s *server) logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// kill sends SIGKILL (no shutdown at all) and waits for the process to end.
func (s *server) kill() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-s.exited
}

// stop asks for a graceful shutdown and waits for it.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.t.Errorf("server did not stop on SIGTERM")
		s.kill()
	}
}

func readTokens(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "AJAR_TOKEN_") {
			out[strings.ToLower(strings.TrimPrefix(k, "AJAR_TOKEN_"))] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// result is one CLI run.
type result struct {
	Stdout, Stderr string
	Code           int
}

// ajar runs the CLI as user ("alice", "bob", "admin", or "" for no token).
func (s *server) ajar(t testing.TB, user string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "AJAR_SERVER="+s.URL, "AJAR_TOKEN="+s.tokens[user])
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ajar %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs the CLI and fails the test unless it exits 0.
func (s *server) ok(t testing.TB, user string, args ...string) string {
	t.Helper()
	r := s.ajar(t, user, args...)
	if r.Code != 0 {
		t.Fatalf("ajar %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// request runs a CLI command that prints one request with -o json.
func (s *server) request(t testing.TB, user string, args ...string) *ajar.Request {
	t.Helper()
	out := s.ok(t, user, append(args, "-o", "json")...)
	var r ajar.Request
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("ajar %v: output is not a request: %v\n%s", args, err, out)
	}
	return &r
}

// waitState polls a request until it reaches want, failing after timeout.
func (s *server) waitState(t testing.TB, user, id string, want ajar.State, timeout time.Duration) *ajar.Request {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := s.request(t, user, "show", id)
		if r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s is %s after %s, want %s", id, r.State, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpDo calls the API directly as user and returns the status and body.
func (s *server) httpDo(t testing.TB, user, method, path string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+s.tokens[user])
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// auditEvents returns the whole audit log as admin.
func (s *server) auditEvents(t testing.TB) []ajar.AuditEvent {
	t.Helper()
	var evs []ajar.AuditEvent
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "audit", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	return evs
}
