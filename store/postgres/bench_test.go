package postgres_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// BenchmarkUpdateCreateRequestWithAudit measures committed Updates per second,
// each creating a request and appending its audit event, on a cluster of its own
// with fsync and synchronous_commit on: one writer, 32 writers with and without
// group commit, and 32 writers spread over 3 Stores (3 replicas) on one
// database.
//
//	go test -run '^$' -bench UpdateCreateRequestWithAudit -benchtime 5s ./store/postgres/
func BenchmarkUpdateCreateRequestWithAudit(b *testing.B) {
	c := pgtest.StartT(b, pgtest.Options{Durable: true})
	for _, bc := range []struct {
		name     string
		parallel int // goroutines per GOMAXPROCS; 0 for one writer
		maxBatch int
		replicas int
	}{
		{"serial", 0, postgres.DefaultMaxBatch, 1},
		{"parallel32", 16, postgres.DefaultMaxBatch, 1},
		{"parallel32-nobatch", 16, 1, 1},
		{"parallel32-3replicas", 16, postgres.DefaultMaxBatch, 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dsn, err := c.CreateDatabase(b.Context(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			var stores []ajar.Store
			for range bc.replicas {
				stores = append(stores, open(b, dsn, postgres.WithMaxBatch(bc.maxBatch)))
			}
			now := time.Now().UTC()
			var n atomic.Int64
			var mu sync.Mutex
			var latencies []time.Duration
			op := func() {
				i := n.Add(1)
				id := fmt.Sprintf("req-%09d", i)
				start := time.Now()
				err := stores[int(i)%len(stores)].Update(b.Context(), func(tx ajar.Tx) error {
					if err := tx.CreateRequest(b.Context(), request(id, now, nil)); err != nil {
						return err
					}
					_, err := tx.AppendAudit(b.Context(), ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "request.created", Subject: id,
						Details: []byte(`{"target":"web","duration":"1h0m0s"}`)})
					return err
				})
				d := time.Since(start)
				if err != nil {
					b.Error(err) // not Fatal: op also runs on RunParallel's goroutines
				}
				mu.Lock()
				latencies = append(latencies, d)
				mu.Unlock()
			}
			b.ReportAllocs()
			b.ResetTimer()
			if bc.parallel == 0 {
				for b.Loop() {
					op()
				}
			} else {
				b.SetParallelism(bc.parallel)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						op()
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
