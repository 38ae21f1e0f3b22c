package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/dbtest"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// The database tests run the real binary against a real PostgreSQL 15 (pgtest,
// made to check passwords), with ajar's admin role set up exactly as
// docs/providers/postgres-role.md says, and log in as the requester would.

// pgTarget is a throw-away cluster with a database "app" whose role readonly may
// read table allowed (not secret), ajar's least-privilege admin role, and a
// hand-made role ajar must never touch. Its env (AJAR_PG_ADMIN_DSN) goes to the
// servers the test starts.
type pgTarget struct {
	super string   // superuser DSN of the database
	db    string   // its name
	env   []string // the servers' environment: ajar's admin DSN
}

const handMadeRole = "ajar_req_handmade"

func newPGTarget(t *testing.T) *pgTarget {
	t.Helper()
	c := pgtest.StartT(t, pgtest.Options{})
	ctx := t.Context()
	super, err := c.CreateDatabase(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	dbtest.RequirePGPasswords(t, super)
	u, _ := url.Parse(super)
	p := &pgTarget{super: super, db: strings.TrimPrefix(u.Path, "/")}
	p.exec(t, `CREATE ROLE readonly NOLOGIN;
		CREATE TABLE allowed (v int); INSERT INTO allowed VALUES (42); CREATE TABLE secret (v int);
		GRANT SELECT ON allowed TO readonly;
		CREATE ROLE ajar_admin LOGIN CREATEROLE PASSWORD 'admin-secret';
		GRANT readonly TO ajar_admin WITH ADMIN OPTION;
		CREATE ROLE `+handMadeRole+` LOGIN PASSWORD 'hand-made' IN ROLE readonly;`)
	u.User = url.UserPassword("ajar_admin", "admin-secret")
	p.env = []string{"AJAR_PG_ADMIN_DSN=" + u.String()}
	return p
}

func (p *pgTarget) exec(t testing.TB, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), p.super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (p *pgTarget) roleExists(t testing.TB, role string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), p.super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// dbLogin is the JSON of ajar db-credentials -o json.
type dbLogin struct {
	RequestID string    `json:"request_id"`
	User      string    `json:"user"`
	Password  string    `json:"password"`
	Host      string    `json:"host"`
	Port      int       `json:"port"`
	Database  string    `json:"database"`
	DSN       string    `json:"dsn"`
	ExpiresAt time.Time `json:"expires_at"`
}

func pgConnect(t testing.TB, l dbLogin) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable", l.Host, l.Port, l.User, l.Password, l.Database))
}

func (p *pgTarget) policy(t *testing.T, dir, extra string) string {
	return awsPolicy(t, dir, `  prod-db:
    provider: postgres-role
    config: {admin_dsn_env: AJAR_PG_ADMIN_DSN, database: `+p.db+`, grant_roles: [readonly]}`, extra)
}

