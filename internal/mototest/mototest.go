// Package mototest runs moto_server, the AWS emulator, for tests of ajar's AWS
// providers, and puts a fault-injecting proxy in front of it for what moto does not
// emulate (an assignment stuck IN_PROGRESS, SSM sessions, outages, 5xx).
//
// moto is a real component here, never a stand-in to skip: when moto_server is
// missing the test fails, in CI and everywhere else.
package mototest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ajar-dev/ajar/internal/awsx"
)

// AccountID is the account moto answers as.
const AccountID = "123456789012"

// Region is the region tests use.
const Region = "us-east-1"

// Server is a running moto_server on a loopback port.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

// binary finds moto_server: $MOTO_SERVER, then $PATH, then the pyenv shim these
// machines install it as.
func binary() (string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return p, nil
	}
	const shim = "/root/.pyenv/shims/moto_server"
	if _, err := os.Stat(shim); err == nil {
		return shim, nil
	}
	return "", fmt.Errorf("moto_server not found in $PATH or %s (set MOTO_SERVER; install with pip install 'moto[server]')", shim)
}

// start runs a moto_server on a free loopback port and waits until it answers.
func start() (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port can be taken between the probe and moto's bind
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
		s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		// Its own process group, and killed with the test binary even if the
		// binary dies without running its cleanups.
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		go func() { s.cmd.Wait(); close(s.done) }()
		if lastErr = s.wait(30 * time.Second); lastErr == nil {
			return s, nil
		}
		s.Stop()
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// wait polls moto's own API until it answers.
func (s *Server) wait(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(s.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("moto_server exited before answering on %s", s.URL)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("moto_server did not answer on %s within %s", s.URL, timeout)
		}
	}
}

// Stop kills the server's process group and waits for it.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-s.done
}

// Start starts a moto_server for tb alone, stopped when tb ends. Prefer Shared:
// moto takes a moment to start, and fresh resources per test isolate tests as well.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		tb.Fatalf("moto_server is required for this test: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

var shared struct {
	mu sync.Mutex
	s  *Server
}

// Shared returns the moto_server shared by the tests of this package, starting it
// on first use. Call Main from TestMain to stop it when the tests end (it dies with
// the test binary anyway).
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil {
		s, err := start()
		if err != nil {
			tb.Fatalf("moto_server is required for this test: %v", err)
		}
		shared.s = s
	}
	return shared.s
}

// Main runs the package's tests, then stops the shared server: use it as
// os.Exit(mototest.Main(m)) in TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	if shared.s != nil {
		shared.s.Stop()
		shared.s = nil
	}
	shared.mu.Unlock()
	return code
}

// Loader returns an awsx.Loader that sends every call to s with moto's test
// credentials.
func (s *Server) Loader() awsx.Loader { return loader(s.URL) }

// Config returns an SDK config for s in Region (for tests to set up resources).
func (s *Server) Config(tb testing.TB) aws.Config {
	tb.Helper()
	return config(tb, s.URL)
}

func loader(url string) awsx.Loader {
	// Two attempts: the SDK retries once, ajar's scheduler does the rest.
	return awsx.StaticLoader(url, "testing", "testing", 2)
}

func config(tb testing.TB, url string) aws.Config {
	tb.Helper()
	cfg, err := loader(url)(context.Background(), Region)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}
