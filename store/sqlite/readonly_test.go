package sqlite_test

import (
	"bytes"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// fileState is what OpenReadOnly must not change: the database file's bytes
// and modification time, and the names in its directory.
type fileState struct {
	data  []byte
	mtime time.Time
	names []string
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return fileState{data: data, mtime: fi.ModTime(), names: names}
}

func (a fileState) same(t *testing.T, b fileState) {
	t.Helper()
	if !bytes.Equal(a.data, b.data) {
		t.Error("the database file's bytes changed")
	}
	if !a.mtime.Equal(b.mtime) {
		t.Errorf("the database file's mtime changed: %v, was %v", b.mtime, a.mtime)
	}
	if !slices.Equal(a.names, b.names) {
		t.Errorf("the directory holds %v, was %v (no -wal, -shm or journal may appear)", b.names, a.names)
	}
}

// seeded creates a database in its own directory with one request and one
// audit event, closed cleanly (so it has no -wal file).
func seeded(t *testing.T) (path string, ev ajar.AuditEvent) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ajar.db")
	s := open(t, path)
	ev = seed(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, ev
}

func seed(t *testing.T, s ajar.Store) (ev ajar.AuditEvent) {
	t.Helper()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	err := s.Update(t.Context(), func(tx ajar.Tx) error {
		if err := tx.CreateRequest(t.Context(), request("r1", now)); err != nil {
			return err
		}
		var err error
		ev, err = tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: now, Actor: "a", Action: "request.created", Subject: "r1"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// readBack checks that s sees the seeded request and audit event.
func readBack(t *testing.T, s ajar.Store, ev ajar.AuditEvent) {
	t.Helper()
	err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		if _, err := tx.GetRequest(t.Context(), "r1"); err != nil {
			return err
		}
		seq, hash, err := tx.AuditHead(t.Context())
		if err != nil {
			return err
		}
		if seq != ev.Seq || !bytes.Equal(hash, ev.Hash) {
			t.Errorf("audit head %d %x, want %d %x", seq, hash, ev.Seq, ev.Hash)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenReadOnlyChangesNothing: a stopped server's file, as it is and made
// read-only (the bits do not stop root, so the test compares bytes, mtime and
// the directory instead), is read whole and left exactly as it was.
func TestOpenReadOnlyChangesNothing(t *testing.T) {
	for _, chmod := range []bool{false, true} {
		t.Run(map[bool]string{false: "writable", true: "read-only bits"}[chmod], func(t *testing.T) {
			path, ev := seeded(t)
			if chmod {
				dir := filepath.Dir(path)
				if err := os.Chmod(path, 0o444); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, 0o555); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(dir, 0o755) })
			}
			before := stateOf(t, path)

			s, err := sqlite.OpenReadOnly(t.Context(), path)
			if err != nil {
				t.Fatalf("OpenReadOnly: %v", err)
			}
			readBack(t, s, ev)
			if err := s.Update(t.Context(), func(ajar.Tx) error { return nil }); !errors.Is(err, sqlite.ErrReadOnly) {
				t.Errorf("Update on a read-only store: %v, want ErrReadOnly", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			before.same(t, stateOf(t, path))
		})
	}
}

// TestOpenReadOnlyReadsTheLog: with a server running on the file, committed
// transactions are still in the -wal file; a read-only open sees them, does
// not write the database file, and leaves the writer free to go on.
func TestOpenReadOnlyReadsTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	w := open(t, path)
	defer w.Close()
	sqlite.StopCheckpoints(w) // the seed stays in the -wal file, and only the read-only open could change the database file
	ev := seed(t, w)
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("the writer has no -wal file: %v", err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	s, err := sqlite.OpenReadOnly(t.Context(), path)
	if err != nil {
		t.Fatalf("OpenReadOnly: %v", err)
	}
	readBack(t, s, ev)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the database file changed")
	}
	if err := w.Update(t.Context(), func(tx ajar.Tx) error {
		_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: time.Now(), Actor: "a", Action: "request.updated", Subject: "r1"})
		return err
	}); err != nil {
		t.Fatalf("the writer after a read-only open: %v", err)
	}
}

// rawExec changes a database behind the store's back.
func rawExec(t *testing.T, path, query string) {
	t.Helper()
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path}).String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), query); err != nil {
		t.Fatal(err)
	}
}

func TestOpenReadOnlyRefuses(t *testing.T) {
	older, _ := seeded(t)
	rawExec(t, older, `DELETE FROM schema_migrations WHERE name = 'migrations/0004_leases.sql'`)
	newer, _ := seeded(t)
	rawExec(t, newer, `INSERT INTO schema_migrations (name) VALUES ('migrations/9999_future.sql')`)
	foreign := filepath.Join(t.TempDir(), "other.db")
	rawExec(t, foreign, `CREATE TABLE t (x INTEGER)`)
	notDB := filepath.Join(t.TempDir(), "not.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.db")

	for _, c := range []struct{ name, path, want string }{
		{"older schema", older, "older than this ajar (missing migrations 0004_leases.sql)"},
		{"newer schema", newer, "newer than this ajar (unknown migrations 9999_future.sql)"},
		{"not ajar", foreign, "not an ajar database"},
		{"not a database", notDB, ""},
		{"missing", missing, "no such file"},
		{"empty path", "", "path is required"},
		{"memory", ":memory:", "path is required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before fileState
			if c.path != missing && c.path != "" && c.path != ":memory:" {
				before = stateOf(t, c.path)
			}
			s, err := sqlite.OpenReadOnly(t.Context(), c.path)
			if err == nil {
				s.Close()
				t.Fatal("OpenReadOnly succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			switch c.path {
			case missing:
				if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("OpenReadOnly created %s: %v", missing, err)
				}
			case "", ":memory:":
			default:
				before.same(t, stateOf(t, c.path))
			}
		})
	}
}