// TestPostgresRoleLogin: a request gives a login that works (with pgx and with
// psql through ajar psql) and reads what readonly may read, nothing more; the
// password is shown once and never audited; another user cannot get it; revoking
// ends the open session and the login; a hand-made role with a similar name is
// never touched.
func TestPostgresRoleLogin(t *testing.T) {
	parallel(t, costHeavy)
	requireTool(t, "psql")
	pg := newPGTarget(t)
	dir := t.TempDir()
	s := startServerEnv(t, dir, pg.env, "--config", pg.policy(t, dir, ""), "--dev")

	r := s.request(t, "alice", "request", "prod-db", "--for", "10m", "--reason", "check orders")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	var l dbLogin
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "db-credentials", r.ID, "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	if l.User != "ajar_"+r.ID || l.Database != pg.db || l.Password == "" || l.RequestID != r.ID || !strings.HasPrefix(l.DSN, "postgres://ajar_") {
		t.Fatalf("login = %+v", l)
	}
	conn, err := pgConnect(t, l)
	if err != nil {
		t.Fatalf("connect as %s: %v", l.User, err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(t.Context(), "SELECT v FROM allowed").Scan(&v); err != nil || v != 42 {
		t.Fatalf("SELECT allowed = %d, %v", v, err)
	}
	if _, err := conn.Exec(t.Context(), "SELECT * FROM secret"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("SELECT secret: %v, want permission denied", err)
	}

	// ajar psql reuses the active request and runs psql with a fresh password.
	// (The session above keeps working: a password is checked at login only.)
	res := s.ajar(t, "alice", "psql", "prod-db", "--", "-tAc", "SELECT v FROM allowed")
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "42" || !strings.Contains(res.Stderr, "your request "+r.ID) {
		t.Fatalf("ajar psql: exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	if res := s.ajar(t, "alice", "psql", "prod-db", "--", "-tAc", "SELECT v FROM secret"); res.Code == 0 || !strings.Contains(res.Stderr, "permission denied") {
		t.Fatalf("ajar psql reading secret: exit %d\nstderr: %s", res.Code, res.Stderr)
	}
	if _, err := pgConnect(t, l); err == nil {
		t.Fatal("the first password still works after ajar psql set a new one")
	}

	// Nobody else gets the login.
	if res := s.ajar(t, "admin", "db-credentials", r.ID, "-o", "json"); res.Code == 0 {
		t.Fatalf("admin got alice's login: %s", res.Stdout)
	}
	issued := 0
	for _, ev := range s.auditEvents(t) {
		if strings.Contains(string(ev.Details), l.Password) {
			t.Fatalf("the password is in the audit log: %s %s", ev.Action, ev.Details)
		}
		if ev.Action == "db_credentials.issued" && ev.Subject == r.ID {
			issued++
		}
	}
	if issued != 3 {
		t.Fatalf("%d db_credentials.issued events, want 3", issued)
	}
	if strings.Contains(s.logs(), l.Password) {
		t.Fatal("the password is in the server log")
	}

	s.ok(t, "alice", "revoke", r.ID)
	s.waitState(t, "alice", r.ID, ajar.StateRevoked, 60*time.Second)
	if err := conn.Ping(t.Context()); err == nil {
		t.Fatal("the open session survived the revocation")
	}
	if res := s.ajar(t, "alice", "db-credentials", r.ID); res.Code == 0 {
		t.Fatal("db-credentials works on a revoked request")
	}
	if pg.roleExists(t, l.User) {
		t.Fatalf("role %s is still there after the revocation", l.User)
	}
	if !pg.roleExists(t, handMadeRole) {
		t.Fatalf("the hand-made role %s was dropped", handMadeRole)
	}
	hand := dbLogin{User: handMadeRole, Password: "hand-made", Host: l.Host, Port: l.Port, Database: pg.db}
	if c, err := pgConnect(t, hand); err != nil {
		t.Fatalf("the hand-made role no longer logs in: %v", err)
	} else {
		c.Close(context.Background())
	}
}

// TestPostgresRoleCrashAcrossExpiry: ajar is killed with SIGKILL while a login
// is in use and comes back after the window closed (its clock moved 15 minutes
// on): the session is ended and the role is gone.
func TestPostgresRoleCrashAcrossExpiry(t *testing.T) {
	parallel(t, costHeavy)
	pg := newPGTarget(t)
	dir := t.TempDir()
	config := pg.policy(t, t.TempDir(), `storage: {driver: sqlite, dsn: "`+filepath.Join(dir, "ajar.db")+`"}`)
	env := append([]string{"AJAR_MASTER_KEY=" + randomMasterKey()}, pg.env...)
	s := startReplica(t, "before", config, env...)
	r := s.request(t, "alice", "request", "prod-db", "--for", "10m", "--reason", "crash test")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	var l dbLogin
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "db-credentials", r.ID, "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	conn, err := pgConnect(t, l)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	s.kill()

	s2 := startReplica(t, "after", config, append(env, "AJAR_TEST_CLOCK_OFFSET=15m")...)
	s2.waitState(t, "alice", r.ID, ajar.StateExpired, 2*time.Minute)
	if err := conn.Ping(t.Context()); err == nil {
		t.Fatal("the open session survived the expiry")
	}
	if _, err := pgConnect(t, l); err == nil {
		t.Fatal("the login still works after the expiry")
	}
	if pg.roleExists(t, l.User) {
		t.Fatalf("role %s is still there after the expiry", l.User)
	}
	if !pg.roleExists(t, handMadeRole) {
		t.Fatal("the hand-made role was dropped")
	}
}

// myTarget is a throw-away MariaDB with database app (tables allowed and
// secret), a role reader that may read allowed only, ajar's least-privilege
// admin as docs/providers/mysql-user.md says, and a hand-made user ajar must
// never touch. The environment it returns (AJAR_MYSQL_ADMIN_DSN) goes to the
// servers the test starts.
func newMyTarget(t *testing.T) (*dbtest.MariaDB, []string) {
	t.Helper()
	m := dbtest.StartMariaDB(t)
	m.Exec(t, `CREATE DATABASE app; CREATE TABLE app.allowed (v int); INSERT INTO app.allowed VALUES (42); CREATE TABLE app.secret (v int);
		CREATE ROLE reader; GRANT SELECT ON app.allowed TO reader;
		CREATE DATABASE ajar;
		CREATE USER 'ajar_admin'@'%' IDENTIFIED BY 'admin-secret';
		GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'ajar_admin'@'%';
		GRANT SELECT, INSERT, DELETE, CREATE ON ajar.* TO 'ajar_admin'@'%';
		GRANT reader TO 'ajar_admin'@'%' WITH ADMIN OPTION;
		CREATE USER '`+handMadeRole+`'@'%' IDENTIFIED BY 'hand-made'; GRANT reader TO '`+handMadeRole+`'@'%';`)
	return m, []string{"AJAR_MYSQL_ADMIN_DSN=" + m.DSN("ajar_admin", "admin-secret", "")}
}

func myPolicy(t *testing.T, dir, extra string) string {
	return awsPolicy(t, dir, `  prod-my:
    provider: mysql-user
    config: {admin_dsn_env: AJAR_MYSQL_ADMIN_DSN, database: app, grant_roles: [reader]}`, extra)
}

func myUserExists(t testing.TB, m *dbtest.MariaDB, user string) bool {
	t.Helper()
	db, err := sql.Open("mysql", m.RootDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM mysql.user WHERE User = ?", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func myConnect(t testing.TB, m *dbtest.MariaDB, l dbLogin) (*sql.DB, *sql.Conn, error) {
	t.Helper()
	db, err := sql.Open("mysql", m.DSN(l.User, l.Password, l.Database))
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
	t.Cleanup(func() { db.Close() })
	return db, c, nil
}

// TestMySQLUserLogin: ajar mysql requests access and runs the mariadb client
// with a login that reads what its role may read, nothing more, leaving no file
// behind; revoking kills the open connection and drops the user; a hand-made
// user with a similar name is never touched.
func TestMySQLUserLogin(t *testing.T) {
	parallel(t, costHeavy)
	requireTool(t, "mysql")
	m, myEnv := newMyTarget(t)
	dir := t.TempDir()
	s := startServerEnv(t, dir, myEnv, "--config", myPolicy(t, dir, ""), "--dev")

	runtime := t.TempDir() // ajar mysql's option file goes here, and must be gone after
	os.Chmod(runtime, 0o700)
	cliEnv := []string{"XDG_RUNTIME_DIR=" + runtime}
	res := s.runAs(t, s.tokens["alice"], cliEnv, "mysql", "prod-my", "--for", "10m", "--reason", "check orders", "--", "-N", "-e", "SELECT v FROM allowed")
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "42" || !strings.Contains(res.Stderr, "new request") {
		t.Fatalf("ajar mysql: exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	if left, _ := os.ReadDir(runtime); len(left) != 0 {
		t.Fatalf("ajar mysql left %d files in the runtime directory", len(left))
	}
	if res := s.runAs(t, s.tokens["alice"], cliEnv, "mysql", "prod-my", "--", "-N", "-e", "SELECT v FROM secret"); res.Code == 0 || !strings.Contains(res.Stderr, "denied") {
		t.Fatalf("ajar mysql reading secret: exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	} else if !strings.Contains(res.Stderr, "your request") {
		t.Fatalf("the second ajar mysql did not reuse the request:\n%s", res.Stderr)
	}
	var reqs []ajar.Request
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "requests", "--mine", "-o", "json")), &reqs); err != nil || len(reqs) != 1 {
		t.Fatalf("alice's requests: %v, %v", reqs, err)
	}
	id := reqs[0].ID

	var l dbLogin
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "db-credentials", id, "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	if l.Host != "127.0.0.1" || l.Port != m.Port() || l.Database != "app" || l.User != "ajar_"+id {
		t.Fatalf("login = %+v", l)
	}
	_, conn, err := myConnect(t, m, l)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := conn.QueryRowContext(t.Context(), "SELECT v FROM app.allowed").Scan(&v); err != nil || v != 42 {
		t.Fatalf("SELECT allowed = %d, %v", v, err)
	}

	s.ok(t, "alice", "revoke", id)
	s.waitState(t, "alice", id, ajar.StateRevoked, 60*time.Second)
	if err := conn.PingContext(t.Context()); err == nil {
		t.Fatal("the open connection survived the revocation")
	}
	if _, _, err := myConnect(t, m, l); err == nil {
		t.Fatal("the login still works after the revocation")
	}
	if myUserExists(t, m, l.User) {
		t.Fatal("the user is still there")
	}
	if !myUserExists(t, m, handMadeRole) {
		t.Fatal("the hand-made user was dropped")
	}
}

// TestMySQLUserCrashAcrossExpiry: MariaDB has no account expiry of its own;
// ajar killed with SIGKILL during the window still ends the login when it comes
// back after the window closed.
func TestMySQLUserCrashAcrossExpiry(t *testing.T) {
	parallel(t, costHeavy)
	m, myEnv := newMyTarget(t)
	dir := t.TempDir()
	config := myPolicy(t, t.TempDir(), `storage: {driver: sqlite, dsn: "`+filepath.Join(dir, "ajar.db")+`"}`)
	env := append([]string{"AJAR_MASTER_KEY=" + randomMasterKey()}, myEnv...)
	s := startReplica(t, "before", config, env...)
	r := s.request(t, "alice", "request", "prod-my", "--for", "10m", "--reason", "crash test")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	var l dbLogin
	if err := json.Unmarshal([]byte(s.ok(t, "alice", "db-credentials", r.ID, "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	_, conn, err := myConnect(t, m, l)
	if err != nil {
		t.Fatal(err)
	}
	s.kill()

	s2 := startReplica(t, "after", config, append(env, "AJAR_TEST_CLOCK_OFFSET=15m")...)
	s2.waitState(t, "alice", r.ID, ajar.StateExpired, 2*time.Minute)
	if err := conn.PingContext(t.Context()); err == nil {
		t.Fatal("the open connection survived the expiry")
	}
	if myUserExists(t, m, l.User) {
		t.Fatal("the user is still there after the expiry")
	}
	if !myUserExists(t, m, handMadeRole) {
		t.Fatal("the hand-made user was dropped")
	}
}

// TestPostgresRoleDrift: the drift check keeps the role existing exactly while
// the request is active: dropped by hand during the window, it is made again;
// brought back with ajar's mark after the end (a restored backup), it is dropped
// again; a hand-made role is never touched.
func TestPostgresRoleDrift(t *testing.T) {
	parallel(t, costHeavy)
	pg := newPGTarget(t)
	dir := t.TempDir()
	s := startServerEnv(t, dir, pg.env, "--config", pg.policy(t, dir, "reconcile: {interval: 1s, lookback: 1h}\n"), "--dev")
	r := s.request(t, "alice", "request", "prod-db", "--for", "10m", "--reason", "drift test")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	role := "ajar_" + r.ID
	pg.exec(t, "DROP ROLE "+role)
	eventually(t, 60*time.Second, "the dropped role is made again", func() bool { return pg.roleExists(t, role) })

	s.ok(t, "alice", "revoke", r.ID)
	s.waitState(t, "alice", r.ID, ajar.StateRevoked, 60*time.Second)
	if pg.roleExists(t, role) {
		t.Fatal("role still there after the revocation")
	}
	pg.exec(t, "CREATE ROLE "+role+" LOGIN; COMMENT ON ROLE "+role+" IS 'ajar:request:"+r.ID+"'")
	eventually(t, 60*time.Second, "the restored role is dropped again", func() bool { return !pg.roleExists(t, role) })
	if !pg.roleExists(t, handMadeRole) {
		t.Fatal("the hand-made role was dropped")
	}
}
