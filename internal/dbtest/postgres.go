// Package dbtest helps the database providers' tests: it makes a pgtest cluster
// check passwords for every user but its superuser, and runs throw-away MariaDB
// servers (see StartMariaDB). Only tests import it.
package dbtest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// RequirePGPasswords rewrites the pg_hba.conf of the cluster superDSN (a
// pgtest cluster, as its superuser postgres) so that every other user must log
// in with a SCRAM password over TCP, and reloads it. pgtest clusters trust
// everyone, which would hide a login that no longer has a valid password. It is
// idempotent.
func RequirePGPasswords(tb testing.TB, superDSN string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	defer conn.Close(context.Background())
	var file string
	if err := conn.QueryRow(ctx, "SHOW hba_file").Scan(&file); err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	lines := []string{
		"local all postgres trust",
		"host all postgres 127.0.0.1/32 trust",
		"local all all scram-sha-256",
		"host all all 127.0.0.1/32 scram-sha-256",
	}
	// COPY writes one row per line; the lines have no tab or backslash.
	q := "COPY (SELECT unnest(ARRAY['" + strings.Join(lines, "','") + "'])) TO '" + strings.ReplaceAll(file, "'", "''") + "'"
	if _, err := conn.Exec(ctx, q); err != nil {
		tb.Fatalf("dbtest: write pg_hba.conf: %v", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_reload_conf()").Scan(&ok); err != nil || !ok {
		tb.Fatalf("dbtest: reload: %v", err)
	}
	// The reload is asynchronous: wait until an unknown user is asked for a
	// password (under trust it is told it does not exist).
	cfg, err := pgx.ParseConfig(superDSN)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	cfg.User = "dbtest_probe"
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if c != nil {
			c.Close(context.Background())
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "28P01" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dbtest: pg_hba.conf not in force after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
