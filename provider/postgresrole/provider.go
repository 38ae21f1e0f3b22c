// Package postgresrole is the postgres-role provider: database logins on
// demand. For an active request ajar connects with its own admin role and
// creates a login role named after the request ("ajar_" and the request id,
// lower-cased), marked with COMMENT ON ROLE 'ajar:request:ID', VALID UNTIL the
// request's expiry (the target-side lock, docs/architecture.md invariant 2) and
// a member of the target's grant_roles. Nobody knows its password: the grant
// sets a random one and forgets it, and "ajar db-credentials" (IssueLogin) sets
// a fresh one and returns it once. Passwords reach the server only as SCRAM
// verifiers, so they are not in its statement logs either.
//
// Revoke locks the login (NOLOGIN), ends its backends (pg_terminate_backend),
// revokes the memberships, hands what it owns to reassign_to (or drops it) and
// drops the role; revoking what is gone succeeds. ajar never alters or drops a
// role whose comment is not its mark for that request: a role made by hand with
// the same or a similar name is left alone (a grant over it fails instead).
// docs/providers/postgres-role.md has the least-privilege setup.
package postgresrole

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/dbx"
)

// Name is the provider type in the policy file.
const Name = "postgres-role"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// Provider is the postgres-role provider of one target. It is safe for
// concurrent use.
type Provider struct {
	target string
	cfg    Config
	pool   *pgxpool.Pool
	host   string
	port   int
}

var (
	_ ajar.Provider    = (*Provider)(nil)
	_ ajar.Verifier    = (*Provider)(nil)
	_ ajar.Renewer     = (*Provider)(nil)
	_ ajar.LoginIssuer = (*Provider)(nil)
	_ ajar.Sharer      = (*Provider)(nil)
)

// handleData is Handle.Data for HandleVersion 1: no secret.
type handleData struct {
	Role     string `json:"role"`
	Database string `json:"database"`
	// Member is set in the membership mode: Role is the requester's own role.
	Member bool `json:"member,omitempty"`
}

// New returns the provider for target, reading the admin DSN from the
// environment variable the config names. It does not connect yet.
func New(target string, raw json.RawMessage) (*Provider, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	dsn := os.Getenv(cfg.AdminDSNEnv)
	if dsn == "" {
		return nil, fmt.Errorf("%s: the environment variable %s (the admin DSN) is not set", Name, cfg.AdminDSNEnv)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included: say only where.
		return nil, fmt.Errorf("%s: the admin DSN in %s cannot be parsed", Name, cfg.AdminDSNEnv)
	}
	pc.ConnConfig.Database = cfg.Database
	pc.MaxConns = 4
	pc.MinConns = 0
	pc.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("%s: admin connection pool: %w", Name, err)
	}
	p := &Provider{target: target, cfg: cfg, pool: pool, host: cfg.Host, port: cfg.Port}
	if p.host == "" {
		p.host = pc.ConnConfig.Host
	}
	if p.port == 0 {
		p.port = int(pc.ConnConfig.Port)
	}
	return p, nil
}

// Close closes the admin connections.
func (p *Provider) Close() { p.pool.Close() }

// Mark is the comment ajar puts on the role of a request.
func Mark(requestID string) string { return "ajar:request:" + requestID }

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, so that the password itself never reaches the server.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	const iter = 4096
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}

