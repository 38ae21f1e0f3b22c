package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/credentials"
)

// dbFake is the fake core with database logins; r1 is alice's active request
// on prod-db.
type dbFake struct{ *fakeCore }

func newDBFake() dbFake {
	f := dbFake{newFakeCore()}
	exp := time.Now().Add(time.Hour)
	f.requests["r1"].Target, f.requests["r1"].ExpiresAt = "prod-db", &exp
	return f
}

func (c dbFake) IssueDBLogin(ctx context.Context, u ajar.User, id string) (*credentials.DBLoginOutput, error) {
	if err := c.called("IssueDBLogin " + id); err != nil {
		return nil, err
	}
	if id != "r1" {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no request %s", id)
	}
	return &credentials.DBLoginOutput{RequestID: id, Target: "prod-db", DBLogin: ajar.DBLogin{
		User: "ajar_r1", Password: "pa#ss\"word", Host: "127.0.0.1", Port: 5432, Database: "app",
		DSN: "postgres://ajar_r1@127.0.0.1:5432/app", ExpiresAt: testTime,
	}}, nil
}

func TestDBCredentials(t *testing.T) {
	url := startServer(t, newDBFake())
	r := runCLI(t, url, "db-credentials", "r1", "-o", "json")
	r.want(t, 0)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"user", "password", "host", "port", "database", "dsn", "expires_at"} {
		if _, ok := got[k]; !ok {
			t.Errorf("-o json lacks %s: %s", k, r.stdout)
		}
	}
	r = runCLI(t, url, "db-credentials", "r1")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "password: pa#ss\"word\n") || !strings.Contains(r.stdout, "dsn:      postgres://ajar_r1@127.0.0.1:5432/app") {
		t.Errorf("table output:\n%s", r.stdout)
	}
	runCLI(t, url, "db-credentials", "nope").want(t, 1)
}

// fakeClient writes a client stand-in that records its arguments, the
// environment variables named, and the option file it was given (with its mode).
func fakeClient(t *testing.T, name string) (path, record string) {
	t.Helper()
	dir := t.TempDir()
	path, record = filepath.Join(dir, name), filepath.Join(dir, "record")
	script := `#!/bin/sh
echo "args $@" > ` + record + `
echo "env PGPASSWORD=$PGPASSWORD PGUSER=$PGUSER PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE MYSQL_PWD=$MYSQL_PWD" >> ` + record + `
case "$1" in --defaults-extra-file=*) f="${1#--defaults-extra-file=}"; stat -c 'mode %a' "$f" >> ` + record + `; cat "$f" >> ` + record + `;; esac
exit 3
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, record
}

func TestPsqlCommand(t *testing.T) {
	t.Setenv("PGPASSWORD", "stale")
	t.Setenv("MYSQL_PWD", "stale")
	core := newDBFake()
	url := startServer(t, core)
	bin, record := fakeClient(t, "psql")
	r := runRaw(t, "--server", url, "--token", "alice-token", "psql", "prod-db", "--psql", bin, "--", "-c", "SELECT 1")
	r.want(t, 3, "ajar: your request r1 for prod-db: active", "login ajar_r1 on postgres://ajar_r1@127.0.0.1:5432/app")
	rec, _ := os.ReadFile(record)
	for _, want := range []string{"args -c SELECT 1\n", "env PGPASSWORD=pa#ss\"word PGUSER=ajar_r1 PGHOST=127.0.0.1 PGPORT=5432 PGDATABASE=app MYSQL_PWD=stale\n"} {
		if !strings.Contains(string(rec), want) {
			t.Errorf("psql ran with %q, lacking %q", rec, want)
		}
	}
	for _, c := range core.Calls() {
		if c == "CreateRequest" {
			t.Error("a new request was made while r1 is active")
		}
	}
}

func TestMySQLCommand(t *testing.T) {
	t.Setenv("MYSQL_PWD", "stale")
	runtime := t.TempDir()
	os.Chmod(runtime, 0o700) // keyDir takes only a private directory
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	url := startServer(t, newDBFake())
	bin, record := fakeClient(t, "mysql")
	r := runRaw(t, "--server", url, "--token", "alice-token", "mysql", "prod-db", "--mysql", bin, "--", "-e", "SELECT 1")
	r.want(t, 3, "ajar: your request r1 for prod-db: active")
	rec, _ := os.ReadFile(record)
	got := string(rec)
	for _, want := range []string{"args --defaults-extra-file=" + runtime + "/ajar-mysql-", " -e SELECT 1\n", "MYSQL_PWD=\n", "mode 600\n",
		"[client]\nuser=\"ajar_r1\"\npassword=\"pa#ss\\\"word\"\nhost=\"127.0.0.1\"\nport=5432\n[mysql]\ndatabase=\"app\"\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("mysql ran with %q, lacking %q", got, want)
		}
	}
	if left, _ := os.ReadDir(runtime); len(left) != 0 {
		t.Errorf("the option file was left behind: %v", left)
	}
}

func TestDBClientUsage(t *testing.T) {
	url := startServer(t, newDBFake())
	runCLI(t, url, "psql").want(t, 2)
	runCLI(t, url, "mysql", "prod-db", "extra").want(t, 2)
	runCLI(t, url, "psql", "prod-db", "--psql", "/nonexistent/psql").want(t, 2)
}
