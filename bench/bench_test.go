// Package bench measures ajar end to end in one process: the HTTP API, the broker,
// the SQLite store with fsync on and the audit log, and the ssh-cert provider.
// Run: go test -run '^$' -bench . -benchtime 5s ./bench/
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/store/sqlite"
)

type fixture struct {
	url   string
	token string
	svc   *broker.Service
}

func setup(b *testing.B) *fixture {
	b.Helper()
	ctx := context.Background()
	pol, err := policy.DemoPolicy(provider.CheckTarget)
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
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: provs, Signer: signer, SSHCA: ca.AuthorizedKey})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	srv := api.NewServer(svc, api.Options{Addr: "127.0.0.1:0"})
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	tok, err := svc.CreateToken(ctx, "alice@example.com", "bench")
	if err != nil {
		b.Fatal(err)
	}
	return &fixture{url: srv.URL(), token: tok, svc: svc}
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
			r, err := c.CreateRequest(ctx, broker.CreateInput{Target: "demo-ssh", Duration: "5m", Reason: "bench",
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
