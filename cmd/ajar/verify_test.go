package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// snapshot is what "audit verify --db" must leave unchanged.
func snapshot(t *testing.T, path string) (data []byte, mtime time.Time, names []string) {
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
	for _, e := range es {
		names = append(names, e.Name())
	}
	return data, fi.ModTime(), names
}

// freeze makes path and its directory unwritable. Permission bits do not stop
// root, so as root it also sets the immutable attribute (chattr +i), which does.
func freeze(t *testing.T, path string) {
	t.Helper()
	dir := filepath.Dir(path)
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	if os.Geteuid() != 0 {
		return
	}
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Fatalf("chattr (e2fsprogs) is required to make a file read-only for root: %v", err)
	}
	for _, p := range []string{path, dir} {
		if out, err := exec.Command(chattr, "+i", p).CombinedOutput(); err != nil {
			t.Fatalf("chattr +i %s (the test directory must be on a file system with the immutable attribute, such as ext4): %v\n%s", p, err, out)
		}
		t.Cleanup(func() { exec.Command(chattr, "-i", p).Run() })
	}
	// The attribute must hold even for root, or the test proves nothing.
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatalf("%s is still writable after chattr +i", path)
	}
}

// TestAuditVerifyDBReadOnly: "ajar audit verify --db" on a copy of a stopped
// server's database that cannot be written succeeds, and leaves the file
// byte-identical, with the same mtime, and no -wal or -shm beside it.
func TestAuditVerifyDBReadOnly(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ajar.db")
	st, err := sqlite.Open(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	const events = 5
	for i := range events {
		err := st.Update(t.Context(), func(tx ajar.Tx) error {
			_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{
				Time: time.Now().UTC(), Actor: "alice@example.com", Action: "request.created", Subject: fmt.Sprintf("r%d", i),
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	freeze(t, db)
	data, mtime, names := snapshot(t, db)

	r := runRaw(t, "audit", "verify", "--db", db)
	r.want(t, 0)
	if want := fmt.Sprintf("ok: %d events\n", events); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	data2, mtime2, names2 := snapshot(t, db)
	if !bytes.Equal(data, data2) {
		t.Error("audit verify --db changed the database file's bytes")
	}
	if !mtime.Equal(mtime2) {
		t.Errorf("audit verify --db changed the database file's mtime: %v, was %v", mtime2, mtime)
	}
	if !slices.Equal(names, names2) {
		t.Errorf("audit verify --db left %v in the directory, was %v", names2, names)
	}
}
