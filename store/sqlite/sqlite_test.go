package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/sqlite"
	"github.com/ajar-dev/ajar/store/storetest"
)

func open(t testing.TB, path string, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) ajar.Store {
		return open(t, filepath.Join(t.TempDir(), "ajar.db"), sqlite.WithNow(now))
	})
}

// Group commit off: every Update is its own transaction.
func TestConformanceNoBatching(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) ajar.Store {
		return open(t, filepath.Join(t.TempDir(), "ajar.db"), sqlite.WithNow(now), sqlite.WithMaxBatch(1))
	})
}

func request(id string, now time.Time) *ajar.Request {
	next := now.Add(time.Hour)
	return &ajar.Request{
		ID: id, Target: "web", Requester: "alice", Reason: "r", Duration: time.Hour,
		Policy: "p", State: ajar.StateActive, CreatedAt: now, UpdatedAt: now,
		ApprovalDeadline: now, ExpiresAt: &next, NextAt: &next,
		Handle: &ajar.Handle{Provider: "ssh-cert", Version: 1, Grant: ajar.GrantRequest{RequestID: id, ExpiresAt: next}},
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub dir?#%", "ajar.db") // characters a URI must escape
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	s := open(t, path)
	var ev ajar.AuditEvent
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
	for _, f := range []string{path, path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600 (it holds sealed keys and token hashes)", f, fi.Mode().Perm())
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Update(t.Context(), func(ajar.Tx) error { return nil }); err == nil {
		t.Fatal("Update after Close succeeded")
	}

	// Reopening runs no migration twice and sees everything.
	s = open(t, path)
	defer s.Close()
	err = s.View(t.Context(), func(tx ajar.ReadTx) error {
		r, err := tx.GetRequest(t.Context(), "r1")
		if err != nil {
			return err
		}
		if !r.NextAt.Equal(now.Add(time.Hour)) || r.Version != 1 {
			t.Errorf("reopened request: %+v", r)
		}
		seq, hash, err := tx.AuditHead(t.Context())
		if err != nil {
			return err
		}
		if seq != 1 || string(hash) != string(ev.Hash) {
			t.Errorf("reopened audit head %d %x, want 1 %x", seq, hash, ev.Hash)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKillDurability commits from a child process that is then killed with
// SIGKILL the moment Update returns; every write Update reported as committed must
// be there when the parent reopens the file.
func TestKillDurability(t *testing.T) {
	if path := os.Getenv("AJAR_SQLITE_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "ajar.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKillDurability$")
	cmd.Env = append(os.Environ(), "AJAR_SQLITE_KILL_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var committed []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			committed = append(committed, id)
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
	if len(committed) == 0 {
		t.Fatal("child reported no commits")
	}

	s := open(t, path)
	defer s.Close()
	err = s.View(t.Context(), func(tx ajar.ReadTx) error {
		for _, id := range committed {
			if _, err := tx.GetRequest(t.Context(), id); err != nil {
				t.Errorf("committed request %s lost: %v", id, err)
			}
		}
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{Limit: 100000})
		if err != nil {
			return err
		}
		if len(evs) < len(committed) {
			t.Errorf("%d audit events, %d commits reported", len(evs), len(committed))
		}
		for i, e := range evs {
			if e.Seq != int64(i+1) || string(e.ComputeHash()) != string(e.Hash) {
				t.Fatalf("audit chain broken at %d", i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commits reported before SIGKILL, all present", len(committed))
}

// killChild commits from several goroutines, reports each commit on stdout, and
// kills itself while writes are still in flight.
func killChild(path string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var n int
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Update(ctx, func(tx ajar.Tx) error {
					if err := tx.CreateRequest(ctx, request(id, time.Now())); err != nil {
						return err
					}
					_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: time.Now(), Actor: "a", Action: "x", Subject: id})
					return err
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("committed %s\n", id) // unbuffered: written before the next commit starts
				n++
				if n == 200 {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
				mu.Unlock()
			}
		}()
	}
	select {}
}

// The audit table refuses changes even from a hand-typed statement.
func TestAuditAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	s := open(t, path)
	err := s.Update(t.Context(), func(tx ajar.Tx) error {
		_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: time.Now(), Actor: "a", Action: "x", Subject: "s"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE audit_events SET actor = 'mallory'`,
		`DELETE FROM audit_events`,
		`INSERT OR REPLACE INTO audit_events (seq, time, actor, action, subject, hash) VALUES (1, 't', 'm', 'x', 's', x'00')`,
	} {
		if _, err := db.ExecContext(t.Context(), q); err == nil {
			t.Errorf("%s: succeeded", q)
		}
	}
	var actor string
	if err := db.QueryRowContext(t.Context(), `SELECT actor FROM audit_events WHERE seq = 1`).Scan(&actor); err != nil || actor != "a" {
		t.Fatalf("audit event changed: %q %v", actor, err)
	}
}

// A Tx kept past its function must not write into someone else's transaction.
func TestTxUnusableAfterFn(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "ajar.db"))
	defer s.Close()
	var leaked ajar.Tx
	if err := s.Update(t.Context(), func(tx ajar.Tx) error { leaked = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := leaked.CreateRequest(t.Context(), request("late", time.Now())); err == nil {
		t.Fatal("CreateRequest on a finished Tx succeeded")
	}
	var leakedRead ajar.ReadTx
	if err := s.View(t.Context(), func(tx ajar.ReadTx) error { leakedRead = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := leakedRead.GetRequest(t.Context(), "late"); err == nil || ajar.ErrorCode(err) == ajar.ENOTFOUND {
		t.Fatalf("GetRequest on a finished ReadTx: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := sqlite.Open(t.Context(), ""); err == nil {
		t.Error("Open with an empty path succeeded")
	}
	if _, err := sqlite.Open(t.Context(), ":memory:"); err == nil {
		t.Error("Open(:memory:) succeeded")
	}
	if _, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing-dir", "ajar.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
	notDB := filepath.Join(t.TempDir(), "not.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(t.Context(), notDB); err == nil {
		t.Error("Open of a non-database file succeeded")
	}
}

// BenchmarkUpdateCreateRequestWithAudit measures committed Updates per second, each
// creating a request and appending its audit event, with fsync on.
func BenchmarkUpdateCreateRequestWithAudit(b *testing.B) {
	for _, bc := range []struct {
		name     string
		parallel int // goroutines per GOMAXPROCS; 0 for one writer
		maxBatch int
	}{
		{"serial", 0, sqlite.DefaultMaxBatch},
		{"parallel32", 16, sqlite.DefaultMaxBatch},
		{"parallel32-nobatch", 16, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "ajar.db"), sqlite.WithMaxBatch(bc.maxBatch))
			defer s.Close()
			now := time.Now()
			var mu sync.Mutex
			var n int
			nextID := func() string {
				mu.Lock()
				defer mu.Unlock()
				n++
				return fmt.Sprintf("req-%09d", n)
			}
			var latencies []time.Duration
			op := func() {
				start := time.Now()
				defer func() {
					d := time.Since(start)
					mu.Lock()
					latencies = append(latencies, d)
					mu.Unlock()
				}()
				id := nextID()
				err := s.Update(b.Context(), func(tx ajar.Tx) error {
					if err := tx.CreateRequest(b.Context(), request(id, now)); err != nil {
						return err
					}
					_, err := tx.AppendAudit(b.Context(), ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "request.created", Subject: id,
						Details: []byte(`{"target":"web","duration":"1h0m0s"}`)})
					return err
				})
				if err != nil {
					b.Error(err) // not Fatal: op also runs on RunParallel's goroutines
				}
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

// BenchmarkClaimDue100k claims 100 due requests at a time out of 100,000 that are
// all due, the scheduler's query when a burst of grants expires together.
func BenchmarkClaimDue100k(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "ajar.db"))
	defer s.Close()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 100000
	for i := 0; i < n; i += 5000 {
		err := s.Update(b.Context(), func(tx ajar.Tx) error {
			for j := i; j < i+5000; j++ {
				r := request(fmt.Sprintf("req-%06d", j), base)
				next := base.Add(time.Duration(j) * time.Millisecond)
				r.NextAt = &next
				if err := tx.CreateRequest(b.Context(), r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	now := base.Add(1000 * time.Hour)
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		i++
		// Leases stay before now, so the queue rotates and every claim finds work.
		lease := base.Add(100*time.Hour + time.Duration(i)*time.Second)
		var due []*ajar.Request
		err := s.Update(b.Context(), func(tx ajar.Tx) error {
			if _, _, err := tx.NextDue(b.Context()); err != nil {
				return err
			}
			var err error
			due, err = tx.ClaimDue(b.Context(), now, lease, 100)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(due) != 100 {
			b.Fatalf("claimed %d", len(due))
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "claims/s")
}

// fn leaving through runtime.Goexit (t.FailNow inside fn does that) must not keep
// the writer.
func TestUpdateGoexit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "ajar.db"))
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Update(t.Context(), func(tx ajar.Tx) error {
			if err := tx.CreateRequest(t.Context(), request("gone", time.Now())); err != nil {
				t.Error(err)
			}
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	ch := make(chan error, 1)
	go func() {
		ch <- s.Update(t.Context(), func(tx ajar.Tx) error {
			_, err := tx.GetRequest(t.Context(), "gone")
			if ajar.ErrorCode(err) != ajar.ENOTFOUND {
				return fmt.Errorf("write of an exited fn is visible: %v", err)
			}
			return tx.CreateRequest(t.Context(), request("after", time.Now()))
		})
	}()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writer still held after fn called runtime.Goexit")
	}
}

// Close while writers are running: every Update returns, and every one that
// returned nil is on disk.
func TestCloseDuringUpdates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ajar.db")
	s := open(t, path)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var committed []string
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Update(t.Context(), func(tx ajar.Tx) error {
					return tx.CreateRequest(t.Context(), request(id, time.Now()))
				})
				if err != nil {
					return
				}
				mu.Lock()
				committed = append(committed, id)
				mu.Unlock()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("Updates did not return after Close")
	}

	s = open(t, path)
	defer s.Close()
	err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		for _, id := range committed {
			if _, err := tx.GetRequest(t.Context(), id); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commits before Close", len(committed))
}
