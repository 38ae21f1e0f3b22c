package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// figure is one printed line: what was measured, the measurement, the target.
type figure struct{ what, measured, target string }

// report prints each figure as it comes and all of them at the end, as a
// Markdown table for BENCHMARKS.md.
type report struct {
	figs []figure
	ops  map[string]float64 // ops/s of the HTTP figures, by benchmark name
}

// known says what each benchmark of ./bench measures and its target, by name
// (without the -GOMAXPROCS suffix). Others are printed with no target.
var known = map[string]struct{ what, target string }{
	"BenchmarkHTTP/bare-signer/one-call": {"reference: a bare SSH signer, audit lines without fsync, one call", "-"},
	"BenchmarkHTTP/sqlite/one-call":      {"request→certificate, one call, SQLite", "≥ 3,000/s, p99 < 20 ms, server CPU ≤ 0.6 ms/op"},
	"BenchmarkHTTP/sqlite/two-calls":     {"request→certificate, two calls, SQLite", "≥ 3,000/s, p99 < 20 ms, server CPU ≤ 0.6 ms/op"},
	"BenchmarkHTTP/sqlite/ssh-access":    {"POST /v1/ssh/access, new request each call, SQLite", "within 10% of the two-call path"},
	"BenchmarkHTTP/postgres-1/one-call":  {"request→certificate, one call, PostgreSQL, 1 replica", "≥ 1,500/s"},
	"BenchmarkHTTP/postgres-1/two-calls": {"request→certificate, two calls, PostgreSQL, 1 replica", "≥ 1,500/s"},
	"BenchmarkHTTP/postgres-3/one-call":  {"request→certificate, one call, PostgreSQL, 3 replicas", "no less than 1 replica"},
	"BenchmarkHTTP/postgres-3/two-calls": {"request→certificate, two calls, PostgreSQL, 3 replicas", "no less than 1 replica"},
	"BenchmarkRevocationLag/sqlite":      {"revocation lag, 100,000 active grants, 300 expiries/s, SQLite", "p99 < 1 s"},
	"BenchmarkRevocationLag/postgres":    {"revocation lag, 100,000 active grants, 300 expiries/s, PostgreSQL", "p99 < 1 s"},
	"BenchmarkExpiryBurst/sqlite":        {"burst of 10,000 grants expiring in one second, SQLite", "all revoked < 5 s"},
	"BenchmarkExpiryBurst/postgres":      {"burst of 10,000 grants expiring in one second, PostgreSQL", "all revoked < 5 s"},
	"BenchmarkActiveGrantsMemory":        {"resident memory, 100,000 active grants (whole process)", "< 150 MB"},
	// bench/audit_bench_test.go
	"BenchmarkAudit/verify":            {"`ajar audit verify` of 1,000,000 events, CLI against the server", "< 3 s"},
	"BenchmarkAudit/verify_in_process": {"the same verification, client code in process", "-"},
	"BenchmarkAudit/search_request":    {"audit search for one request in 1,000,000 events", "< 50 ms"},
	"BenchmarkAudit/search_user":       {"audit search for one user in 1,000,000 events", "< 50 ms"},
	"BenchmarkAudit/search_target":     {"audit search for one target in 1,000,000 events", "< 50 ms"},
	"BenchmarkAudit/search_hour":       {"audit search for one hour in 1,000,000 events", "< 50 ms"},
}

func (r *report) add(name string, m map[string]float64) {
	k, ok := known[name]
	if !ok {
		k.what, k.target = name, "-"
	}
	var measured string
	switch {
	case m["no-ssh-cert"] == 1:
		measured = "n/a (server does not return ssh_cert)"
	case hasAll(m, "ops/s", "p50-ms", "p99-ms", "server-cpu-ms/op"):
		r.ops[name] = m["ops/s"]
		measured = fmt.Sprintf("%s/s  p50 %s  p99 %s  server CPU %.2f ms/op", thousands(m["ops/s"]), msText(m["p50-ms"]), msText(m["p99-ms"]), m["server-cpu-ms/op"])
		if kb, ok := m["server-written-kb/op"]; ok {
			measured += fmt.Sprintf(", writes %.1f KB/op", kb)
		}
		if c, ok := m["client-cpu-ms/op"]; ok {
			measured += fmt.Sprintf(", load generator CPU %.2f ms/op", c)
		}
		if two, ok := r.ops[strings.TrimSuffix(name, "ssh-access")+"two-calls"]; ok && strings.HasSuffix(name, "/ssh-access") && two > 0 {
			measured += fmt.Sprintf(" (%+.0f%% of two calls)", 100*(m["ops/s"]/two-1))
		}
	case hasAll(m, "lag-p50-s", "lag-p99-s", "lag-max-s"):
		measured = fmt.Sprintf("p50 %.3f s  p99 %.3f s  max %.3f s", m["lag-p50-s"], m["lag-p99-s"], m["lag-max-s"])
	case hasAll(m, "s-to-revoke-all"):
		measured = fmt.Sprintf("all revoked %.2f s after", m["s-to-revoke-all"])
	case hasAll(m, "s/verify"):
		measured = fmt.Sprintf("%.2f s", m["s/verify"])
	case hasAll(m, "ms/search"):
		measured = fmt.Sprintf("%.1f ms", m["ms/search"])
	case hasAll(m, "RSS-MB"):
		measured = fmt.Sprintf("%.0f MB", m["RSS-MB"])
	default:
		var parts []string
		for unit, v := range m {
			if unit != "ns/op" {
				parts = append(parts, fmt.Sprintf("%g %s", v, unit))
			}
		}
		sort.Strings(parts)
		measured = strings.Join(parts, "  ")
	}
	r.figs = append(r.figs, figure{k.what, measured, k.target})
	fmt.Printf("%-66s %-58s target %s\n", k.what, measured, k.target)
}

func hasAll(m map[string]float64, units ...string) bool {
	for _, u := range units {
		if _, ok := m[u]; !ok {
			return false
		}
	}
	return true
}

func (r *report) table() {
	fmt.Println()
	fmt.Println("| what | measured | target |")
	fmt.Println("|---|---|---|")
	for _, f := range r.figs {
		fmt.Printf("| %s | %s | %s |\n", f.what, f.measured, f.target)
	}
}

// parseBench parses a result line of go test -bench: the benchmark's name
// without its -GOMAXPROCS suffix, and its metrics by unit.
func parseBench(line string) (string, map[string]float64, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return "", nil, false
	}
	name := f[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	metrics := map[string]float64{}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", nil, false
		}
		metrics[f[i+1]] = v
	}
	return name, metrics, true
}

// thousands formats v rounded, with commas: 2950.4 → "2,950".
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// msText formats milliseconds, with one decimal under 10 ms.
func msText(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}
