package mysqluser

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/dbtest"
	"github.com/ajar-dev/ajar/provider/providertest"
)

// setupSQL is the least-privilege setup of docs/providers/mysql-user.md, run
// by the tests as root, so the docs are what the tests use.
const setupSQL = `
CREATE DATABASE ajar;
CREATE USER 'ajar_admin'@'%' IDENTIFIED BY 'admin-secret';
GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'ajar_admin'@'%';
GRANT SELECT, INSERT, DELETE, CREATE, EVENT ON ajar.* TO 'ajar_admin'@'%';
GRANT SELECT ON app.* TO 'ajar_admin'@'%' WITH GRANT OPTION;
GRANT reader TO 'ajar_admin'@'%' WITH ADMIN OPTION;
`

// env is one MariaDB server with database app (tables allowed and secret), a
// role reader that may read allowed only, and ajar's least-privilege admin.
type env struct {
	m   *dbtest.MariaDB
	dsn string // ajar_admin's DSN
}

var envSeq atomic.Int64

func newEnv(t *testing.T) *env {
	t.Helper()
	m := dbtest.StartMariaDB(t)
	m.Exec(t, `CREATE DATABASE app; CREATE TABLE app.allowed (v int); INSERT INTO app.allowed VALUES (42); CREATE TABLE app.secret (v int);
		CREATE ROLE reader; GRANT SELECT ON app.allowed TO reader;`)
	m.Exec(t, setupSQL)
	return &env{m: m, dsn: m.DSN("ajar_admin", "admin-secret", "")}
}

func (e *env) provider(t *testing.T, grants ...string) *Provider {
	t.Helper()
	return e.providerWith(t, nil, grants...)
}

