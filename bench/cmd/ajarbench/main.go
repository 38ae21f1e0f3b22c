// Command ajarbench runs the benchmarks of ./bench and prints each figure
// beside its target, then all of them as a Markdown table for BENCHMARKS.md.
// make bench runs it.
//
// The benchmarks (go test -run '^$' -bench . -benchtime 1x ./bench/):
// BenchmarkHTTP builds the real ajar binary (no race detector) and runs `ajar
// serve --dev` as a separate process, so that the server's CPU time, read from
// /proc/PID/stat around each measured window, leaves out the load generator's:
// on SQLite (synchronous=FULL), then on a throw-away PostgreSQL 15 cluster with
// fsync and synchronous commit on, with one and with three replicas. The others
// run the broker and its scheduler in process: revocation lag with 100,000
// active grants, a burst of 10,000 expiries, memory.
//
// Nothing here passes or fails: the figures are what this machine measured, and
// the targets are printed beside them.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.bench, "bench", ".", "which benchmarks of ./bench to run (go test -bench)")
	flag.DurationVar(&o.window, "d", 10*time.Second, "measured window of each HTTP figure")
	flag.IntVar(&o.clients, "clients", 16, "concurrent HTTP clients")
	flag.StringVar(&o.bin, "ajar", "", "ajar binary to run over HTTP (default: build ./cmd/ajar)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "ajarbench:", err)
		os.Exit(1)
	}
}

type options struct {
	bench   string
	window  time.Duration
	clients int
	bin     string
}

func run(ctx context.Context, o options) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if mod := strings.TrimSpace(string(out)); err != nil || mod == "" || mod == os.DevNull {
		return fmt.Errorf("run ajarbench inside the ajar module (go env GOMOD: %v)", err)
	}
	args := []string{"test", "-run", "^$", "-bench", o.bench, "-benchtime", "1x", "-timeout", "60m", "./bench/",
		"-args", "-window", o.window.String(), "-clients", fmt.Sprint(o.clients)}
	if o.bin != "" {
		bin, err := filepath.Abs(o.bin)
		if err != nil {
			return err
		}
		args = append(args, "-ajar", bin)
	}
	fmt.Printf("ajarbench: %d clients, %v windows, %s, load average %s\n", o.clients, o.window, machine(), loadAverage())
	fmt.Printf("go %s (its output on stderr)\n\n", strings.Join(args, " "))
	rep := report{ops: map[string]float64{}}
	defer func() {
		rep.table()
		fmt.Printf("\nload average at the end: %s\n", loadAverage())
	}()
	cmd := exec.CommandContext(ctx, "go", args...)
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
		if name, metrics, ok := parseBench(sc.Text()); ok {
			rep.add(name, metrics)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go test -bench ./bench/: %w", err)
	}
	return nil
}

// machine describes this machine in a few words.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s", runtime.NumCPU(), model, runtime.Version())
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute load averages: other work
// on the machine slows every figure.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
