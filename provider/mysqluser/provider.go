// Package mysqluser is the mysql-user provider: MySQL 8 and MariaDB logins on
// demand. For an active request ajar creates the user 'ajar_<request id>'@'%'
// with a random password nobody keeps, records it in its marker table
// (MARKER_DATABASE.logins) and grants it the target's privileges ON
// database.* and roles. "ajar db-credentials" (IssueLogin) sets a fresh password
// and returns it once. Passwords reach the server only as mysql_native_password
// hashes (IDENTIFIED WITH ... AS), so they are in no server log.
//
// Revoke locks the account (ACCOUNT LOCK), KILLs its connections (found in
// information_schema.PROCESSLIST), drops it (DROP USER IF EXISTS) and then its
// marker row; revoking what is gone succeeds. ajar never alters or drops a user
// that has no marker row for that request: a user made by hand with the same or
// a similar name is left alone (a grant over it fails instead).
//
// Neither MariaDB nor MySQL has a per-account expiry the account's holder cannot
// undo (PASSWORD EXPIRE lets the holder choose a new password). The nearest
// target-side lock (docs/architecture.md, invariant 2) is opt-in, expiry_event:
// an event that locks the account at the grant's end. Otherwise the login ends
// with ajar's durable revocation (invariant 1). docs/providers/mysql-user.md
// says more.
package mysqluser

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/dbx"
)

// Name is the provider type in the policy file.
const Name = "mysql-user"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// Provider is the mysql-user provider of one target. It is safe for concurrent
// use.
type Provider struct {
	target string
	cfg    Config
	db     *sql.DB
	admin  *mysql.Config // the admin DSN, for connecting as a new login once
	host   string
	port   int
}

var (
	_ ajar.Provider    = (*Provider)(nil)
	_ ajar.Verifier    = (*Provider)(nil)
	_ ajar.LoginIssuer = (*Provider)(nil)
	_ ajar.Renewer     = (*Provider)(nil)
)

// handleData is Handle.Data for HandleVersion 1: no secret.
type handleData struct {
	User     string `json:"user"`
	Database string `json:"database"`
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
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: the admin DSN in %s cannot be parsed (USER:PASS@tcp(HOST:PORT)/)", Name, cfg.AdminDSNEnv)
	}
	mc.DBName = ""
	mc.MultiStatements = false
	if mc.Timeout == 0 {
		mc.Timeout = 30 * time.Second
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%s: admin connection: %w", Name, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(time.Minute)
	p := &Provider{target: target, cfg: cfg, db: db, admin: mc, host: cfg.Host, port: cfg.Port}
	if h, port, err := net.SplitHostPort(mc.Addr); err == nil {
		if p.host == "" {
			p.host = h
		}
		if p.port == 0 {
			p.port, _ = strconv.Atoi(port)
		}
	}
	return p, nil
}

// Close closes the admin connections.
func (p *Provider) Close() error { return p.db.Close() }

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// account is 'user'@'%'; user names are ajar's own ([a-z0-9_]), never quoted input.
func account(user string) string { return "'" + user + "'@'%'" }

// nativeHash is the mysql_native_password hash of password.
func nativeHash(password string) string {
	a := sha1.Sum([]byte(password))
	b := sha1.Sum(a[:])
	return "*" + strings.ToUpper(hex.EncodeToString(b[:]))
}

func (p *Provider) markers() string { return quoteIdent(p.cfg.MarkerDatabase) + ".`logins`" }

func mysqlCode(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// locked runs fn on one admin connection holding the named lock of user, so
// that grants, revocations and password changes of one login never interleave.
func (p *Provider) locked(ctx context.Context, user string, fn func(c *sql.Conn) error) error {
	c, err := p.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", user).Scan(&got); err != nil {
		return fmt.Errorf("lock %s: %w", user, err)
	}
	if got.Int64 != 1 {
		return fmt.Errorf("lock %s: timed out", user)
	}
	defer c.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", user)
	return fn(c)
}

