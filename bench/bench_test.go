// Package bench measures ajar end to end in one process: the HTTP API, the broker,
// the SQLite store with fsync on and the audit log, and the ssh-cert provider.
// Run: go test -run '^$' -bench . -benchtime 5s ./bench/
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

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
	"github.com/ajar-dev/ajar/store/sqlite"
)

type fixture struct {
	url          string
	token        string
	svc          *broker.Service
	store        *sqlite.Store
	targetConfig []byte
}

func setup(b *testing.B) *fixture {
	b.Helper()
	ctx := context.Background()
	// One requester stands in for many: the demo policy with the per-user
	// limits at their maxima (the limit checks still run on every request).
	pol, err := policy.Parse(append(policy.Demo(), fmt.Sprintf("\nlimits: {open_requests_per_user: %d, requests_per_minute_per_user: %d, certificates_per_request: %d}\n",
		policy.MaxOpenRequestsPerUser, policy.MaxRequestsPerMinutePerUser, policy.MaxCertificatesPerRequest)...), provider.CheckTarget)
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "ajar.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
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
	provs, err := provider.NewSet(map[string]provider.Target{"demo-ssh": {Provider: t.Provider, Config: t.Config}}, provider.Deps{SSHCA: ca})
	if err != nil {
		b.Fatal(err)
	}
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
	return &fixture{url: srv.URL(), token: tok, svc: svc, store: st, targetConfig: t.Config}
}

// BenchmarkRequestToCertificate is the common path: an auto-approved request
// over HTTP, granted at once, then a certificate for it. Reported: requests/s
// and the p50/p99 latency of the whole path.
func BenchmarkRequestToCertificate(b *testing.B) {
	f := setup(b)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	pubLine := ssh.MarshalAuthorizedKey(sshPub)
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := api.NewClient(f.url, f.token)
		ctx := context.Background()
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			r, err := c.CreateRequest(ctx, ajar.CreateInput{Target: "demo-ssh", Duration: "5m", Reason: "bench",
				Params: map[string]string{"source_ip": "127.0.0.1"}})
			if err == nil && r.State == ajar.StateActive {
				_, err = c.IssueSSHCert(ctx, r.ID, pubLine)
			} else if err == nil {
				err = fmt.Errorf("request is %s", r.State)
			}
			if err != nil {
				if failed.Add(1) == 1 {
					b.Log(err)
				}
				continue
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkExpiryBurst stores 10,000 active ssh-cert grants that all expire in the
// same second, then reports how long after that second the scheduler had revoked
// the last one (target: within 10 s).
func BenchmarkExpiryBurst(b *testing.B) {
	const n = 10000
	for range b.N {
		b.StopTimer()
		f := setup(b)
		ctx := context.Background()
		exp := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
		err := f.store.Update(ctx, func(tx ajar.Tx) error {
			now := tx.Now()
			for i := range n {
				id := fmt.Sprintf("req_burst%05d", i)
				r := &ajar.Request{
					ID: id, Target: "demo-ssh", Requester: "alice@example.com", Reason: "burst",
					Duration: exp.Sub(now), Policy: "engineers-demo-ssh", State: ajar.StateActive,
					CreatedAt: now, UpdatedAt: now, ApprovalDeadline: now, ActivatedAt: &now,
					ExpiresAt: &exp, NextAt: &exp, Approvals: []ajar.Approval{},
					Handle: &ajar.Handle{Provider: "ssh-cert", Version: 1, Grant: ajar.GrantRequest{
						RequestID: id, Target: "demo-ssh", Requester: "alice@example.com", ExpiresAt: exp,
						Config: f.targetConfig}, Data: []byte(`{"principals":["ajar-demo"]}`)},
				}
				if err := tx.CreateRequest(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		time.Sleep(time.Until(exp))
		for {
			var counts map[ajar.State]int
			if err := f.store.View(ctx, func(tx ajar.ReadTx) error {
				var err error
				counts, err = tx.CountByState(ctx)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			if counts[ajar.StateExpired] == n {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.ReportMetric(time.Since(exp).Seconds(), "s-to-revoke-all")
	}
}

// BenchmarkActiveGrantsMemory stores 100,000 active grants (expiring in an hour),
// lets the scheduler and the API run over them for a while (listing, metrics
// scrapes, the next-due look-ups), and reports the process's resident memory
// (target: under 150 MB). The whole test binary is measured, so it is an upper
// bound for a server.
func BenchmarkActiveGrantsMemory(b *testing.B) {
	const n = 100000
	for range b.N {
		b.StopTimer()
		f := setup(b)
		ctx := context.Background()
		exp := time.Now().Add(time.Hour)
		for batch := 0; batch < n; batch += 5000 {
			err := f.store.Update(ctx, func(tx ajar.Tx) error {
				now := tx.Now()
				for i := batch; i < batch+5000; i++ {
					id := fmt.Sprintf("req_mem%06d", i)
					r := &ajar.Request{
						ID: id, Target: "demo-ssh", Requester: "alice@example.com", Reason: "memory",
						Duration: time.Hour, Policy: "engineers-demo-ssh", State: ajar.StateActive,
						CreatedAt: now, UpdatedAt: now, ApprovalDeadline: now, ActivatedAt: &now,
						ExpiresAt: &exp, NextAt: &exp, Approvals: []ajar.Approval{},
						Params: map[string]string{"source_ip": "127.0.0.1"},
						Handle: &ajar.Handle{Provider: "ssh-cert", Version: 1, Grant: ajar.GrantRequest{
							RequestID: id, Target: "demo-ssh", Requester: "alice@example.com", ExpiresAt: exp,
							Config: f.targetConfig}, Data: []byte(`{"principals":["ajar-demo"]}`)},
					}
					if err := tx.CreateRequest(ctx, r); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
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
