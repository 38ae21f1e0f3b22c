// Package bench measures ajar's scheduler and memory in one process: the broker
// with its scheduler, the store (SQLite with synchronous=FULL, or a throw-away
// PostgreSQL 15 cluster with fsync and synchronous commit on), the audit log, the
// HTTP API and the ssh-cert provider. The HTTP figures, with a separate server
// process, are measured by bench/cmd/ajarbench, which also runs these
// benchmarks and prints every figure beside its target: make bench.
//
// Run these alone: go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/
package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// The stores a benchmark runs on (sub-benchmark names).
const (
	onSQLite   = "sqlite"
	onPostgres = "postgres"
)

type fixture struct {
	url          string
	token        string
	svc          *broker.Service
	store        ajar.Store
	targetConfig []byte
	revokes      *revokeLog
}

// openStore opens an empty store of the given kind, closed when b ends.
// PostgreSQL is a cluster of its own with fsync and synchronous commit on.
func openStore(b *testing.B, kind string) ajar.Store {
	b.Helper()
	ctx := context.Background()
	var st ajar.Store
	var err error
	switch kind {
	case onSQLite:
		st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "ajar.db"))
	case onPostgres:
		pg := pgtest.StartT(b, pgtest.Options{Durable: true})
		var dsn string
		if dsn, err = pg.CreateDatabase(ctx, "bench"); err == nil {
			st, err = postgres.Open(ctx, dsn)
		}
	default:
		b.Fatalf("unknown store %q", kind)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func setup(b *testing.B, kind string) *fixture {
	b.Helper()
	ctx := context.Background()
	// One requester stands in for many: the demo policy with the per-user
	// limits at their maxima (the limit checks still run on every request).
	pol, err := policy.Parse(append(policy.Demo(), fmt.Sprintf("\nlimits: {open_requests_per_user: %d, requests_per_minute_per_user: %d, certificates_per_request: %d}\n",
		policy.MaxOpenRequestsPerUser, policy.MaxRequestsPerMinutePerUser, policy.MaxCertificatesPerRequest)...), provider.CheckTarget)
	if err != nil {
		b.Fatal(err)
	}
	st := openStore(b, kind)
	var raw [32]byte
	rand.Read(raw[:])
	mk, err := keys.NewMasterKey(raw[:])
	if err != nil {
		b.Fatal(err)
	}
	signer, err := audit.LoadOrCreateSigner(ctx, ajar.StoreKeys(st), mk, "bench")
	if err != nil {
		b.Fatal(err)
	}
	ca, err := sshcert.LoadOrCreateCA(ctx, ajar.StoreKeys(st), mk)
	if err != nil {
		b.Fatal(err)
	}
	t, _ := pol.Target("demo-ssh")
	set, err := provider.NewSet(map[string]provider.Target{"demo-ssh": {Provider: t.Provider, Config: t.Config}}, provider.Deps{SSHCA: ca})
	if err != nil {
		b.Fatal(err)
	}
	revokes := &revokeLog{}
	provs := &timedProviders{Set: set, log: revokes}
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: provs})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	ids, err := identity.New(identity.Config{Store: st, Policy: pol, Sealer: mk})
	if err != nil {
		b.Fatal(err)
	}
	core := struct { // the broker with the read model beside it, as cmd/ajar serves them
		*broker.Service
		*readmodel.Reader
		*sshCerts
	}{svc, readmodel.New(readmodel.Config{Core: svc, Store: st, Policy: pol, Providers: provs, Signer: signer}), sshaccess.New(svc, st, pol, provs, ca.AuthorizedKey)}
	srv := api.NewServer(core, ids, api.Options{Addr: "127.0.0.1:0"})
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	tok, _, err := ids.CreateToken(ctx, ajar.User{}, "alice@example.com", "bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	return &fixture{url: srv.URL(), token: tok, svc: svc, store: st, targetConfig: t.Config, revokes: revokes}
}

// activeGrant is an active ssh-cert request of alice's on demo-ssh, as the
// broker stores it once granted, expiring at exp.
func (f *fixture) activeGrant(id string, now, exp time.Time) *ajar.Request {
	return &ajar.Request{
		ID: id, Target: "demo-ssh", Requester: "alice@example.com", Reason: "bench",
		Duration: exp.Sub(now), Policy: "engineers-demo-ssh", State: ajar.StateActive,
		CreatedAt: now, UpdatedAt: now, ApprovalDeadline: now, ActivatedAt: &now,
		ExpiresAt: &exp, NextAt: &exp, Approvals: []ajar.Approval{},
		Params: map[string]string{"source_ip": "127.0.0.1"},
		Handle: &ajar.Handle{Provider: "ssh-cert", Version: 1, Grant: ajar.GrantRequest{
			RequestID: id, Target: "demo-ssh", Requester: "alice@example.com", ExpiresAt: exp,
			Config: f.targetConfig}, Data: []byte(`{"principals":["ajar-demo"]}`)},
	}
}