// marked reports whether ajar's marker table records user for requestID.
func (p *Provider) marked(ctx context.Context, c *sql.Conn, user, requestID string) (bool, error) {
	var id string
	err := c.QueryRowContext(ctx, "SELECT request_id FROM "+p.markers()+" WHERE user_name = ?", user).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows), mysqlCode(err) == 1146: // no row, no table yet
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read ajar's marker of %s: %w", user, err)
	}
	return id == requestID, nil
}

// Grant creates the request's user with a random password nobody keeps and
// grants it the target's privileges and roles. The marker row is written first,
// so a crash in between leaves nothing ajar would not find and remove. Granting
// again finds the marker and only adds missing grants. It returns EINVALID when
// a user of that name exists that ajar did not create, or a role is unknown.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	user, err := p.loginName(req)
	if err != nil {
		return ajar.Handle{}, err
	}
	password := dbx.Password() // known only until Grant returns
	err = p.locked(ctx, user, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+p.markers()+
			" (user_name VARCHAR(80) PRIMARY KEY, request_id VARCHAR(64) NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"); err != nil {
			return fmt.Errorf("create ajar's marker table: %w", err)
		}
		ours, err := p.marked(ctx, c, user, req.RequestID)
		if err != nil {
			return err
		}
		if !ours {
			if _, err := c.ExecContext(ctx, "INSERT INTO "+p.markers()+" (user_name, request_id) VALUES (?, ?)", user, req.RequestID); err != nil {
				if mysqlCode(err) == 1062 { // a marker for another request: never
					return ajar.Errorf(ajar.EINVALID, "user %s is marked for another request", user)
				}
				return fmt.Errorf("mark %s: %w", user, err)
			}
			_, err := c.ExecContext(ctx, "CREATE USER "+account(user)+" IDENTIFIED WITH mysql_native_password AS '"+nativeHash(password)+"'")
			if err != nil {
				c.ExecContext(ctx, "DELETE FROM "+p.markers()+" WHERE user_name = ?", user)
				if mysqlCode(err) == 1396 {
					return ajar.Errorf(ajar.EINVALID, "user %s exists and was not created by ajar for request %s: ajar leaves it alone", user, req.RequestID)
				}
				return fmt.Errorf("create user %s: %w", user, err)
			}
		} else {
			hash := nativeHash(password)
			if _, err := c.ExecContext(ctx, "CREATE USER IF NOT EXISTS "+account(user)+" IDENTIFIED WITH mysql_native_password AS '"+hash+"'"); err != nil {
				return fmt.Errorf("create user %s: %w", user, err)
			}
			if _, err := c.ExecContext(ctx, "ALTER USER "+account(user)+" IDENTIFIED WITH mysql_native_password AS '"+hash+"'"); err != nil {
				return fmt.Errorf("reset the password of %s: %w", user, err)
			}
		}
		if len(p.cfg.privileges) > 0 {
			if _, err := c.ExecContext(ctx, "GRANT "+strings.Join(p.cfg.privileges, ", ")+" ON "+quoteIdent(p.cfg.Database)+".* TO "+account(user)); err != nil {
				return classify(err, "grant privileges on %s to %s", p.cfg.Database, user)
			}
		}
		for _, r := range p.cfg.roles {
			if _, err := c.ExecContext(ctx, "GRANT "+quoteIdent(r)+" TO "+account(user)); err != nil {
				return classify(err, "grant role %s to %s", r, user)
			}
		}
		if err := p.setExpiryEvent(ctx, c, user, req.Until()); err != nil {
			return err
		}
		if len(p.cfg.roles) > 0 {
			return p.setDefaultRole(ctx, user, password, p.cfg.roles[0])
		}
		return nil
	})
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EINVALID {
			return ajar.Handle{}, err
		}
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	data, err := json.Marshal(handleData{User: user, Database: p.cfg.Database})
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

func (p *Provider) eventName(user string) string {
	return quoteIdent(p.cfg.MarkerDatabase) + "." + quoteIdent("expire_"+user)
}

