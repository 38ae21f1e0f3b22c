package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/credentials"
	"github.com/ajar-dev/ajar/readmodel"
)

// dbCommands returns the database commands: ajar db-credentials, ajar psql and
// ajar mysql.
func dbCommands(e *cliEnv) []*cobra.Command {
	return []*cobra.Command{newDBCredentialsCmd(e), newDBClientCmd(e, psqlClient), newDBClientCmd(e, mysqlClient)}
}

func newDBCredentialsCmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "db-credentials ID [-o json]",
		Short: "Get a database login for your active request (postgres-role, mysql-user), shown once",
		Long: `Get a database login for your active request on a postgres-role or mysql-user
target. Each call sets a new random password on the request's login (the one
before stops working) and prints it once; ajar stores none and audits only the
user name. The DSN printed has no password: give it with PGPASSWORD, MYSQL_PWD
or at the client's prompt. ajar psql and ajar mysql do all of this for you.`,
		Example: `  ajar db-credentials req_4k2... -o json`,
		Args:    argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			l, err := c.IssueDBLogin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if out == outputJSON {
				return writeJSON(e.stdout, l)
			}
			_, err = fmt.Fprintf(e.stdout, "# ajar: login for request %s (target %s), expires %s\nuser:     %s\npassword: %s\nhost:     %s\nport:     %d\ndatabase: %s\ndsn:      %s\n",
				clean(l.RequestID), clean(l.Target), e.fmtTime(l.ExpiresAt), clean(l.User), clean(l.Password),
				clean(l.Host), l.Port, clean(l.Database), clean(l.DSN))
			return err
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

// dbClient is a database command-line client ajar can run with a login.
type dbClient struct {
	name, program, provider string
	// run starts program with the login; its error is the program's exit status.
	run func(e *cliEnv, bin string, args []string, l *credentials.DBLoginOutput) error
}

var (
	psqlClient  = dbClient{name: "psql", program: "psql", provider: "postgres-role", run: runPsql}
	mysqlClient = dbClient{name: "mysql", program: "mysql", provider: "mysql-user", run: runMySQL}
)

// dbOptions are the flags of ajar psql and ajar mysql.
type dbOptions struct {
	duration, reason, ticket string
	params                   []string
	program                  string
	timeout                  time.Duration
}

func newDBClientCmd(e *cliEnv, dc dbClient) *cobra.Command {
	var o dbOptions
	cmd := &cobra.Command{
		Use:   dc.name + " TARGET [-- " + strings.ToUpper(dc.name) + " ARGS]",
		Short: "Get a login on a " + dc.provider + " target and run " + dc.name + " with it",
		Long: `Get a database login on TARGET and run ` + dc.name + ` with it, in one command.

ajar ` + dc.name + ` reuses your request for TARGET while it is active (or waits on your
pending one); otherwise it asks for access with --for, --reason and --ticket, asking
for a reason on the terminal when the policy wants one. It waits for approval if
needed, gets a fresh password (shown to nobody), runs ` + dc.name + ` with it and the
server, user and database, and leaves nothing on disk.`,
		Example: "  ajar " + dc.name + " prod-db\n  ajar " + dc.name + " prod-db --for 30m --reason \"check orders\" -- " + map[string]string{"psql": "-c 'SELECT 1'", "mysql": "-e 'SELECT 1'"}[dc.name],
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("", "missing argument TARGET")
			}
			if strings.TrimSpace(args[0]) == "" {
				return usageErrorf("", "argument TARGET must not be empty")
			}
			if d := cmd.ArgsLenAtDash(); len(args) > 1 && d != 1 {
				return usageErrorf("", "unexpected argument %q before --", args[1])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.runDBClient(cmd.Context(), cmd, dc, o, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.duration, "for", "", "how long the access lasts when a new request is needed, such as 30m (default: the policy's default)")
	f.StringVar(&o.reason, "reason", "", "why you need the access (asked on the terminal when the policy requires one)")
	f.StringVar(&o.ticket, "ticket", "", "ticket or incident id")
	f.StringArrayVar(&o.params, "param", nil, "target parameter as KEY=VALUE (repeatable)")
	f.StringVar(&o.program, dc.name, dc.program, "the "+dc.name+" program to run")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for approval")
	return cmd
}

func (e *cliEnv) runDBClient(ctx context.Context, cmd *cobra.Command, dc dbClient, o dbOptions, target string, args []string) error {
	params, err := parseParams(o.params)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("for") && strings.TrimSpace(o.duration) == "" {
		return usageErrorf("--for", "must not be empty (a duration such as 30m)")
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout", "must be positive, got %s", fmtDuration(o.timeout))
	}
	bin, err := exec.LookPath(o.program)
	if err != nil {
		return usageErrorf("--"+dc.name, "cannot find %s: %v", o.program, err)
	}
	c, err := e.client(true)
	if err != nil {
		return err
	}
	req, reused, err := e.reuseOrRequest(ctx, c, ajar.CreateInput{
		Target: target, Duration: o.duration, Reason: o.reason, Ticket: o.ticket, Params: params,
	})
	if err != nil {
		return err
	}
	how := "new request"
	if reused {
		how = "your request"
	}
	fmt.Fprintf(e.stderr, "ajar: %s %s for %s: %s\n", how, clean(req.ID), clean(target), clean(string(req.State)))
	if waiting(req.State) {
		fmt.Fprintf(e.stderr, "ajar: waiting up to %s for approval (an approver runs: ajar approve %s); Ctrl-C stops waiting, the request stays\n",
			fmtDuration(o.timeout), clean(req.ID))
	}
	if req, err = e.waitActive(ctx, c, req, o.timeout); err != nil {
		return err
	}
	l, err := c.IssueDBLogin(ctx, req.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "ajar: login %s on %s until %s (%s)\n", clean(l.User), clean(l.DSN), e.fmtTime(l.ExpiresAt), relative(l.ExpiresAt, e.now()))
	// The client gets the terminal's signals itself; ajar outlives them (run
	// already catches SIGINT and SIGTERM) so that it cleans up however it ends.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err = dc.run(e, bin, args, l)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return &exitCodeError{code: ee.ExitCode()}
	default:
		return fmt.Errorf("run %s: %w", dc.name, err)
	}
}

