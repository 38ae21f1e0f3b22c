package postgres

import "time"

// SetBatchWait changes how long a batch may stay open for more callers.
func SetBatchWait(s *Store, d time.Duration) { s.batchWait = d }

// Pending returns how many Update calls wait to run their fn.
func Pending(s *Store) int64 { return s.pending.Load() }

// Commits returns how many batches s committed.
func Commits(s *Store) int64 { return s.commits.Load() }