// setExpiryEvent (with expiry_event) schedules the account's lock at until on
// the server itself, replacing any earlier schedule; a time already past locks
// it a second from now (the server drops an event whose time has passed
// unrun). It returns EINVALID when
// the server's event scheduler is not ON: the event would never run.
func (p *Provider) setExpiryEvent(ctx context.Context, c *sql.Conn, user string, until time.Time) error {
	if !p.cfg.ExpiryEvent {
		return nil
	}
	var on string
	if err := c.QueryRowContext(ctx, "SELECT @@event_scheduler").Scan(&on); err != nil {
		return fmt.Errorf("read event_scheduler: %w", err)
	}
	if !strings.EqualFold(on, "ON") {
		return ajar.Errorf(ajar.EINVALID, "expiry_event needs the server's event_scheduler ON, not %s", on)
	}
	if _, err := c.ExecContext(ctx, "DROP EVENT IF EXISTS "+p.eventName(user)); err != nil {
		return fmt.Errorf("replace the lock of %s: %w", user, err)
	}
	_, err := c.ExecContext(ctx, "CREATE EVENT "+p.eventName(user)+" ON SCHEDULE AT GREATEST(FROM_UNIXTIME("+
		strconv.FormatInt(until.Unix(), 10)+"), CURRENT_TIMESTAMP + INTERVAL 1 SECOND) ON COMPLETION NOT PRESERVE DO ALTER USER IF EXISTS "+account(user)+" ACCOUNT LOCK")
	if err != nil {
		return fmt.Errorf("schedule the lock of %s: %w", user, err)
	}
	return nil
}

// Renew moves the expiry event (with expiry_event); otherwise there is nothing
// on the server to move. It returns ECONFLICT when the user is gone.
func (p *Provider) Renew(ctx context.Context, h ajar.Handle, expiresAt time.Time) (ajar.Handle, error) {
	user, err := p.check(h)
	if err != nil {
		return h, err
	}
	if err := h.Grant.CheckExpiry(expiresAt); err != nil {
		return h, err
	}
	if p.cfg.ExpiryEvent {
		err = p.locked(ctx, user, func(c *sql.Conn) error {
			ours, err := p.marked(ctx, c, user, h.Grant.RequestID)
			if err != nil {
				return err
			}
			if !ours {
				return ajar.Errorf(ajar.ECONFLICT, "user %s of request %s is gone", user, h.Grant.RequestID)
			}
			return p.setExpiryEvent(ctx, c, user, expiresAt)
		})
		if err != nil {
			return h, fmt.Errorf("renew %s: %w", h.Grant.RequestID, err)
		}
	}
	h.Grant.ExpiresAt = expiresAt
	return h, nil
}

// setDefaultRole makes role the login's default role, so that it is in force
// without SET ROLE. Setting another account's default role needs write access
// to the mysql schema; setting one's own needs nothing, so ajar logs in as the
// new login once, with the password only this grant knows.
func (p *Provider) setDefaultRole(ctx context.Context, user, password, role string) error {
	mc := p.admin.Clone()
	mc.User, mc.Passwd, mc.DBName = user, password, ""
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if _, err := db.ExecContext(ctx, "SET DEFAULT ROLE "+quoteIdent(role)); err != nil {
		return classify(err, "set the default role of %s", user)
	}
	return nil
}

