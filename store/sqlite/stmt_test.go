package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// TestViewPreparesWithoutASecondConnection: a View holds a read connection; if a
// statement it needs for the first time were prepared on the pool, it would wait
// for another connection, and with every connection held by such Views nothing
// could move. With one read connection that is a certain deadlock.
func TestViewPreparesWithoutASecondConnection(t *testing.T) {
	st, err := Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"), WithReadConns(1))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 3 { // the first look prepares, later ones use the cache
		err := st.View(ctx, func(tx ajar.ReadTx) error {
			_, err := tx.GetRequest(ctx, "req_missing")
			return err
		})
		if ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Fatalf("view %d: %v, want not found (a timeout means a deadlock)", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
