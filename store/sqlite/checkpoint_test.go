package sqlite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// The WAL is copied back into the database file by the background
// checkpointer soon after commits, not only when a commit passes the writer's
// much higher threshold: the database file grows to hold what was committed.
func TestBackgroundCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	details := []byte(`"` + strings.Repeat("x", 3000) + `"`)
	for i := range 20 { // about 2 MB, far below writerCheckpointPages
		if err := s.Update(t.Context(), func(tx ajar.Tx) error {
			for range 30 {
				if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: time.Now(), Actor: "test", Action: "test.fill", Subject: "s", Details: details}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	for deadline := time.Now().Add(time.Minute); size() < before+1<<20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes (%d before the writes): nothing was checkpointed", size(), before)
		}
	}
}