func (p *Provider) check(h ajar.Handle) (string, error) {
	if h.Provider != Name || h.Version != HandleVersion {
		return "", ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	return p.loginName(h.Grant)
}

// owner reads the role's comment: exists is false when there is no such role;
// ours is true only when the comment is the request's mark.
func owner(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, role, requestID string) (exists, ours bool, err error) {
	var comment *string
	err = q.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1`, role).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("read role %s: %w", role, err)
	}
	return true, comment != nil && *comment == Mark(requestID), nil
}

// classify turns a PostgreSQL error that retrying cannot fix into EINVALID.
func classify(err error, format string, args ...any) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42704", "3D000": // undefined_object (a grant role), invalid_catalog_name
			return ajar.Errorf(ajar.EINVALID, "%s: %s", fmt.Sprintf(format, args...), pe.Message)
		}
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// Grant creates the request's login role with a random password nobody keeps,
// VALID UNTIL the grant's end, and makes it a member of grant_roles, in one
// transaction. Granting again (or concurrently) finds ajar's role and only moves
// VALID UNTIL and adds missing memberships. It returns EINVALID when a role of
// that name exists that ajar did not create, or a grant role does not exist.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if p.cfg.Existing != nil {
		return p.grantMember(ctx, req)
	}
	role, err := p.loginName(req)
	if err != nil {
		return ajar.Handle{}, err
	}
	until := req.Until()
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// Concurrent grants of one request queue here instead of racing CREATE ROLE.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, role); err != nil {
			return err
		}
		exists, ours, err := owner(ctx, tx, role, req.RequestID)
		if err != nil {
			return err
		}
		if exists && !ours {
			return ajar.Errorf(ajar.EINVALID, "role %s exists and was not created by ajar for request %s: ajar leaves it alone", role, req.RequestID)
		}
		validUntil := pgTime(until)
		if !exists {
			v, err := scramVerifier(dbx.Password())
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD %s VALID UNTIL %s",
				ident(role), quoteLiteral(v), validUntil)); err != nil {
				return classify(err, "create role %s", role)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("COMMENT ON ROLE %s IS %s", ident(role), quoteLiteral(Mark(req.RequestID)))); err != nil {
				return classify(err, "mark role %s", role)
			}
		} else if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER ROLE %s VALID UNTIL %s", ident(role), validUntil)); err != nil {
			return classify(err, "set the expiry of role %s", role)
		}
		for _, g := range p.cfg.GrantRoles {
			if _, err := tx.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", ident(g), ident(role))); err != nil {
				return classify(err, "grant %s to %s", g, role)
			}
		}
		return nil
	})
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EINVALID {
			return ajar.Handle{}, err
		}
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	data, err := json.Marshal(handleData{Role: role, Database: p.cfg.Database})
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

// Renew moves the role's VALID UNTIL to expiresAt (never past the grant's
// latest end). It returns ECONFLICT when the role is gone or not ajar's.
func (p *Provider) Renew(ctx context.Context, h ajar.Handle, expiresAt time.Time) (ajar.Handle, error) {
	role, err := p.check(h)
	if err != nil {
		return h, err
	}
	if err := h.Grant.CheckExpiry(expiresAt); err != nil {
		return h, err
	}
	if p.cfg.Existing != nil { // memberships have no expiry of their own
		h.Grant.ExpiresAt = expiresAt
		return h, nil
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		exists, ours, err := owner(ctx, tx, role, h.Grant.RequestID)
		if err != nil {
			return err
		}
		if !exists || !ours {
			return ajar.Errorf(ajar.ECONFLICT, "role %s of request %s is gone", role, h.Grant.RequestID)
		}
		_, err = tx.Exec(ctx, fmt.Sprintf("ALTER ROLE %s VALID UNTIL %s", ident(role), pgTime(expiresAt)))
		return err
	})
	if err != nil {
		return h, fmt.Errorf("renew %s: %w", h.Grant.RequestID, err)
	}
	h.Grant.ExpiresAt = expiresAt
	return h, nil
}

// Revoke locks the request's role, ends its sessions, revokes its
// memberships, reassigns or drops what it owns in the target's database and
// drops it. A role that is gone, or that is not marked as this request's, is
// left alone and Revoke succeeds. It works on an intent too: the role's name
// follows from the request id.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	role, err := p.check(h)
	if err != nil {
		return err
	}
	if p.cfg.Existing != nil {
		return p.revokeMember(ctx, h)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("revoke %s: connect: %w", h.Grant.RequestID, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, role); err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	defer func() {
		// A connection that may still hold the lock never goes back to the pool.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, role); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	exists, ours, err := owner(ctx, conn, role, h.Grant.RequestID)
	if err != nil || !exists || !ours {
		return err
	}
	var oid uint32
	if err := conn.QueryRow(ctx, `SELECT oid FROM pg_roles WHERE rolname = $1`, role).Scan(&oid); err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	steps := []string{
		// No new sessions from here on.
		fmt.Sprintf("ALTER ROLE %s NOLOGIN VALID UNTIL '-infinity'", ident(role)),
		// Membership lets ajar's admin end the role's sessions and act on what
		// it owns without pg_signal_backend or superuser.
		fmt.Sprintf("GRANT %s TO CURRENT_USER", ident(role)),
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
		}
	}
	// End every session of the role, on every database, waiting for each to go.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = $1`, role); err != nil {
		return fmt.Errorf("revoke %s: end its sessions: %w", h.Grant.RequestID, err)
	}
	steps = steps[:0]
	for _, g := range p.cfg.GrantRoles {
		steps = append(steps, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(role)))
	}
	if p.cfg.ReassignTo != "" {
		steps = append(steps, fmt.Sprintf("REASSIGN OWNED BY %s TO %s", ident(role), ident(p.cfg.ReassignTo)))
	}
	steps = append(steps, fmt.Sprintf("DROP OWNED BY %s", ident(role)),
		// A session that was past its login check when NOLOGIN committed but not
		// yet listed the first time is ended now, while ajar may still do it.
		"SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usesysid = "+strconv.FormatUint(uint64(oid), 10),
		fmt.Sprintf("DROP ROLE IF EXISTS %s", ident(role)))
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42704" && strings.HasPrefix(s, "REVOKE") {
				continue // a grant role dropped meanwhile: nothing to revoke
			}
			return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
		}
	}
	return nil
}

