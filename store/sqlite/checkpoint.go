package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// Checkpoints.
//
// In WAL mode SQLite appends every committed page to the WAL, and a
// checkpoint copies them back into the database file (and fsyncs it) so that
// the WAL can start over. By default the connection that commits runs a
// checkpoint itself whenever the WAL passes 1,000 pages, inside its commit:
// with group commit that is the writer, holding wmu, so every few hundred
// requests one batch also waited for a whole checkpoint and nobody could
// write meanwhile. Here a goroutine does it on its own connection, soon after
// commits (at most every checkpointEvery), as a PASSIVE checkpoint: it waits
// for no reader or writer and writers go on appending while it copies. The
// writer keeps a much higher threshold of its own (writerCheckpointPages) in
// case the goroutine falls behind. Durability does not change: a checkpoint
// only moves pages that are already durable in the WAL, and SQLite fsyncs the
// database file before the WAL is reused.

const (
	// checkpointEvery is the shortest time between two background
	// checkpoints: the pages written again and again in the meantime (index
	// pages at the end of an index) are copied once.
	checkpointEvery = 200 * time.Millisecond
	// writerCheckpointPages is the WAL size, in pages, at which a commit runs
	// a checkpoint itself (SQLite's wal_autocheckpoint; its default is 1,000).
	writerCheckpointPages = 10000
)

// checkpointer runs PASSIVE checkpoints on db after each wake, until stop is
// closed; then it closes db and closes done.
type checkpointer struct {
	db   *sql.DB
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newCheckpointer(db *sql.DB) *checkpointer {
	c := &checkpointer{db: db, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// kick asks for a checkpoint soon; it never blocks.
func (c *checkpointer) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	defer c.db.Close()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		// A failure (SQLITE_BUSY while another process checkpoints) is left
		// for the next round, and the writer's own threshold bounds the WAL.
		_, _ = c.db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
		t.Reset(checkpointEvery)
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

// close stops the goroutine and waits for it.
func (c *checkpointer) close() {
	close(c.stop)
	<-c.done
}
