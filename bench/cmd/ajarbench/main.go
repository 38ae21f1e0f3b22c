// Command ajarbench measures ajar against the performance targets of
// BENCHMARKS.md and prints each figure beside its target. make bench runs it.
//
// It builds the real ajar binary (no race detector) and runs `ajar serve --dev`
// as a separate process, so the server's CPU time, read from /proc/PID/stat
// around each measured window, does not include the load generator's: first on
// SQLite (synchronous=FULL), then on a throw-away PostgreSQL 15 cluster with fsync
// and synchronous commit on, with one and with three replicas. Then it runs the
// in-process benchmarks of ./bench (revocation lag, expiry burst, memory) with
// go test and prints their figures the same way.
//
// Nothing here passes or fails: the figures are what this machine measured, and
// the targets are printed beside them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.DurationVar(&o.window, "d", 10*time.Second, "measured window of each HTTP figure")
	flag.IntVar(&o.clients, "clients", 16, "concurrent HTTP clients")
	flag.StringVar(&o.bin, "ajar", "", "ajar binary to run (default: build ./cmd/ajar)")
	flag.StringVar(&o.only, "only", "sqlite,postgres,scheduler", "sections to run, comma-separated: sqlite, postgres, scheduler")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "ajarbench:", err)
		os.Exit(1)
	}
}

type options struct {
	window  time.Duration
	clients int
	bin     string
	only    string
}

func (o options) section(name string) bool {
	for s := range strings.SplitSeq(o.only, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

// figure is one printed line: what was measured, the measurement, the target.
type figure struct{ what, measured, target string }

// report prints each figure as it comes and all of them at the end, as a
// Markdown table for BENCHMARKS.md.
type report struct{ figs []figure }

func (r *report) add(what, measured, target string) {
	r.figs = append(r.figs, figure{what, measured, target})
	fmt.Printf("%-62s %-58s target %s\n", what, measured, target)
}

func (r *report) table() {
	fmt.Println()
	fmt.Println("| what | measured | target |")
	fmt.Println("|---|---|---|")
	for _, f := range r.figs {
		fmt.Printf("| %s | %s | %s |\n", f.what, f.measured, f.target)
	}
}

func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "ajarbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.bin == "" && (o.section("sqlite") || o.section("postgres")) {
		if o.bin, err = build(ctx, tmp); err != nil {
			return err
		}
	}
	fmt.Printf("ajarbench: %d clients, %v windows, %s, load average %s\n\n", o.clients, o.window, machine(), loadAverage())
	var rep report
	defer func() {
		rep.table()
		fmt.Printf("\nload average at the end: %s\n", loadAverage())
	}()
	if o.section("sqlite") {
		if err := benchSQLite(ctx, o, tmp, &rep); err != nil {
			return err
		}
	}
	if o.section("postgres") {
		if err := benchPostgres(ctx, o, tmp, &rep); err != nil {
			return err
		}
	}
	if o.section("scheduler") {
		if err := benchScheduler(ctx, &rep); err != nil {
			return err
		}
	}
	return nil
}