// storeGrants stores n active grants named prefix+number, the i-th expiring at
// expiry(i), in transactions of 5,000.
func (f *fixture) storeGrants(b *testing.B, prefix string, n int, expiry func(i int) time.Time) {
	b.Helper()
	ctx := context.Background()
	for batch := 0; batch < n; batch += 5000 {
		err := f.store.Update(ctx, func(tx ajar.Tx) error {
			now := tx.Now()
			for i := batch; i < min(batch+5000, n); i++ {
				if err := tx.CreateRequest(ctx, f.activeGrant(fmt.Sprintf("%s%06d", prefix, i), now, expiry(i))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// countExpired counts the requests in state expired.
func (f *fixture) countExpired(b *testing.B) int {
	b.Helper()
	var counts map[ajar.State]int
	if err := f.store.View(context.Background(), func(tx ajar.ReadTx) error {
		var err error
		counts, err = tx.CountByState(context.Background())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return counts[ajar.StateExpired]
}

// treeCPU returns the CPU time used so far by this process and every live
// process it started, and theirs (the PostgreSQL cluster's server and its
// backends).
func treeCPU(b *testing.B) time.Duration {
	b.Helper()
	children := map[int][]int{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // ended meanwhile
		}
		// Field 4 (ppid) follows the command name, which is in parentheses.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var sum time.Duration
	for todo := []int{os.Getpid()}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], children[pid]...)
		if d, err := cpuTime(pid); err == nil {
			sum += d
		}
	}
	return sum
}

// scheduled reports whether any request is still scheduled (has a NextAt):
// an active grant, or one being revoked.
func (f *fixture) scheduled(b *testing.B) bool {
	b.Helper()
	var ok bool
	if err := f.store.View(context.Background(), func(tx ajar.ReadTx) error {
		var err error
		_, ok, err = tx.NextDue(context.Background())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return ok
}

// BenchmarkExpiryBurst stores 10,000 active ssh-cert grants that all expire in the
// same second, then reports how long after that second the scheduler had ended
// the last one (state expired, audited; target: all within 5 s), and the CPU
// time this process and its PostgreSQL cluster used meanwhile (cpu-s: on the
// shared machine the time depends on the load, the CPU much less).
func BenchmarkExpiryBurst(b *testing.B) {
	for _, kind := range []string{onSQLite, onPostgres} {
		b.Run(kind, func(b *testing.B) {
			const n = 10000
			for range b.N {
				b.StopTimer()
				f := setup(b, kind)
				exp := time.Now().Add(5 * time.Second).Truncate(time.Second).Add(time.Second)
				f.storeGrants(b, "req_burst", n, func(int) time.Time { return exp })
				if time.Now().After(exp) {
					b.Fatal("storing the grants took past their expiry")
				}
				b.StartTimer()
				time.Sleep(time.Until(exp))
				cpu0 := treeCPU(b)
				// Until nothing is scheduled (a look at the scheduler's
				// index, not a count of every request while it works):
				// every grant has ended, then count them.
				for f.scheduled(b) {
					time.Sleep(20 * time.Millisecond)
				}
				took := time.Since(exp)
				cpu := treeCPU(b) - cpu0
				if got := f.countExpired(b); got != n {
					b.Fatalf("%d of %d grants expired once none was scheduled", got, n)
				}
				b.ReportMetric(took.Seconds(), "s-to-revoke-all")
				b.ReportMetric(cpu.Seconds(), "cpu-s")
			}
		})
	}
}

// BenchmarkRevocationLag keeps 100,000 active grants while a steady stream of
// them expires (lagRate a second for lagWindow; the rest expire in an hour) and
// reports the lag from each expiry to the return of the provider's Revoke:
// p50, p99 and max (target: p99 under 1 s).
func BenchmarkRevocationLag(b *testing.B) {
	const (
		n         = 100000
		lagRate   = 300 // expiries a second
		lagWindow = 20 * time.Second
		steady    = lagRate * int(lagWindow/time.Second)
	)
	for _, kind := range []string{onSQLite, onPostgres} {
		b.Run(kind, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				f := setup(b, kind)
				later := time.Now().Add(time.Hour)
				f.storeGrants(b, "req_later", n-steady, func(int) time.Time { return later })
				start := time.Now().Add(5 * time.Second)
				f.storeGrants(b, "req_steady", steady, func(i int) time.Time {
					return start.Add(time.Duration(i) * time.Second / lagRate)
				})
				if time.Now().After(start) {
					b.Fatal("storing the grants took past the first expiry")
				}
				b.StartTimer()
				deadline := start.Add(lagWindow + 2*time.Minute)
				for f.revokes.count() < steady {
					if time.Now().After(deadline) {
						b.Fatalf("only %d of %d expired grants revoked 2 minutes after the last expiry", f.revokes.count(), steady)
					}
					time.Sleep(100 * time.Millisecond)
				}
				lags := f.revokes.lags()
				b.ReportMetric(lags[len(lags)/2].Seconds(), "lag-p50-s")
				b.ReportMetric(lags[len(lags)*99/100].Seconds(), "lag-p99-s")
				b.ReportMetric(lags[len(lags)-1].Seconds(), "lag-max-s")
			}
		})
	}
}

// BenchmarkActiveGrantsMemory stores 100,000 active grants (expiring in an hour),
// lets the scheduler and the API run over them for a while (listing, the
// next-due look-ups), and reports the process's resident memory (target: under
// 150 MB). The whole benchmark process is measured, so it is an upper bound for a
// server.
func BenchmarkActiveGrantsMemory(b *testing.B) {
	const n = 100000
	for range b.N {
		b.StopTimer()
		f := setup(b, onSQLite)
		ctx := context.Background()
		exp := time.Now().Add(time.Hour)
		f.storeGrants(b, "req_mem", n, func(int) time.Time { return exp })
		b.StartTimer()
		c := api.NewClient(f.url, f.token)
		for range 20 {
			if _, err := c.ListRequests(ctx, readmodel.ListInput{Mine: true, State: ajar.StateActive}); err != nil {
				b.Fatal(err)
			}
			f.svc.Kick()
			time.Sleep(50 * time.Millisecond)
		}
		runtime.GC()
		b.ReportMetric(rssMB(b), "RSS-MB")
	}
}

// rssMB reads this process's resident set size from /proc.
func rssMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// sshCerts is sshaccess.Service (SSH certificates), embedded beside
// *broker.Service under a name of its own, as cmd/ajar serves them.
type sshCerts = sshaccess.Service
