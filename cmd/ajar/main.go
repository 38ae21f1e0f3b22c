// Command ajar is ajar's one binary: the server (ajar serve) and the CLI, which is a
// client of the HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
)

// defaultServer is the API URL when neither --server nor AJAR_SERVER is set.
const defaultServer = "http://127.0.0.1:8700"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed (including errors from the server)
	exitUsage = 2 // bad flags or arguments; nothing was sent
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the CLI with args (without the program name) and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{
		stdin:        stdin,
		stdout:       stdout,
		stderr:       stderr,
		getenv:       os.Getenv,
		now:          time.Now,
		pollInterval: 250 * time.Millisecond,
	}
	return env.execute(ctx, args)
}

// cliEnv is everything a command reads from or writes to the outside world, so that
// commands are testable and hold no global state. The server-side commands (serve,
// token, audit verify) receive it too.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	// pollInterval is how often request --wait asks for the request's state.
	pollInterval time.Duration

	// Global flags; empty means "use the environment, then the default".
	server string
	token  string
	// storedSession is the server whose session, stored by "ajar login", the
	// command uses; "" when it uses AJAR_TOKEN or --token.
	storedSession string
	// utc is --utc: times for people in UTC rather than the local time zone.
	utc bool
}

// execute builds the command tree, runs it and turns the outcome into an exit code,
// printing any error as "error: MESSAGE (field: F)".
func (e *cliEnv) execute(ctx context.Context, args []string) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root := newRootCmd(e)
	ran := false
	markRun(root, &ran)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)

	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code // a program ajar ran (ssh) failed and said why itself
	}
	msg := describeError(cmd, err)
	if e.storedSession != "" && ajar.ErrorCode(err) == ajar.EUNAUTH {
		// The session "ajar login" stored: it ended (signed out, revoked,
		// expired, or the identity provider no longer confirms the person).
		msg = fmt.Sprintf("your session on %s is no longer valid (%s); run ajar login", clean(e.storedSession), msg)
	}
	fmt.Fprintf(e.stderr, "error: %s\n", msg)
	var ue *usageError
	if !ran || errors.As(err, &ue) {
		// Cobra fails before a command runs only for bad flags, arguments or
		// command names: all usage errors.
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(e.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// markRun wraps every command's Run/RunE below c so that *ran records whether a
// command body started: an error before that came from cobra's own parsing.
func markRun(c *cobra.Command, ran *bool) {
	if fn := c.RunE; fn != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*ran = true
			return fn(cmd, args)
		}
	}
	if fn := c.Run; fn != nil {
		c.Run = func(cmd *cobra.Command, args []string) {
			*ran = true
			fn(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRun(sub, ran)
	}
}

// flagFor names the field of a server error as the flag of cmd that sets it,
// so the message says what to fix on the command line: "duration" is --for,
// "params.source_ip" is --source-ip or --param source_ip, "public_key" is
// --public-key. A field no flag of cmd sets (or a nil cmd) stays as it is.
func flagFor(cmd *cobra.Command, field string) string {
	if cmd == nil || field == "" || strings.HasPrefix(field, "-") {
		return field
	}
	has := func(name string) bool { return cmd.Flags().Lookup(name) != nil }
	if k, ok := strings.CutPrefix(field, "params."); ok {
		switch {
		case has(strings.ReplaceAll(k, "_", "-")):
			return "--" + strings.ReplaceAll(k, "_", "-")
		case has("param"):
			return "--param " + k
		}
		return field
	}
	name := strings.ReplaceAll(field, "_", "-")
	if field == "duration" {
		name = "for"
	}
	if has(name) {
		return "--" + name
	}
	return field
}

// describeError is the text after "error: ". The server's errors (and our own
// usage errors) are *ajar.Error, shown as message and field; anything else (a
// refused connection) is shown as is.
func describeError(cmd *cobra.Command, err error) string {
	var ae *ajar.Error
	if errors.As(err, &ae) {
		msg := clean(ae.Message)
		if ae.Field != "" {
			msg += " (field: " + clean(flagFor(cmd, ae.Field)) + ")"
		}
		return msg
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// A transport failure; the URL never holds the token (it travels in a header).
		return clean(fmt.Sprintf("cannot reach the ajar server (%s %s): %v", ue.Op, ue.URL, ue.Err))
	}
	return cleanLines(err.Error()) // ajar's own errors may list problems line by line
}

// usageError is a bad flag or argument, found before anything was sent.
type usageError struct{ err *ajar.Error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usage error naming the flag or argument at fault.
func usageErrorf(field, format string, args ...any) error {
	return &usageError{err: ajar.FieldErrorf(field, format, args...)}
}

// newRootCmd builds the whole command tree.
func newRootCmd(e *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:   "ajar",
		Short: "Just-in-time privileged access: ask, approve, use, and it closes itself",
		Long: `ajar grants access to a target for a stated reason and a bounded time, and removes
it by itself when the time is up.

The client commands talk to the server at $AJAR_SERVER (default ` + defaultServer + `)
with the API token in $AJAR_TOKEN; --server and --token override them.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{err: &ajar.Error{Code: ajar.EINVALID, Message: err.Error()}}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&e.server, "server", "", "ajar server URL (default $AJAR_SERVER, then "+defaultServer+")")
	pf.StringVar(&e.token, "token", "", "API token (default $AJAR_TOKEN; prefer the variable: flags show in the process list)")
	pf.BoolVar(&e.utc, "utc", false, "print times in UTC rather than the local time zone (JSON is always UTC)")

	root.AddCommand(
		newWhoAmICmd(e),
		newTargetsCmd(e),
		newRequestCmd(e),
		newRequestsCmd(e),
		newShowCmd(e),
		newApproveCmd(e),
		newDenyCmd(e),
		newRevokeCmd(e),
		newCancelCmd(e),
		newSSHCertCmd(e),
		newSSHCmd(e),
		newNodeCmd(e),
		newVersionCmd(e), // version.go
		newLoginCmd(e),   // login.go
		newPolicyCmd(e),  // policycmd.go
	)
	audit := newAuditCmd(e)
	audit.AddCommand(auditSubcommands(e)...)
	root.AddCommand(audit)
	root.AddCommand(workflowCommands(e)...) // workflow.go
	root.AddCommand(awsCommands(e)...)      // aws.go
	root.AddCommand(dbCommands(e)...)       // db.go
	root.AddCommand(serverCommands(e)...)
	addCompletions(e, root) // completion.go
	return root
}

// client returns an API client for the configured server. needToken says whether
// the command needs to be signed in; the public routes (the SSH CA) do not.
// serverBase is the server's base URL as given, without trailing slashes or
// the API's "/v1" (people paste https://ajar.example.com/v1 too).
func serverBase(s string) string {
	s = strings.TrimRight(s, "/")
	if b, ok := strings.CutSuffix(s, "/v1"); ok {
		s = strings.TrimRight(b, "/")
	}
	return s
}

// namedServer is the server --server or AJAR_SERVER names ("" when neither),
// without a trailing "/" or "/v1", and which of them named it.
func (e *cliEnv) namedServer() (server, field string) {
	server, field = e.server, "--server"
	if server == "" {
		server, field = e.getenv("AJAR_SERVER"), "AJAR_SERVER"
	}
	return serverBase(server), field
}

// checkServer parses a server URL, or returns a usage error naming field.
func checkServer(server, field string) (*url.URL, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, usageErrorf(field, "must be an http:// or https:// URL such as %s, got %q", defaultServer, server)
	}
	return u, nil
}

func (e *cliEnv) client(needToken bool) (*api.Client, error) {
	server, field := e.namedServer()
	token := e.token
	if token == "" {
		token = e.getenv("AJAR_TOKEN")
	}
	if token == "" && needToken {
		// What "ajar login" stored, for its own server only: a token is never
		// sent to another server than the one that issued it.
		creds, err := e.loadCredentials()
		if err != nil {
			return nil, err
		}
		if creds != nil && (server == "" || sameServer(server, creds.Server)) {
			if !creds.ExpiresAt.IsZero() && !e.now().Before(creds.ExpiresAt) {
				return nil, ajar.Errorf(ajar.EUNAUTH, "your session on %s ended at %s; run ajar login", creds.Server, creds.ExpiresAt.Local().Format(time.RFC3339))
			}
			server, field, token = creds.Server, e.credentialsPath(), creds.Token
			e.storedSession = creds.Server
		}
	}
	if server == "" {
		server = defaultServer
	}
	u, err := checkServer(server, field)
	if err != nil {
		return nil, err
	}
	if needToken && token == "" {
		return nil, usageErrorf("--token", "not signed in: run ajar login, or set AJAR_TOKEN to an API token")
	}
	if needToken && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		fmt.Fprintf(e.stderr, "warning: sending the API token to %s over plain http\n", u.Host)
	}
	return api.NewClient(strings.TrimRight(server, "/"), token), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// argNames returns a cobra.PositionalArgs that wants exactly the named,
// non-empty arguments and reports a usage error naming the one that is wrong.
func argNames(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return usageErrorf("", "missing argument %s", names[len(args)])
		}
		if len(args) > len(names) {
			return usageErrorf("", "unexpected argument %q", args[len(names)])
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return usageErrorf("", "argument %s must not be empty", names[i])
			}
		}
		return nil
	}
}
