package postgres_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// TestMigrateTokensToSessions checks migration 0005: an API token stored before
// sessions existed becomes a session of kind "token" that expires 90 days after
// the migration, and the tokens table is gone.
func TestMigrateTokensToSessions(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	s.Close()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	sum := sha256.Sum256([]byte("ajar_old"))
	for _, q := range []string{
		`DROP TABLE sessions`, `DROP TABLE identities`, `DROP TABLE auth_flows`, `DROP TABLE webauthn_credentials`,
		`DELETE FROM schema_migrations WHERE name LIKE '%0005_sessions.sql'`,
		`CREATE TABLE tokens (hash bytea NOT NULL PRIMARY KEY, user_id text NOT NULL, name text NOT NULL, created_at text COLLATE "C" NOT NULL)`,
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := conn.Exec(t.Context(), `INSERT INTO tokens VALUES ($1, 'alice@example.com', 'laptop', '2025-01-02T03:04:05.000000000Z')`, sum[:]); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	s = open(t, dsn)
	err = s.View(t.Context(), func(tx ajar.ReadTx) error {
		got, err := tx.GetSession(t.Context(), sum[:])
		if err != nil {
			return err
		}
		if got.Kind != ajar.SessionToken || got.UserID != "alice@example.com" || got.Name != "laptop" || len(got.ID) != 20 || got.ID[:4] != "tok_" {
			t.Errorf("migrated token = %+v", got)
		}
		lo, hi := before.Add(90*24*time.Hour-time.Minute), time.Now().Add(90*24*time.Hour+time.Minute)
		if got.ExpiresAt.Before(lo) || got.ExpiresAt.After(hi) {
			t.Errorf("ExpiresAt = %v, want 90 days after the migration", got.ExpiresAt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE tablename = 'tokens'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("tokens table still there (%d, %v)", n, err)
	}
}
