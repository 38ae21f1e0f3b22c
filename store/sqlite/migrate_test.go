package sqlite_test

import (
	"crypto/sha256"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// TestMigrateTokensToSessions checks migration 0005: an API token stored before
// sessions existed becomes a session of kind "token" that expires 90 days after
// the migration, and the tokens table is gone.
func TestMigrateTokensToSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	open(t, path).Close()
	// Put the database back to its state before 0005, with one token.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("ajar_old"))
	for _, q := range []string{
		`DROP TABLE sessions`, `DROP TABLE identities`, `DROP TABLE auth_flows`, `DROP TABLE webauthn_credentials`,
		`DELETE FROM schema_migrations WHERE name LIKE '%0005_sessions.sql'`,
		`CREATE TABLE tokens (hash BLOB NOT NULL PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL) STRICT`,
	} {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO tokens VALUES (?, 'alice@example.com', 'laptop', '2025-01-02T03:04:05.000000000Z')`, sum[:]); err != nil {
		t.Fatal(err)
	}
	db.Close()

	before := time.Now()
	s := open(t, path, sqlite.WithNow(time.Now))
	defer s.Close()
	err = s.View(t.Context(), func(tx ajar.ReadTx) error {
		got, err := tx.GetSession(t.Context(), sum[:])
		if err != nil {
			return err
		}
		if got.Kind != ajar.SessionToken || got.UserID != "alice@example.com" || got.Name != "laptop" || len(got.ID) != 20 || got.ID[:4] != "tok_" {
			t.Errorf("migrated token = %+v", got)
		}
		if got.CreatedAt.Format(time.RFC3339) != "2025-01-02T03:04:05Z" {
			t.Errorf("CreatedAt = %v", got.CreatedAt)
		}
		lo, hi := before.Add(90*24*time.Hour-time.Minute), time.Now().Add(90*24*time.Hour+time.Minute)
		if got.ExpiresAt.Before(lo) || got.ExpiresAt.After(hi) {
			t.Errorf("ExpiresAt = %v, want 90 days after the migration", got.ExpiresAt)
		}
		byID, err := tx.GetSessionByID(t.Context(), got.ID)
		if err != nil || byID.UserID != got.UserID {
			t.Errorf("GetSessionByID(%s) = %+v, %v", got.ID, byID, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err = sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_master WHERE name = 'tokens'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("tokens table still there (%d, %v)", n, err)
	}
}
