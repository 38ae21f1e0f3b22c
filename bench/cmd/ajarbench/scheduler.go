package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// benchFigure says how to print one metric of an in-process benchmark of ./bench.
type benchFigure struct {
	what, target string
	metrics      []string // the units it reports, printed in this order
}

// known are the benchmarks of ./bench with a target, by name (without the -N
// GOMAXPROCS suffix). Others are printed with no target.
var known = map[string]benchFigure{
	"BenchmarkRevocationLag/sqlite":   {"revocation lag, 100,000 active grants, 300 expiries/s, SQLite", "p99 < 1 s", []string{"lag-p50-s", "lag-p99-s", "lag-max-s"}},
	"BenchmarkRevocationLag/postgres": {"revocation lag, 100,000 active grants, 300 expiries/s, PostgreSQL", "p99 < 1 s", []string{"lag-p50-s", "lag-p99-s", "lag-max-s"}},
	"BenchmarkExpiryBurst/sqlite":     {"burst of 10,000 grants expiring in one second, SQLite", "all revoked < 5 s", []string{"s-to-revoke-all"}},
	"BenchmarkExpiryBurst/postgres":   {"burst of 10,000 grants expiring in one second, PostgreSQL", "all revoked < 5 s", []string{"s-to-revoke-all"}},
	"BenchmarkActiveGrantsMemory":     {"resident memory, 100,000 active grants (whole process)", "< 150 MB", []string{"RSS-MB"}},
}

// labels name the units in the printed figures.
var labels = map[string]string{
	"lag-p50-s": "p50 %.3f s", "lag-p99-s": "p99 %.3f s", "lag-max-s": "max %.3f s",
	"s-to-revoke-all": "all revoked %.2f s after", "RSS-MB": "%.0f MB",
}

// benchScheduler runs the benchmarks of ./bench once each (go test -bench,
// their output on stderr as they go) and adds their figures to rep.
func benchScheduler(ctx context.Context, rep *report) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchtime", "1x", "-timeout", "60m", "./bench/")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(io.TeeReader(stdout, os.Stderr))
	for sc.Scan() {
		name, metrics, ok := parseBench(sc.Text())
		if !ok {
			continue
		}
		f, ok := known[name]
		if !ok {
			var parts []string
			for unit, v := range metrics {
				if unit != "ns/op" {
					parts = append(parts, fmt.Sprintf("%g %s", v, unit))
				}
			}
			rep.add(name, strings.Join(parts, "  "), "-")
			continue
		}
		var parts []string
		for _, unit := range f.metrics {
			if v, ok := metrics[unit]; ok {
				parts = append(parts, fmt.Sprintf(labels[unit], v))
			}
		}
		rep.add(f.what, strings.Join(parts, "  "), f.target)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go test -bench ./bench/: %w", err)
	}
	return nil
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
