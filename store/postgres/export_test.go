package postgres

import (
	"time"

	"github.com/ajar-dev/ajar"
)

// SetBatchWait changes how long a batch may stay open for more callers.
func SetBatchWait(s *Store, d time.Duration) { s.batchWait = d }

// Pending returns how many Update calls wait to run their fn.
func Pending(s *Store) int64 { return s.pending.Load() }

// Commits returns how many batches s committed.
func Commits(s *Store) int64 { return s.commits.Load() }

// QueuedInView returns how many statements a View's ReadTx holds unsent.
func QueuedInView(tx ajar.ReadTx) int { return len(tx.(*readTx).q.p.q) }

// MaxAuditRows is the most audit events one INSERT carries.
const MaxAuditRows = maxAuditRows
