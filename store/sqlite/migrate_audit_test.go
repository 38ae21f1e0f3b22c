package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/ajar-dev/ajar/store/storetest"
)

// TestMigrateAuditSearch checks migration 0008 on a log written before it:
// the requester and target of each event's request are filled in, the time
// key is computed, and the log stays append-only.
func TestMigrateAuditSearch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	s := open(t, path)
	storetest.SeedAuditSearch(t, s)
	s.Close()
	// Put the database back to its state before 0008.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP INDEX extensions_pending`, `DROP INDEX audit_events_actor`, `DROP INDEX audit_events_requester`, `DROP INDEX audit_events_target`, `DROP INDEX audit_events_time`,
		`ALTER TABLE audit_events DROP COLUMN requester`, `ALTER TABLE audit_events DROP COLUMN target`, `ALTER TABLE audit_events DROP COLUMN time_key`,
		`DELETE FROM schema_migrations WHERE name LIKE '%0008_audit_search.sql'`,
	} {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s = open(t, path)
	defer s.Close()
	storetest.CheckAuditSearch(t, s)
	db, err = sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), `UPDATE audit_events SET target = 'x'`); err == nil {
		t.Error("UPDATE of audit_events succeeded after the migration: the append-only trigger is gone")
	}
}