// classify turns an error that retrying cannot fix (an unknown role or
// database) into EINVALID.
func classify(err error, format string, args ...any) error {
	switch mysqlCode(err) {
	case 1959, 3530, 1049: // invalid role (MariaDB, MySQL), unknown database
		return ajar.Errorf(ajar.EINVALID, "%s: %v", fmt.Sprintf(format, args...), err)
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

func (p *Provider) check(h ajar.Handle) (string, error) {
	if h.Provider != Name || h.Version != HandleVersion {
		return "", ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	return p.loginName(h.Grant)
}

// Revoke locks the request's user, ends its connections, drops it and then its
// marker. A user without the request's marker is left alone and Revoke
// succeeds. It works on an intent too: the user's name follows from the
// request id.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	user, err := p.check(h)
	if err != nil {
		return err
	}
	err = p.locked(ctx, user, func(c *sql.Conn) error {
		ours, err := p.marked(ctx, c, user, h.Grant.RequestID)
		if err != nil || !ours {
			return err
		}
		if _, err := c.ExecContext(ctx, "ALTER USER IF EXISTS "+account(user)+" ACCOUNT LOCK"); err != nil {
			return fmt.Errorf("lock the account: %w", err)
		}
		if err := p.kill(ctx, c, user); err != nil {
			return err
		}
		if _, err := c.ExecContext(ctx, "DROP USER IF EXISTS "+account(user)); err != nil {
			return fmt.Errorf("drop user: %w", err)
		}
		// A connection that was past its login check when the account was locked
		// but not yet listed above is ended now.
		if err := p.kill(ctx, c, user); err != nil {
			return err
		}
		if _, err := c.ExecContext(ctx, "DROP EVENT IF EXISTS "+p.eventName(user)); err != nil && p.cfg.ExpiryEvent {
			return fmt.Errorf("drop the expiry event: %w", err)
		}
		if _, err := c.ExecContext(ctx, "DELETE FROM "+p.markers()+" WHERE user_name = ? AND request_id = ?", user, h.Grant.RequestID); err != nil {
			return fmt.Errorf("remove ajar's marker: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	return nil
}

// kill ends every connection of user and waits until none is left.
func (p *Provider) kill(ctx context.Context, c *sql.Conn, user string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := c.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", user)
		if err != nil {
			return fmt.Errorf("list its connections: %w", err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections of %s still open after KILL", len(ids), user)
		}
		for _, id := range ids {
			if _, err := c.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10)); err != nil && mysqlCode(err) != 1094 {
				return fmt.Errorf("kill connection %d: %w", id, err)
			}
		}
		time.Sleep(50 * time.Millisecond) // a killed thread leaves the list at its next check
	}
}

// Verify reports whether ajar's marker of the request's user exists: it is
// written before the user is created and removed only after it is dropped.
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	user, err := p.check(h)
	if err != nil {
		return false, err
	}
	c, err := p.db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	defer c.Close()
	ok, err := p.marked(ctx, c, user, h.Grant.RequestID)
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	return ok, nil
}

// IssueLogin sets a new random password on the request's user and returns it
// with where to connect. It returns ECONFLICT for an intent, an expired grant,
// or a user that is gone.
func (p *Provider) IssueLogin(ctx context.Context, h ajar.Handle, now time.Time) (ajar.DBLogin, error) {
	user, err := p.check(h)
	if err != nil {
		return ajar.DBLogin{}, err
	}
	var d handleData
	if len(h.Data) == 0 || json.Unmarshal(h.Data, &d) != nil || d.User != user {
		return ajar.DBLogin{}, ajar.Errorf(ajar.ECONFLICT, "the grant for request %s has not been made yet", h.Grant.RequestID)
	}
	until := h.Grant.Until()
	if !now.Before(until) {
		return ajar.DBLogin{}, ajar.Errorf(ajar.ECONFLICT, "request %s has expired", h.Grant.RequestID)
	}
	password := dbx.Password()
	err = p.locked(ctx, user, func(c *sql.Conn) error {
		ours, err := p.marked(ctx, c, user, h.Grant.RequestID)
		if err != nil {
			return err
		}
		if !ours {
			return ajar.Errorf(ajar.ECONFLICT, "user %s of request %s is gone", user, h.Grant.RequestID)
		}
		_, err = c.ExecContext(ctx, "ALTER USER "+account(user)+" IDENTIFIED WITH mysql_native_password AS '"+nativeHash(password)+"'")
		return err
	})
	if err != nil {
		if ajar.ErrorCode(err) == ajar.ECONFLICT {
			return ajar.DBLogin{}, err
		}
		return ajar.DBLogin{}, fmt.Errorf("login for %s: %w", h.Grant.RequestID, err)
	}
	u := url.URL{Scheme: "mysql", User: url.User(user), Host: net.JoinHostPort(p.host, strconv.Itoa(p.port)), Path: "/" + d.Database}
	return ajar.DBLogin{User: user, Password: password, Host: p.host, Port: p.port, Database: d.Database, DSN: u.String(), ExpiresAt: until}, nil
}

// loginName is the name of the login ajar creates for req (login_template).
func (p *Provider) loginName(req ajar.GrantRequest) (string, error) {
	return dbx.LoginNameFor(p.cfg.LoginTemplate, req.RequestID, req.Requester, 80)
}
