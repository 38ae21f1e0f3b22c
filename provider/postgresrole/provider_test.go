package postgresrole

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/dbtest"
	"github.com/ajar-dev/ajar/provider/providertest"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// SetupSQL is the least-privilege setup of docs/providers/postgres-role.md,
// run by the tests as the superuser, so the docs are what the tests use.
const setupSQL = `
CREATE ROLE ajar_admin_%[1]s LOGIN CREATEROLE PASSWORD '%[2]s';
GRANT readonly_%[1]s TO ajar_admin_%[1]s WITH ADMIN OPTION;
`

var envSeq atomic.Int64

// env is one fresh database with a readonly role that may read public.allowed
// (not public.secret), and a provider whose admin is the least-privilege role.
type env struct {
	super    string // superuser DSN of the database
	db       string
	readonly string
	admin    string // ajar's admin role
	p        *Provider
}

func newEnv(t *testing.T) *env {
	t.Helper()
	super := pgtest.NewDatabase(t)
	dbtest.RequirePGPasswords(t, super)
	u, _ := url.Parse(super)
	e := &env{super: super, db: strings.TrimPrefix(u.Path, "/")}
	suffix := fmt.Sprint(envSeq.Add(1))
	e.readonly = "readonly_" + suffix
	e.admin = "ajar_admin_" + suffix
	adminPass := "admin-pass-" + suffix
	e.exec(t, "CREATE ROLE "+e.readonly+" NOLOGIN")
	e.exec(t, fmt.Sprintf(setupSQL, suffix, adminPass))
	e.exec(t, "CREATE TABLE allowed (v int); INSERT INTO allowed VALUES (42); CREATE TABLE secret (v int)")
	e.exec(t, "GRANT SELECT ON allowed TO "+e.readonly)

	admin := *u
	admin.User = url.UserPassword("ajar_admin_"+suffix, adminPass)
	envName := "AJAR_TEST_PG_ADMIN_DSN_" + suffix
	os.Setenv(envName, admin.String()) // not t.Setenv: subtests run in parallel
	t.Cleanup(func() { os.Unsetenv(envName) })
	cfg, _ := json.Marshal(map[string]any{"admin_dsn_env": envName, "database": e.db, "grant_roles": []string{e.readonly}})
	p, err := New("db", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	e.p = p
	return e
}

func (e *env) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) count(t testing.TB, role string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) request(id string) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "db", Requester: "alice", ExpiresAt: time.Now().Add(time.Hour)}
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	providertest.Run(t, providertest.Subject{
		Provider: e.p, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest { return e.request(id) },
		Count:   func(t testing.TB, req ajar.GrantRequest) int { return e.count(t, "ajar_"+req.RequestID) },
	})
}

