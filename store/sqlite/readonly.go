package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrReadOnly is returned by Update on a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("sqlite: store is opened read-only")

// OpenReadOnly opens the existing database file at path for reading only, for
// tools such as "ajar audit verify --db" that must never change the file they
// inspect. Unlike Open it creates no file, runs no migration, leaves the
// journal mode alone, never writes, and its Update returns ErrReadOnly.
//
// Without a write-ahead log next to it (path-wal: the file of a stopped server
// or a copy of one) the file is opened immutable: SQLite takes no lock and
// creates no -wal or -shm file. With one (a server is running on it, or it
// stopped without cleaning up) the log holds committed transactions, so the
// file is opened read-only through it instead: SQLite reads the log and may
// update its -shm index, but a read-only connection never writes the database
// file or the log.
//
// It fails if path does not exist, is not an ajar database, or its schema is
// not the one this version of ajar expects (older: open it once with "ajar
// serve" to migrate it, on a copy if it must stay unchanged; newer: use the
// matching ajar).
func OpenReadOnly(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("sqlite: open read-only: a database file path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: open %s read-only: not a regular file", path)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	switch _, err := os.Stat(abs + "-wal"); {
	case errors.Is(err, fs.ErrNotExist):
		q.Set("immutable", "1")
	case err != nil:
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_query_only", "1")

	s := &Store{now: time.Now, maxBatch: DefaultMaxBatch, readOnly: true}
	dsn := (&url.URL{Scheme: "file", Path: abs}).String() + "?" + q.Encode()
	if s.readDB, err = sql.Open("sqlite", dsn); err != nil {
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	}
	s.readDB.SetMaxOpenConns(DefaultReadConns)
	s.readDB.SetMaxIdleConns(DefaultReadConns)
	for _, o := range opts {
		o(s)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.checkSchema(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", path, err)
	}
	return s, nil
}

// checkSchema fails unless the database has applied exactly the migrations
// embedded in this binary.
func (s *Store) checkSchema(ctx context.Context) error {
	var n int
	if err := s.readDB.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("not an ajar database (it has no schema_migrations table)")
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT name FROM schema_migrations`)
	if err != nil {
		return err
	}
	defer rows.Close()
	applied := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		applied[name] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	// migrate records each migration by its embedded path, "migrations/NAME.sql".
	var missing []string
	for _, name := range names {
		if !applied[name] {
			missing = append(missing, strings.TrimPrefix(name, "migrations/"))
		}
		delete(applied, name)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the database schema is older than this ajar (missing migrations %s): it is opened read-only, so it is not migrated; start ajar serve on it (or on a copy) once to migrate it", strings.Join(missing, ", "))
	}
	if len(applied) > 0 {
		unknown := make([]string, 0, len(applied))
		for name := range applied {
			unknown = append(unknown, strings.TrimPrefix(name, "migrations/"))
		}
		slices.Sort(unknown)
		return fmt.Errorf("the database schema is newer than this ajar (unknown migrations %s): use the ajar version that wrote it", strings.Join(unknown, ", "))
	}
	return nil
}
