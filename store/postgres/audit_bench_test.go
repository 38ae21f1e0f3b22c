package postgres_test

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the bulk load

	"github.com/ajar-dev/ajar/store/postgres/pgtest"
	"github.com/ajar-dev/ajar/store/storetest"
)

// BenchmarkAuditSearch searches a log of 1,000,000 events (issue 14: < 50 ms
// for one request, user or target) for the newest page of 50 events, as the
// web page does, and reports ms/search. Building the log takes a while; run it
// alone: go test -run '^$' -bench AuditSearch ./store/postgres/
func BenchmarkAuditSearch(b *testing.B) {
	dsn := pgtest.NewDatabase(b)
	s := open(b, dsn)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	sample, err := storetest.LoadAuditLog(b.Context(), db, true, 1_000_000)
	if err == nil {
		// Fresh statistics, as autovacuum would have gathered by then.
		for _, q := range []string{"VACUUM ANALYZE audit_events", "ANALYZE requests"} {
			if _, err = db.ExecContext(b.Context(), q); err != nil {
				break
			}
		}
	}
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchAuditSearch(b, s, sample)
}
