package ajar

import (
	"context"
	"log/slog"
	"time"
)

// LoginIssuer is an optional Provider capability for providers that create a
// database login for an active grant (postgres-role, mysql-user). The login
// exists from the grant on, but nobody knows its password: IssueLogin sets a
// fresh random one and returns it, once. The broker never stores, logs or audits
// the password (docs/security.md: vended credentials are shown once).
type LoginIssuer interface {
	// IssueLogin sets a new random password on the login of the grant in h and
	// returns how to connect with it. It returns ECONFLICT if h is only an
	// intent or the grant has expired at now.
	IssueLogin(ctx context.Context, h Handle, now time.Time) (DBLogin, error)
}

// DBLogin is a database login and where to use it. The password is a secret:
// String and LogValue never show it, and DSN carries no password either (the
// client takes it from Password, PGPASSWORD or MYSQL_PWD).
type DBLogin struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Database string `json:"database"`
	// DSN is a connection URL without the password
	// (postgres://USER@HOST:PORT/DB, mysql://USER@HOST:PORT/DB).
	DSN       string    `json:"dsn"`
	ExpiresAt time.Time `json:"expires_at"`
}

// String shows the user, the server and the expiry, never the password.
func (l DBLogin) String() string {
	return "login " + l.User + " on " + l.DSN + " (expires " + l.ExpiresAt.UTC().Format(time.RFC3339) + ")"
}

// LogValue keeps the password out of structured logs.
func (l DBLogin) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", l.User), slog.String("dsn", l.DSN), slog.Time("expires_at", l.ExpiresAt))
}
