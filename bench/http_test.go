package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

var (
	httpWindow  = flag.Duration("window", 10*time.Second, "BenchmarkHTTP: measured window of each figure")
	httpClients = flag.Int("clients", 16, "BenchmarkHTTP: concurrent HTTP clients")
	ajarBin     = flag.String("ajar", "", "BenchmarkHTTP: the ajar binary to run (default: build ./cmd/ajar)")
)

// BenchmarkHTTP measures an auto-approved request to its SSH certificate over
// HTTP against `ajar serve --dev` run as a separate process, so that the
// server's CPU time (from /proc/PID/stat, over the measured window) leaves the
// load generator's out: on SQLite, then on a throw-away PostgreSQL 15 cluster
// with fsync and synchronous commit on, with one and with three replicas. Each
// path reports ops/s, p50-ms, p99-ms and server-cpu-ms/op; the one-call path
// reports no-ssh-cert 1 (and nothing else) when the server does not return the
// certificate with the request. Flags (after -args): -window, -clients, -ajar.
func BenchmarkHTTP(b *testing.B) {
	bin := *ajarBin
	if bin == "" { // built into a directory removed when the benchmark ends
		var err error
		if bin, err = build(context.Background(), b.TempDir(), "./cmd/ajar"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("bare-signer", benchBareSigner)
	b.Run("sqlite", func(b *testing.B) {
		dir := b.TempDir()
		config, err := benchPolicy(dir, "")
		if err != nil {
			b.Fatal(err)
		}
		s := startServerB(b, bin, config, filepath.Join(dir, "data"))
		benchPaths(b, []*server{s}, "one-call", "two-calls", "ssh-access")
	})
	pg := func(n int) func(b *testing.B) {
		return func(b *testing.B) {
			cluster := pgtest.StartT(b, pgtest.Options{Durable: true})
			dsn, err := cluster.CreateDatabase(context.Background(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			config, err := benchPolicy(dir, `storage: {driver: postgres, dsn: "`+dsn+`"}`)
			if err != nil {
				b.Fatal(err)
			}
			var key [32]byte
			rand.Read(key[:])
			env := "AJAR_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key[:])
			var servers []*server
			for i := range n {
				servers = append(servers, startServerB(b, bin, config, filepath.Join(dir, fmt.Sprintf("r%d", i)), env))
			}
			benchPaths(b, servers, "one-call", "two-calls")
		}
	}
	b.Run("postgres-1", pg(1))
	b.Run("postgres-3", pg(3))
}

// startServerB starts a server for b and stops it when b ends.
func startServerB(b *testing.B, bin, config, data string, env ...string) *server {
	b.Helper()
	s, err := startServer(context.Background(), bin, config, data, env...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.stop)
	return s
}

// benchBareSigner measures the reference the request → certificate figures
// are read against (bench/cmd/baresigner: a signer with its audit lines and
// nothing else) with the same load generator, users and one-call requests.
func benchBareSigner(b *testing.B) {
	dir := b.TempDir()
	bin, err := build(context.Background(), dir, "./bench/cmd/baresigner")
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, benchUsers)
	for i := range tokens {
		tokens[i] = rand.Text()
	}
	tokPath := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokPath, []byte(strings.Join(tokens, "\n")), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-tokens", tokPath, "-audit", filepath.Join(dir, "audit.log"))
	s, err := startProcess(context.Background(), cmd, "baresigner serving on ")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.stop)
	s.tokens = tokens
	benchPaths(b, []*server{s}, "one-call")
}

// benchPaths measures the named paths ("one-call", "two-calls",
// "ssh-access") against servers, each a sub-benchmark.
func benchPaths(b *testing.B, servers []*server, names ...string) {
	clients := make([]*client, len(servers))
	pids := make([]int, len(servers))
	for i, s := range servers {
		tokens := servers[0].tokens // the same users on every replica
		if len(tokens) == 0 {
			b.Fatalf("no bench users' tokens in %s's dev-tokens.env", s.url)
		}
		c, err := newClient(s.url, tokens, *httpClients)
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		defer c.close() // the connection of the probe below
		pids[i] = s.cmd.Process.Pid
	}
	for i, c := range clients {
		if servers[i].token == "" {
			continue // not ajar: no first use to get over
		}
		if err := c.touchUsers(context.Background(), *httpClients); err != nil {
			b.Fatal(err)
		}
	}
	p := newPaths()
	run := func(name string, op func(context.Context, *client) error) {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				r, err := measure(context.Background(), clients, pids, *httpClients, *httpWindow, op)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.perSecond(), "ops/s")
				b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(r.cpu.Microseconds())/1000/float64(max(r.ops, 1)), "server-cpu-ms/op")
				b.ReportMetric(float64(r.written)/1024/float64(max(r.ops, 1)), "server-written-kb/op")
				b.ReportMetric(float64(r.client.Microseconds())/1000/float64(max(r.ops, 1)), "client-cpu-ms/op")
			}
		})
	}
	for _, name := range names {
		switch name {
		case "one-call":
			if err := p.oneCall(context.Background(), clients[0]); errors.Is(err, errNoCert) {
				b.Run("one-call", func(b *testing.B) {
					b.Logf("one call: %v", err)
					b.ReportMetric(1, "no-ssh-cert")
				})
			} else if err != nil {
				b.Fatalf("one call: %v", err)
			} else {
				run("one-call", p.oneCall)
			}
		case "two-calls":
			run("two-calls", p.twoCalls)
		case "ssh-access":
			run("ssh-access", p.access)
		default:
			b.Fatalf("no path %q", name)
		}
	}
}
