package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/ajar-dev/ajar/store/sqlite"
	"github.com/ajar-dev/ajar/store/storetest"
)

// BenchmarkAuditSearch searches a log of 1,000,000 events (issue 14: < 50 ms
// for one request, user or target) for the newest page of 50 events, as the
// web page does, and reports ms/search. Building the log takes a while; run it
// alone: go test -run '^$' -bench AuditSearch ./store/sqlite/
func BenchmarkAuditSearch(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ajar.db")
	open(b, path).Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	// A fixture, not the store: nothing here needs to survive a crash.
	if _, err := db.ExecContext(b.Context(), "PRAGMA cache_size = -500000; PRAGMA synchronous = OFF; PRAGMA journal_mode = OFF"); err != nil {
		b.Fatal(err)
	}
	sample, err := storetest.LoadAuditLog(b.Context(), db, false, 1_000_000)
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	s, err := sqlite.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchAuditSearch(b, s, sample)
}
