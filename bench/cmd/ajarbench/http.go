package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// Targets, as in BENCHMARKS.md.
const (
	targetSQLite = "≥ 3,000/s, p99 < 20 ms, server CPU ≤ 0.6 ms/op"
	targetPG1    = "≥ 1,500/s"
	targetPG3    = "no less than 1 replica"
	targetAccess = "within 10% of the two-call path"
	naNoCert     = "n/a (server does not return ssh_cert)"
)

// benchSQLite measures the three request-to-certificate paths on one server
// with its SQLite store.
func benchSQLite(ctx context.Context, o options, tmp string, rep *report) error {
	dir := filepath.Join(tmp, "sqlite")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	config, err := benchPolicy(dir, "")
	if err != nil {
		return err
	}
	s, err := startServer(ctx, o.bin, config, filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	defer s.stop()
	return benchPaths(ctx, o, []*server{s}, "SQLite", targetSQLite, rep, true)
}

// benchPaths measures the paths against servers and adds their figures to rep.
func benchPaths(ctx context.Context, o options, servers []*server, store, target string, rep *report, withAccess bool) error {
	clients := make([]*client, len(servers))
	pids := make([]int, len(servers))
	for i, s := range servers {
		clients[i] = newClient(s.url, servers[0].token, o.clients)
		pids[i] = s.cmd.Process.Pid
	}
	what := fmt.Sprintf("%s, %d clients", store, o.clients)
	p := newPaths()
	if err := p.oneCall(ctx, clients[0]); errors.Is(err, errNoCert) {
		rep.add("request→certificate, one call, "+what, naNoCert, target)
	} else if err != nil {
		return fmt.Errorf("one call: %w", err)
	} else {
		r, err := measure(ctx, clients, pids, o.clients, o.window, p.oneCall)
		if err != nil {
			return fmt.Errorf("one call, %s: %w", store, err)
		}
		rep.add("request→certificate, one call, "+what, r.String(), target)
	}
	two, err := measure(ctx, clients, pids, o.clients, o.window, p.twoCalls)
	if err != nil {
		return fmt.Errorf("two calls, %s: %w", store, err)
	}
	rep.add("request→certificate, two calls, "+what, two.String(), target)
	if !withAccess {
		return nil
	}
	acc, err := measure(ctx, clients, pids, o.clients, o.window, p.access)
	if err != nil {
		return fmt.Errorf("ssh/access, %s: %w", store, err)
	}
	rep.add("POST /v1/ssh/access, new request each call, "+what,
		fmt.Sprintf("%s (%+.0f%% of two calls)", acc, 100*(acc.perSecond()/two.perSecond()-1)), targetAccess)
	return nil
}

// benchPostgres measures the request-to-certificate paths on one, then three,
// replicas sharing a database of a throw-away PostgreSQL 15 cluster with fsync
// and synchronous commit on. The server CPU is the replicas' (not PostgreSQL's).
func benchPostgres(ctx context.Context, o options, tmp string, rep *report) error {
	pg, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		return err
	}
	defer pg.Stop()
	var key [32]byte
	rand.Read(key[:])
	env := "AJAR_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key[:])
	for _, n := range []int{1, 3} {
		dsn, err := pg.CreateDatabase(ctx, "bench")
		if err != nil {
			return err
		}
		dir := filepath.Join(tmp, fmt.Sprintf("pg%d", n))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		config, err := benchPolicy(dir, `storage: {driver: postgres, dsn: "`+dsn+`"}`)
		if err != nil {
			return err
		}
		var servers []*server
		for i := range n {
			s, err := startServer(ctx, o.bin, config, filepath.Join(dir, fmt.Sprintf("r%d", i)), env)
			if err != nil {
				for _, s := range servers {
					s.stop()
				}
				return err
			}
			servers = append(servers, s)
		}
		target := targetPG1
		if n > 1 {
			target = targetPG3
		}
		err = benchPaths(ctx, o, servers, fmt.Sprintf("PostgreSQL, %d replica(s)", n), target, rep, false)
		for _, s := range servers {
			s.stop()
		}
		if err != nil {
			return err
		}
	}
	return nil
}
