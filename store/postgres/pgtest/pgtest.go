// Package pgtest runs throw-away PostgreSQL 15 clusters for tests and benchmarks:
// initdb into a new temporary directory (as the user postgres when running as
// root, since the server refuses to run as root), the server on a free loopback
// port with its socket in that directory, and everything removed afterwards.
//
// A test package that uses NewDatabase calls Main from its TestMain; the package's
// tests then share one cluster, started on first use, and each gets a fresh
// database in it, so tests stay independent and cheap. Start gives a cluster of
// its own (an end-to-end test, a benchmark).
//
// A missing PostgreSQL fails the test, never skips it (scripts/test installs
// postgresql-15 with apt-get when it is missing).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvBinDir names the environment variable that overrides DefaultBinDir.
const EnvBinDir = "AJAR_PG_BINDIR"

// DefaultBinDir holds initdb and postgres on Debian with postgresql-15 installed.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Options configure Start.
type Options struct {
	// Durable keeps fsync and synchronous commit on, as in production (for
	// benchmarks). Tests leave it off: nothing in them survives the cluster.
	Durable bool
	// Settings are extra server settings (name to value), e.g. max_connections.
	Settings map[string]string
}

// Cluster is a running PostgreSQL server in a temporary directory.
type Cluster struct {
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
	dbs    atomic.Int64
}

// BinDir returns the directory holding initdb and postgres.
func BinDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	return DefaultBinDir
}

// Start creates and starts a new cluster. Stop it with Stop.
func Start(opts Options) (_ *Cluster, err error) {
	bin := BinDir()
	initdb, postgres := filepath.Join(bin, "initdb"), filepath.Join(bin, "postgres")
	for _, p := range []string{initdb, postgres} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("pgtest: PostgreSQL 15 is required (apt-get install postgresql-15; scripts/test does it, or set %s): %w", EnvBinDir, err)
		}
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ajar-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = serverEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}

	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": dir,
		"max_connections":         "300",
		"log_min_messages":        "warning",
	}
	if !opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	// The port is free when picked but may be taken before the server binds it;
	// try a few.
	for attempt := 0; ; attempt++ {
		c, err := startServer(postgres, dir, data, cred, settings)
		if err == nil {
			return c, nil
		}
		if attempt == 4 {
			return nil, err
		}
	}
}

func startServer(postgres, dir, data string, cred *syscall.Credential, settings map[string]string) (*Cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, port: port, exited: make(chan struct{})}
	args := []string{"-D", data, "-p", strconv.Itoa(port)}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	c.cmd = exec.Command(postgres, args...)
	// If the test binary dies without cleaning up, the server shuts down at once
	// (SIGQUIT: immediate shutdown) instead of living on.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	c.cmd.Env = serverEnv()
	c.cmd.Stdout = (*logWriter)(c)
	c.cmd.Stderr = (*logWriter)(c)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("pgtest: postgres exited at start:\n%s", c.Logs())
		default:
		}
		if time.Now().After(deadline) {
			c.kill()
			return nil, fmt.Errorf("pgtest: postgres did not accept connections in 60s: %v\n%s", err, c.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverUser returns the credential to run initdb and postgres with: the user
// postgres when running as root, nil (this process's user) otherwise.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the user postgres to run the server as (the postgresql-15 package creates it): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// serverEnv is a minimal environment for the server: nothing of the caller's
// PG* variables, a C locale.
func serverEnv() []string {
	env := []string{"LC_ALL=C", "LANG=C", "TZ=UTC"}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type logWriter Cluster

func (w *logWriter) Write(p []byte) (int, error) {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	if w.log.Len() < 1<<20 {
		w.log.Write(p)
	}
	return len(p), nil
}

// Logs returns what the server printed (its first megabyte).
func (c *Cluster) Logs() string {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.log.String()
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DSN returns a URL for database db as the superuser postgres, over TCP.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDatabase creates a new, empty database and returns its DSN. Its name is
// prefix followed by a number unique in this cluster.
func (c *Cluster) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("%s_%d", sanitize(prefix), c.dbs.Add(1))
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return c.DSN(name), nil
}

// sanitize turns a test name into a short database name prefix.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	if b.Len() == 0 {
		return "db"
	}
	return b.String()
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10 s) and removes
// its directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	select {
	case <-c.exited:
	default:
		c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			c.kill()
		}
	}
	return os.RemoveAll(c.dir)
}

func (c *Cluster) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// StartT starts a cluster for one test and stops it when the test ends.
func StartT(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("postgres log:\n%s", c.Logs())
		}
		if err := c.Stop(); err != nil {
			tb.Errorf("pgtest: stop: %v", err)
		}
	})
	return c
}

// The cluster shared by a test package (see Main and NewDatabase).
var shared struct {
	mu      sync.Mutex
	inMain  bool
	started bool
	c       *Cluster
	err     error
}

// Main runs the package's tests and then stops the shared cluster, if a test
// started it. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the package's shared cluster, starting it on first use. The
// package's TestMain must call Main, which stops it.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		tb.Fatal("pgtest: call pgtest.Main from TestMain to use the shared cluster (or use StartT)")
	}
	if !shared.started {
		shared.started = true
		shared.c, shared.err = Start(Options{})
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.c
}

// NewDatabase creates a fresh, empty database on the shared cluster and returns
// its DSN. The database is dropped when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := c.CreateDatabase(ctx, tb.Name())
	if err != nil {
		tb.Fatal(err)
	}
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return dsn
}