// reuseOrRequest returns the caller's newest request for in.Target with exactly
// in.Params that is active with a minute to go, else the newest pending or
// approved one, else a new request (asking for a missing reason or ticket on the
// terminal, once).
func (e *cliEnv) reuseOrRequest(ctx context.Context, c *api.Client, in ajar.CreateInput) (*ajar.Request, bool, error) {
	mine, err := c.AllRequests(ctx, readmodel.ListInput{Mine: true})
	if err != nil {
		return nil, false, err
	}
	var pending *ajar.Request
	for _, r := range mine {
		if r.Target != in.Target || !sameStringMap(r.Params, in.Params) {
			continue
		}
		switch {
		case r.State == ajar.StateActive && r.ExpiresAt != nil && r.ExpiresAt.Sub(e.now()) >= time.Minute:
			return r, true, nil
		case waiting(r.State) && pending == nil:
			pending = r
		}
	}
	if pending != nil {
		return pending, true, nil
	}
	asked := map[string]bool{}
	var rd *bufio.Reader
	for {
		r, err := c.CreateRequest(ctx, in)
		field := ajar.ErrorField(err)
		if err == nil || ajar.ErrorCode(err) != ajar.EINVALID || asked[field] || !isTerminal(e.stdin) ||
			(field != "reason" && field != "ticket") {
			return r, false, err
		}
		asked[field] = true
		fmt.Fprintf(e.stderr, "ajar: %s\n%s: ", describeError(nil, err), strings.ToUpper(field[:1])+field[1:])
		if rd == nil {
			rd = bufio.NewReader(e.stdin)
		}
		line, rerr := rd.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, false, rerr
		}
		if line = strings.TrimSpace(line); line == "" {
			return nil, false, err
		}
		if field == "reason" {
			in.Reason = line
		} else {
			in.Ticket = line
		}
	}
}

func sameStringMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// childEnv is this process's environment without the variables named, plus
// extra: a client never sees a stale login of the caller's shell.
func childEnv(drop []string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runPsql runs psql with the login in its environment only (PGPASSWORD and
// friends); nothing is written to disk.
func runPsql(e *cliEnv, bin string, args []string, l *credentials.DBLoginOutput) error {
	run := exec.Command(bin, args...)
	run.Env = childEnv([]string{"PGPASSWORD", "PGPASSFILE", "PGUSER", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE"},
		"PGPASSWORD="+l.Password, "PGUSER="+l.User, "PGHOST="+l.Host, "PGPORT="+strconv.Itoa(l.Port), "PGDATABASE="+l.Database)
	run.Stdin, run.Stdout, run.Stderr = e.stdin, e.stdout, e.stderr
	return run.Run()
}

// runMySQL runs the mysql (or mariadb) client with the login in a 0600 option
// file in a new 0700 directory (in the user's runtime directory when there is
// one), removed when the client exits. MYSQL_PWD is not used: MySQL 8
// deprecates it.
func runMySQL(e *cliEnv, bin string, args []string, l *credentials.DBLoginOutput) error {
	dir, err := os.MkdirTemp(keyDir(e.getenv), "ajar-mysql-")
	if err != nil {
		return fmt.Errorf("create a directory for the login: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	file := filepath.Join(dir, "login.cnf")
	// Values are quoted: the option-file parser would otherwise cut at '#'.
	q := func(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }
	cnf := fmt.Sprintf("[client]\nuser=%s\npassword=%s\nhost=%s\nport=%d\n[mysql]\ndatabase=%s\n", q(l.User), q(l.Password), q(l.Host), l.Port, q(l.Database))
	if err := os.WriteFile(file, []byte(cnf), 0o600); err != nil {
		return fmt.Errorf("write the login: %w", err)
	}
	run := exec.Command(bin, append([]string{"--defaults-extra-file=" + file}, args...)...)
	run.Env = childEnv([]string{"MYSQL_PWD", "MYSQL_HOST", "MYSQL_TCP_PORT"})
	run.Stdin, run.Stdout, run.Stderr = e.stdin, e.stdout, e.stderr
	return run.Run()
}
