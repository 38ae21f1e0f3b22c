package dbtest

import (
	"bytes"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver the mysql-user provider uses
)

// MariaDB is a running throw-away MariaDB server: a data directory made by
// mariadb-install-db in a temporary directory, the server on a free loopback
// port, and everything removed when the test ends. root has no password.
type MariaDB struct {
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
}

// mariadbBin finds a MariaDB program on PATH or in /usr/sbin and /usr/bin.
func mariadbBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(d, name); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("dbtest: %s not found: MariaDB is required (apt-get install mariadb-server mariadb-client; scripts/test does it)", name)
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

// StartMariaDB starts a server for one test and stops it when the test ends.
// A missing MariaDB fails the test, never skips it.
func StartMariaDB(tb testing.TB) *MariaDB {
	tb.Helper()
	install, err := mariadbBin("mariadb-install-db")
	if err != nil {
		tb.Fatal(err)
	}
	server, err := mariadbBin("mariadbd")
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ajar-mariadb-")
	if err != nil {
		tb.Fatal(err)
	}
	m := &MariaDB{dir: dir, exited: make(chan struct{})}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("mariadb log:\n%s", m.Logs())
		}
		m.stop()
		os.RemoveAll(dir)
	})
	data := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--auth-root-authentication-method=normal", "--datadir=" + data, "--skip-test-db"}
	user := []string{}
	if os.Geteuid() == 0 {
		user = []string{"--user=root"} // the server refuses root unless told
	}
	if out, err := exec.Command(install, append(args, user...)...).CombinedOutput(); err != nil {
		tb.Fatalf("dbtest: mariadb-install-db: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	m.cmd = exec.Command(server, append([]string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(m.port),
		"--bind-address=127.0.0.1", "--socket=" + filepath.Join(dir, "mysqld.sock"), "--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M",
		"--performance-schema=OFF", "--max-connections=200", "--event-scheduler=ON"}, user...)...)
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.cmd.Stdout, m.cmd.Stderr = (*mariaLog)(m), (*mariaLog)(m)
	if err := m.cmd.Start(); err != nil {
		tb.Fatalf("dbtest: start mariadbd: %v", err)
	}
	go func() {
		m.cmd.Wait()
		close(m.exited)
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		db, err := sql.Open("mysql", m.RootDSN(""))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return m
		}
		select {
		case <-m.exited:
			tb.Fatalf("dbtest: mariadbd exited at start:\n%s", m.Logs())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dbtest: mariadbd did not accept connections in 90s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type mariaLog MariaDB

func (w *mariaLog) Write(p []byte) (int, error) {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	if w.log.Len() < 1<<20 {
		w.log.Write(p)
	}
	return len(p), nil
}

// Logs returns what the server printed.
func (m *MariaDB) Logs() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.log.String()
}

func (m *MariaDB) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Signal(syscall.SIGKILL)
		<-m.exited
	}
}

// Port is the server's TCP port on 127.0.0.1.
func (m *MariaDB) Port() int { return m.port }

// RootDSN is a go-sql-driver DSN for root over TCP, for database db ("" for none).
func (m *MariaDB) RootDSN(db string) string {
	return m.DSN("root", "", db)
}

// DSN is a go-sql-driver DSN for user over TCP.
func (m *MariaDB) DSN(user, password, db string) string {
	cred := user
	if password != "" {
		cred += ":" + password
	}
	return fmt.Sprintf("%s@tcp(127.0.0.1:%d)/%s?multiStatements=true&timeout=30s", cred, m.port, db)
}

// Exec runs statements as root (several, separated by ;).
func (m *MariaDB) Exec(tb testing.TB, stmts string) {
	tb.Helper()
	db, err := sql.Open("mysql", m.RootDSN(""))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmts); err != nil {
		tb.Fatalf("%s: %v", stmts, err)
	}
}