func connectAs(l ajar.DBLogin) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(l.DSN + "?sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Password = l.Password
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// TestLogin: the login works with the password IssueLogin returns, reads what
// the grant role may read and nothing else; a new password replaces the old;
// Revoke ends the open session and the login is gone.
func TestLogin(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	req := e.request(providertest.NewRequestID())
	if _, err := e.p.IssueLogin(ctx, providertest.Intent(Name, req), time.Now()); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("IssueLogin of an intent: %v, want conflict", err)
	}
	h, err := e.p.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.IssueLogin(ctx, h, req.ExpiresAt); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("IssueLogin at expiry: %v, want conflict", err)
	}
	first, err := e.p.IssueLogin(ctx, h, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if first.User != "ajar_"+req.RequestID || first.Database != e.db || first.Password == "" || !first.ExpiresAt.Equal(req.ExpiresAt) {
		t.Fatalf("login = %+v", first)
	}
	if strings.Contains(first.DSN, first.Password) || strings.Contains(first.String(), first.Password) {
		t.Fatalf("the DSN or String shows the password: %s", first)
	}
	login, err := e.p.IssueLogin(ctx, h, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectAs(first); err == nil {
		t.Fatal("the first password still works after a new one was issued")
	}
	conn, err := connectAs(login)
	if err != nil {
		t.Fatalf("connect as the login: %v", err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM allowed").Scan(&v); err != nil || v != 42 {
		t.Fatalf("SELECT allowed = %d, %v", v, err)
	}
	if _, err := conn.Exec(ctx, "SELECT v FROM secret"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("SELECT secret: %v, want permission denied", err)
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE sneaky"); err == nil {
		t.Fatal("the login can create roles")
	}

	if err := e.p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("the open session survived the revocation")
	}
	if _, err := connectAs(login); err == nil {
		t.Fatal("the login still works after the revocation")
	}
	if n := e.count(t, login.User); n != 0 {
		t.Fatalf("%d roles %s after revoke", n, login.User)
	}
}

// TestRenew moves VALID UNTIL, never past the grant's latest end.
func TestRenew(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	req := e.request(providertest.NewRequestID())
	req.NotAfter = req.ExpiresAt.Add(time.Hour)
	h, err := e.p.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	validUntil := func() time.Time {
		conn, err := pgx.Connect(ctx, e.super)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var at time.Time
		if err := conn.QueryRow(ctx, "SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1", "ajar_"+req.RequestID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if got := validUntil(); !got.Equal(req.ExpiresAt.Truncate(time.Microsecond)) {
		t.Fatalf("VALID UNTIL = %s, want %s", got, req.ExpiresAt)
	}
	later := req.ExpiresAt.Add(30 * time.Minute)
	if _, err := e.p.Renew(ctx, h, later); err != nil {
		t.Fatal(err)
	}
	if got := validUntil(); !got.Equal(later.Truncate(time.Microsecond)) {
		t.Fatalf("VALID UNTIL after renew = %s, want %s", got, later)
	}
	if _, err := e.p.Renew(ctx, h, req.NotAfter.Add(time.Second)); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("Renew past not_after: %v, want invalid", err)
	}
	if err := e.p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
}

// TestHandMadeRoles: a role ajar did not create is never altered or dropped,
// whether it has the request's exact name or a similar one.
func TestHandMadeRoles(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	id := providertest.NewRequestID()
	same, similar := "ajar_"+id, "ajar_"+id+"x"
	e.exec(t, "CREATE ROLE "+same+" LOGIN")
	e.exec(t, "CREATE ROLE "+similar+" LOGIN")
	e.exec(t, "COMMENT ON ROLE "+similar+" IS 'ajar:request:"+id+"'")

	_, err := e.p.Grant(ctx, e.request(id))
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "not created by ajar") {
		t.Fatalf("Grant over a hand-made role: %v, want invalid", err)
	}
	h := providertest.Intent(Name, e.request(id))
	if ok, err := e.p.Verify(ctx, h); err != nil || ok {
		t.Fatalf("Verify of a hand-made role = %v, %v; want false", ok, err)
	}
	if err := e.p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Revoke(ctx, providertest.Intent(Name, e.request(id+"x"))); err != nil {
		t.Fatal(err) // its mark names another request
	}
	for _, r := range []string{same, similar} {
		if e.count(t, r) != 1 {
			t.Fatalf("hand-made role %s was dropped", r)
		}
	}
}

func TestGrantUnknownRole(t *testing.T) {
	e := newEnv(t)
	cfg, _ := json.Marshal(map[string]any{"admin_dsn_env": e.p.cfg.AdminDSNEnv, "database": e.db, "grant_roles": []string{"nope"}})
	p, err := New("db", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := e.request(providertest.NewRequestID())
	if _, err := p.Grant(t.Context(), req); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("Grant of an unknown role: %v, want invalid", err)
	}
	if n := e.count(t, "ajar_"+req.RequestID); n != 0 {
		t.Fatal("a failed grant left its role behind")
	}
}

func TestCheckConfig(t *testing.T) {
	probs := CheckConfig(json.RawMessage(`{"admin_dsn_env": "1BAD", "database": "a;b", "grant_roles": ["ok", "pg_read_server_files", "ok", "ajar_x"], "port": 0, "extra": 1}`))
	var got []string
	for _, p := range probs {
		got = append(got, p.Field)
	}
	want := []string{"extra", "admin_dsn_env", "database", "grant_roles[1]", "grant_roles[2]", "grant_roles[3]", "port"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("problem fields = %v, want %v\n%v", got, want, probs)
	}
	probs = CheckConfig(json.RawMessage(`{"admin_dsn_env": "X", "database": "app", "grant_roles": ["r"], "reassign_to": "o", "existing_role_template": "{nope}"}`))
	if len(probs) != 2 || probs[0].Field != "existing_role_template" || probs[1].Field != "reassign_to" {
		t.Fatalf("membership mode problems = %v", probs)
	}
	if probs := CheckConfig(json.RawMessage(`{}`)); len(probs) != 3 {
		t.Fatalf("empty config: %v, want admin_dsn_env, database and grant_roles required", probs)
	}
	if _, err := New("db", json.RawMessage(`{"admin_dsn_env": "AJAR_TEST_UNSET_DSN", "database": "app", "grant_roles": ["r"]}`)); err == nil ||
		!strings.Contains(err.Error(), "AJAR_TEST_UNSET_DSN") {
		t.Fatalf("New without the DSN: %v", err)
	}
}

// memberProvider is a provider in the membership mode over e's database: the
// role of user@example.com is user_p.
func (e *env) memberProvider(t *testing.T) *Provider {
	t.Helper()
	// The membership mode's one extra right (docs/providers/postgres-role.md).
	e.exec(t, "GRANT pg_signal_backend TO "+e.admin)
	cfg, _ := json.Marshal(map[string]any{"admin_dsn_env": e.p.cfg.AdminDSNEnv, "database": e.db, "grant_roles": []string{e.readonly},
		"existing_role_template": "{local}_p"})
	p, err := New("db", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func (e *env) members(t testing.TB, role string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member
		JOIN pg_roles g ON g.oid = m.roleid WHERE u.rolname = $1 AND g.rolname = $2`, role, e.readonly).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMemberConformance(t *testing.T) {
	e := newEnv(t)
	p := e.memberProvider(t)
	providertest.Run(t, providertest.Subject{
		Provider: p, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest {
			e.exec(t, "CREATE ROLE "+id+"_p LOGIN")
			r := e.request(id)
			r.Requester = id + "@example.com"
			return r
		},
		Count: func(t testing.TB, req ajar.GrantRequest) int { return e.members(t, req.RequestID+"_p") },
	})
}

// TestMemberMode: the person's own role gets the grant role for the window
// and loses it at the end; a membership granted outside ajar is refused and
// never revoked; no login is vended.
func TestMemberMode(t *testing.T) {
	e := newEnv(t)
	p := e.memberProvider(t)
	ctx := t.Context()
	e.exec(t, "CREATE ROLE alice_p LOGIN PASSWORD 'alice-pass'; CREATE ROLE carol_p LOGIN")
	e.exec(t, "GRANT "+e.readonly+" TO carol_p")
	req := e.request(providertest.NewRequestID())
	req.Requester = "alice@example.com"
	if p.ShareKey(req) == "" {
		t.Fatal("no share key in the membership mode")
	}
	h, err := p.Grant(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.IssueLogin(ctx, h, time.Now()); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("IssueLogin in the membership mode: %v, want invalid", err)
	}
	conn, err := connectAs(ajar.DBLogin{User: "alice_p", Password: "alice-pass", DSN: "postgres://alice_p@127.0.0.1:" + fmt.Sprint(e.p.port) + "/" + e.db})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM allowed").Scan(&v); err != nil || v != 42 {
		t.Fatalf("SELECT allowed as alice_p = %d, %v", v, err)
	}
	if err := p.Revoke(ctx, h); err != nil {
		t.Fatal(err)
	}
	if e.members(t, "alice_p") != 0 {
		t.Fatal("the membership outlived the revocation")
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("alice_p's session survived the revocation")
	}

	carol := e.request(providertest.NewRequestID())
	carol.Requester = "carol@example.com"
	if _, err := p.Grant(ctx, carol); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("Grant over a membership granted outside ajar: %v, want invalid", err)
	}
	if err := p.Revoke(ctx, providertest.Intent(Name, carol)); err != nil {
		t.Fatal(err)
	}
	if e.members(t, "carol_p") != 1 {
		t.Fatal("a membership granted outside ajar was revoked")
	}
}

// TestLoginTemplate: login_template names the login after its requester too;
// the grant, the login and the revocation all use that name.
func TestLoginTemplate(t *testing.T) {
	e := newEnv(t)
	cfg, _ := json.Marshal(map[string]any{"admin_dsn_env": e.p.cfg.AdminDSNEnv, "database": e.db, "grant_roles": []string{e.readonly},
		"login_template": "ajar_{local}_{request}"})
	p, err := New("db", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := e.request(providertest.NewRequestID())
	req.Requester = "alice@example.com"
	h, err := p.Grant(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.IssueLogin(t.Context(), h, time.Now())
	if err != nil || l.User != "ajar_alice_"+req.RequestID {
		t.Fatalf("login = %v, %v", l, err)
	}
	if e.count(t, l.User) != 1 {
		t.Fatal("no role by the template's name")
	}
	if err := p.Revoke(t.Context(), providertest.Intent(Name, req)); err != nil {
		t.Fatal(err)
	}
	if e.count(t, l.User) != 0 {
		t.Fatal("the role outlived the revocation of its intent")
	}
	if probs := CheckConfig(json.RawMessage(`{"admin_dsn_env": "X", "database": "d", "grant_roles": ["r"], "login_template": "ajar_{local}"}`)); len(probs) != 1 || probs[0].Field != "login_template" {
		t.Fatalf("problems = %v", probs)
	}
}