func (e *env) providerWith(t *testing.T, extra map[string]any, grants ...string) *Provider {
	t.Helper()
	name := fmt.Sprintf("AJAR_TEST_MYSQL_ADMIN_DSN_%d", envSeq.Add(1))
	os.Setenv(name, e.dsn) // not t.Setenv: subtests run in parallel
	t.Cleanup(func() { os.Unsetenv(name) })
	m := map[string]any{"admin_dsn_env": name, "database": "app", "grant_roles": grants}
	for k, v := range extra {
		m[k] = v
	}
	cfg, _ := json.Marshal(m)
	p, err := New("db", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func (e *env) count(t testing.TB, user string) int {
	t.Helper()
	db, err := sql.Open("mysql", e.m.RootDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM mysql.user WHERE User = ?", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func request(id string) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "db", Requester: "alice", ExpiresAt: time.Now().Add(time.Hour)}
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, "SELECT", "reader")
	providertest.Run(t, providertest.Subject{
		Provider: p, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest { return request(id) },
		Count:   func(t testing.TB, req ajar.GrantRequest) int { return e.count(t, "ajar_"+req.RequestID) },
	})
}

func connectAs(e *env, l ajar.DBLogin) (*sql.DB, *sql.Conn, error) {
	db, err := sql.Open("mysql", e.m.DSN(l.User, l.Password, l.Database))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, c, nil
}

// TestLogin: the login works with the password IssueLogin returns and reads
// what its role may read, nothing else; Revoke kills the open connection and
// the login is gone; hand-made users are never touched.
func TestLogin(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, "reader")
	ctx := t.Context()
	id := providertest.NewRequestID()
	e.m.Exec(t, "CREATE USER 'ajar_"+id+"x'@'%' IDENTIFIED BY 'hand'")
	req := request(id)
	if _, err := p.IssueLogin(ctx, providertest.Intent(Name, req), time.Now()); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("IssueLogin of an intent: %v, want conflict", err)
	}
	h, err := p.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.IssueLogin(ctx, h, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.IssueLogin(ctx, h, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if l.User != "ajar_"+id || l.Database != "app" || l.Port != e.m.Port() || strings.Contains(l.DSN, l.Password) {
		t.Fatalf("login = %+v", l)
	}
	if db, _, err := connectAs(e, first); err == nil {
		db.Close()
		t.Fatal("the first password still works after a new one was issued")
	}
	db, conn, err := connectAs(e, l)
	if err != nil {
		t.Fatalf("connect as the login: %v", err)
	}
	defer db.Close()
	var v int
	if err := conn.QueryRowContext(ctx, "SELECT v FROM app.allowed").Scan(&v); err != nil || v != 42 {
		t.Fatalf("SELECT allowed = %d, %v", v, err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT * FROM app.secret"); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("SELECT secret: %v, want denied", err)
	}

	if err := p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := conn.PingContext(ctx); err == nil {
		t.Fatal("the open connection survived the revocation")
	}
	if db2, _, err := connectAs(e, l); err == nil {
		db2.Close()
		t.Fatal("the login still works after the revocation")
	}
	if e.count(t, l.User) != 0 {
		t.Fatal("the user is still there")
	}
	if e.count(t, l.User+"x") != 1 {
		t.Fatal("the hand-made user with a similar name was dropped")
	}
}

// TestHandMadeUser: a user with the request's exact name that ajar did not
// create makes the grant fail and is never dropped.
func TestHandMadeUser(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, "reader")
	id := providertest.NewRequestID()
	e.m.Exec(t, "CREATE USER 'ajar_"+id+"'@'%' IDENTIFIED BY 'hand'")
	if _, err := p.Grant(t.Context(), request(id)); ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "not created by ajar") {
		t.Fatalf("Grant over a hand-made user: %v, want invalid", err)
	}
	h := providertest.Intent(Name, request(id))
	if ok, err := p.Verify(t.Context(), h); err != nil || ok {
		t.Fatalf("Verify = %v, %v; want false", ok, err)
	}
	if err := p.Revoke(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if e.count(t, "ajar_"+id) != 1 {
		t.Fatal("the hand-made user was dropped")
	}
}

func TestCheckConfig(t *testing.T) {
	probs := CheckConfig(json.RawMessage(`{"admin_dsn_env": "X", "database": "app", "grant_roles": ["select", "ALL", "reporting", "SELECT", "a b;"], "marker_database": "app"}`))
	var got []string
	for _, p := range probs {
		got = append(got, p.Field)
	}
	if want := "marker_database,grant_roles[1],grant_roles[3],grant_roles[4]"; strings.Join(got, ",") != want {
		t.Fatalf("fields = %v, want %s\n%v", got, want, probs)
	}
}

// TestExpiryEvent: with expiry_event the server locks the account at the
// grant's end by itself (ajar is not asked), Renew moves that time, and Revoke
// drops the event.
func TestExpiryEvent(t *testing.T) {
	e := newEnv(t)
	p := e.providerWith(t, map[string]any{"expiry_event": true}, "reader")
	ctx := t.Context()
	req := request(providertest.NewRequestID())
	h, err := p.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.IssueLogin(ctx, h, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	db, c, err := connectAs(e, l)
	if err != nil {
		t.Fatalf("the login does not work before its end: %v", err)
	}
	c.Close()
	db.Close()
	// Moved into the past (as after a slow call): the server locks the account
	// at once rather than dropping an event whose time has passed.
	if _, err := p.Renew(ctx, h, time.Now().Add(-time.Minute)); err != nil { // already past: locked at once
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		db, c, err := connectAs(e, l)
		if err != nil {
			if !strings.Contains(err.Error(), "locked") {
				t.Fatalf("the login fails, but not for its lock: %v", err)
			}
			break
		}
		c.Close()
		db.Close()
		if time.Now().After(deadline) {
			t.Fatal("the account was not locked by the server at its end")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if e.count(t, l.User) != 0 {
		t.Fatal("the user is still there")
	}
	root, err := sql.Open("mysql", e.m.RootDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var n int
	if err := root.QueryRow("SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'ajar'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events left after revoke (%v)", n, err)
	}
}