// Verify reports whether the request's role exists (and is ajar's).
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	role, err := p.check(h)
	if err != nil {
		return false, err
	}
	if p.cfg.Existing != nil {
		return p.verifyMember(ctx, h)
	}
	exists, ours, err := owner(ctx, p.pool, role, h.Grant.RequestID)
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	return exists && ours, nil
}

// IssueLogin sets a new random password on the request's role and returns it
// with where to connect. The old password stops working. It returns ECONFLICT
// for an intent, an expired grant, or a role that is gone.
func (p *Provider) IssueLogin(ctx context.Context, h ajar.Handle, now time.Time) (ajar.DBLogin, error) {
	role, err := p.check(h)
	if err != nil {
		return ajar.DBLogin{}, err
	}
	if p.cfg.Existing != nil {
		return ajar.DBLogin{}, p.errNoLogin()
	}
	var d handleData
	if len(h.Data) == 0 || json.Unmarshal(h.Data, &d) != nil || d.Role != role {
		return ajar.DBLogin{}, ajar.Errorf(ajar.ECONFLICT, "the grant for request %s has not been made yet", h.Grant.RequestID)
	}
	until := h.Grant.Until()
	if !now.Before(until) {
		return ajar.DBLogin{}, ajar.Errorf(ajar.ECONFLICT, "request %s has expired", h.Grant.RequestID)
	}
	password := dbx.Password()
	v, err := scramVerifier(password)
	if err != nil {
		return ajar.DBLogin{}, err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		exists, ours, err := owner(ctx, tx, role, h.Grant.RequestID)
		if err != nil {
			return err
		}
		if !exists || !ours {
			return ajar.Errorf(ajar.ECONFLICT, "role %s of request %s is gone", role, h.Grant.RequestID)
		}
		_, err = tx.Exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD %s", ident(role), quoteLiteral(v)))
		return err
	})
	if err != nil {
		if ajar.ErrorCode(err) == ajar.ECONFLICT {
			return ajar.DBLogin{}, err
		}
		return ajar.DBLogin{}, fmt.Errorf("login for %s: %w", h.Grant.RequestID, err)
	}
	u := url.URL{Scheme: "postgres", User: url.User(role), Host: hostPort(p.host, p.port), Path: "/" + d.Database}
	if strings.HasPrefix(p.host, "/") { // a Unix socket directory
		u.Host = ""
		u.RawQuery = url.Values{"host": {p.host}, "port": {strconv.Itoa(p.port)}}.Encode()
	}
	return ajar.DBLogin{User: role, Password: password, Host: p.host, Port: p.port, Database: d.Database, DSN: u.String(), ExpiresAt: until}, nil
}

func hostPort(host string, port int) string {
	if port == 0 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// pgTime is t as a timestamp literal, cut to PostgreSQL's microseconds (never
// rounded up past the grant's end).
func pgTime(t time.Time) string {
	return quoteLiteral(t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano))
}

// loginName is the name of the login ajar creates for req (login_template).
func (p *Provider) loginName(req ajar.GrantRequest) (string, error) {
	return dbx.LoginNameFor(p.cfg.LoginTemplate, req.RequestID, req.Requester, 63)
}
