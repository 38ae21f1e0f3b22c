package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar/store/postgres/pgtest"
	"github.com/ajar-dev/ajar/store/storetest"
)

// TestMigrateAuditSearch checks migration 0008 on a log written before it:
// the requester and target of each event's request are filled in, the time
// key is computed, and the log stays append-only.
func TestMigrateAuditSearch(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	storetest.SeedAuditSearch(t, s)
	s.Close()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	// Put the database back to its state before 0008.
	for _, q := range []string{
		`DROP TRIGGER audit_events_request ON audit_events`, `DROP FUNCTION audit_events_request()`,
		`DROP INDEX extensions_pending`, `DROP INDEX audit_events_actor`, `DROP INDEX audit_events_time`,
		`ALTER TABLE audit_events DROP COLUMN requester, DROP COLUMN target, DROP COLUMN time_key`,
		`DELETE FROM schema_migrations WHERE name LIKE '%0008_audit_search.sql' OR name LIKE '%0010_audit_insert_cost.sql'`,
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s = open(t, dsn)
	storetest.CheckAuditSearch(t, s)
	if _, err := conn.Exec(t.Context(), `UPDATE audit_events SET target = 'x'`); err == nil {
		t.Error("UPDATE of audit_events succeeded after the migration: the append-only trigger is disabled")
	}
}
