package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/credentials"
	"github.com/ajar-dev/ajar/events"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/identity/sso"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/metrics"
	"github.com/ajar-dev/ajar/notify/outbox"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/reconcile"
	"github.com/ajar-dev/ajar/sshaccess"
	"github.com/ajar-dev/ajar/sshhost"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/sqlite"
	"github.com/ajar-dev/ajar/web"
)

// serverCommands returns the commands that run server-side code.
func serverCommands(e *cliEnv) []*cobra.Command {
	return []*cobra.Command{newServeCmd(e), newTokenCmd(e), newSessionsCmd(e), newLogoutCmd(e)} // sessions.go
}

// serveOptions are the flags of ajar serve.
type serveOptions struct {
	config        string
	data          string
	listen        string
	masterKeyFile string
	dev           bool
	unsafeDev     bool      // --unsafe-dev-config: --dev with --config, knowingly
	logFormat     logFormat // logging.go
	logLevel      logLevel
}

// devMode reports whether ajar runs its embedded demo policy and dev conveniences.
func (o serveOptions) devMode() bool { return o.config == "" || o.dev }

// devTokensFile is where dev mode writes the API tokens ("" outside dev mode).
func devTokensFile(o serveOptions) string {
	if !o.devMode() {
		return ""
	}
	return filepath.Join(o.data, "dev-tokens.env")
}

func newServeCmd(e *cliEnv) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--data DIR] [--listen ADDR] [--dev [--unsafe-dev-config]]",
		Short: "Run the ajar server (with no --config: dev mode with the demo policy)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			log := newLogger(e.stderr, o.logFormat, o.logLevel.Level) // logging.go
			a, err := openApp(cmd.Context(), o, e, log)
			if err != nil {
				return err
			}
			<-cmd.Context().Done()
			fmt.Fprintln(e.stderr, "ajar: shutting down")
			return a.Close()
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "policy file (YAML); without it ajar runs the demo policy in dev mode")
	cmd.Flags().StringVar(&o.data, "data", "ajar-data", "data directory (SQLite database, dev keys and tokens)")
	cmd.Flags().StringVar(&o.listen, "listen", "", "listen address (default: the config's server.listen, or "+policy.DefaultListen+")")
	cmd.Flags().StringVar(&o.masterKeyFile, "master-key-file", "", "file holding the base64 master key (or set "+keys.EnvMasterKey+")")
	cmd.Flags().BoolVar(&o.dev, "dev", false, "dev mode: generate a master key file and API tokens for every configured user")
	o.logFormat, o.logLevel.Level = "text", slog.LevelInfo
	cmd.Flags().Var(&o.logFormat, "log-format", `log format: "text" or "json" (the start-up lines stay plain text)`)
	cmd.Flags().Var(&o.logLevel, "log-level", "least level logged: debug (adds polling requests), info, warn or error")
	cmd.Flags().BoolVar(&o.unsafeDev, "unsafe-dev-config", false, "allow --dev with --config: tokens for every user of a real policy, admins included, in a file (tests and trials only)")
	return cmd
}

// app is a running server: the composition root of ajar.
type app struct {
	store ajar.Store
	svc   *broker.Service
	http  *api.Server
	stop  context.CancelFunc
	done  chan struct{}
}

// loadPolicy reads the policy file, or the demo policy when there is none. All of a
// file's problems are reported at once.
func loadPolicy(path string) (*policy.Policy, error) {
	var pol *policy.Policy
	var err error
	if path == "" {
		pol, err = policy.DemoPolicy(provider.CheckTarget)
	} else {
		pol, err = policy.Load(path, provider.CheckTarget)
	}
	var probs ajar.Problems
	if errors.As(err, &probs) {
		var b strings.Builder
		fmt.Fprintf(&b, "policy file %s has %d problem(s):", path, len(probs))
		for _, p := range probs {
			b.WriteString("\n  - ")
			if p.Field != "" {
				b.WriteString(p.Field + ": ")
			}
			b.WriteString(p.Message)
		}
		return nil, errors.New(b.String())
	}
	return pol, err
}

// EnvDatabaseURL names the environment variable that selects PostgreSQL and its
// DSN, overriding the policy's storage.dsn (so the password can stay out of the
// policy file).
const EnvDatabaseURL = "AJAR_DATABASE_URL"

// EnvTestClockOffset names the environment variable that moves the server's local
// clock (a Go duration, e.g. 5m or -90s). It exists for tests of clock skew
// between replicas and is refused outside dev mode.
const EnvTestClockOffset = "AJAR_TEST_CLOCK_OFFSET"

// openStore opens the store the policy names: PostgreSQL when AJAR_DATABASE_URL
// is set or storage.driver is postgres; otherwise SQLite in storage.dsn, or
// DATA/ajar.db. clock is the local clock, which only SQLite uses: PostgreSQL's
// own clock is the one clock of all replicas. desc names the store for people
// (never with a password).
func openStore(ctx context.Context, pol *policy.Policy, data string, getenv func(string) string, clock func() time.Time) (st ajar.Store, desc string, err error) {
	cfg := pol.Storage()
	url := getenv(EnvDatabaseURL)
	switch {
	case url != "" && cfg.Driver == "sqlite" && cfg.DSN != "":
		return nil, "", fmt.Errorf("%s is set but the policy's storage is sqlite at %s: remove one of them", EnvDatabaseURL, cfg.DSN)
	case url != "" || cfg.Driver == "postgres":
		dsn := cfg.DSN
		if url != "" {
			dsn = url
		}
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, "", fmt.Errorf("open store: %w", err)
		}
		return s, "postgres", nil
	case cfg.Driver != "" && cfg.Driver != "sqlite":
		return nil, "", fmt.Errorf("storage.driver %q is not supported (use sqlite or postgres)", cfg.Driver)
	}
	path := cfg.DSN
	if path == "" {
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, "", fmt.Errorf("create data directory: %w", err)
		}
		path = filepath.Join(data, "ajar.db")
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("create database directory: %w", err)
	}
	s, err := sqlite.Open(ctx, path, sqlite.WithNow(clock))
	if err != nil {
		return nil, "", fmt.Errorf("open store %s: %w", path, err)
	}
	return s, "sqlite " + path, nil
}

// EnvTestOnlyProviders names the environment variable that enables the providers
// that exist only for ajar's own tests (testonly-counter), in dev mode.
const EnvTestOnlyProviders = "AJAR_TESTONLY_PROVIDERS"

// testOnlyProviders reports whether AJAR_TESTONLY_PROVIDERS=1 enables the test-only
// providers; set outside dev mode it is an error.
func testOnlyProviders(o serveOptions, e *cliEnv) (bool, error) {
	switch v := e.getenv(EnvTestOnlyProviders); {
	case v == "":
		return false, nil
	case v != "1":
		return false, fmt.Errorf("%s must be 1 or unset, not %q", EnvTestOnlyProviders, v)
	case !o.devMode():
		return false, fmt.Errorf("%s is for tests and works only in dev mode (--dev)", EnvTestOnlyProviders)
	}
	fmt.Fprintf(e.stderr, "ajar: TEST ONLY: test-only providers enabled (%s)\n", EnvTestOnlyProviders)
	return true, nil
}

// localClock is the server's wall clock: time.Now, moved by AJAR_TEST_CLOCK_OFFSET
// in dev mode (an error elsewhere, so that no production server runs on a
// deliberately wrong clock).
func localClock(o serveOptions, e *cliEnv) (func() time.Time, error) {
	v := e.getenv(EnvTestClockOffset)
	if v == "" {
		return time.Now, nil
	}
	if !o.devMode() {
		return nil, fmt.Errorf("%s is for tests and works only in dev mode (--dev)", EnvTestClockOffset)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvTestClockOffset, err)
	}
	fmt.Fprintf(e.stderr, "ajar: TEST ONLY: local clock moved by %s (%s)\n", d, EnvTestClockOffset)
	return func() time.Time { return time.Now().Add(d) }, nil
}

// checkDevMode refuses --dev with --config unless --unsafe-dev-config says it
// is meant: dev mode mints an API token for every user of the policy, admins
// included, writes them all to DATA/dev-tokens.env, generates a master key
// file and accepts the test-only switches (test-only providers, a moved
// clock), none of which may happen to a real policy by mistake. When it is
// meant, it warns on every start.
func checkDevMode(o serveOptions, e *cliEnv, log *slog.Logger) error {
	switch {
	case o.unsafeDev && !(o.dev && o.config != ""):
		return usageErrorf("--unsafe-dev-config", "only goes with both --dev and --config")
	case o.dev && o.config != "" && !o.unsafeDev:
		return usageErrorf("--dev", "--dev with --config writes an API token for every user of %s, admins included, to %s and accepts test-only switches; "+
			"run without --dev, or add --unsafe-dev-config if this policy guards nothing real (tests, trials)", o.config, filepath.Join(o.data, "dev-tokens.env"))
	case o.dev && o.config != "":
		fmt.Fprintf(e.stderr, "ajar: WARNING: DEV MODE ON POLICY %s (--unsafe-dev-config): API tokens for every user, admins included, are written to %s; never do this on a server that guards anything real\n",
			o.config, filepath.Join(o.data, "dev-tokens.env"))
		log.Warn("dev mode on a policy file: tokens for every user, admins included, are written to a file", "config", o.config, "tokens", filepath.Join(o.data, "dev-tokens.env"))
	}
	return nil
}

func openApp(ctx context.Context, o serveOptions, e *cliEnv, log *slog.Logger) (_ *app, err error) {
	if err := checkDevMode(o, e, log); err != nil {
		return nil, err
	}
	pol, err := loadPolicy(o.config)
	if err != nil {
		return nil, err
	}
	for _, w := range pol.Warnings() {
		log.Warn("policy problem: some requests could never be approved", "field", w.Field, "problem", w.Message)
	}
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	var mk *keys.MasterKey
	switch env := e.getenv(keys.EnvMasterKey); {
	case env != "" || o.masterKeyFile != "":
		mk, err = keys.LoadMasterKey(env, o.masterKeyFile)
	case o.devMode():
		mk, err = keys.EnsureDevMasterKey(filepath.Join(o.data, "master.key"))
	default:
		err = fmt.Errorf("no master key: set %s or --master-key-file (dev mode generates one)", keys.EnvMasterKey)
	}
	if err != nil {
		return nil, err
	}
	clock, err := localClock(o, e)
	if err != nil {
		return nil, err
	}
	st, storeDesc, err := openStore(ctx, pol, o.data, e.getenv, clock)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	ks := ajar.StoreKeys(st)
	signer, err := audit.LoadOrCreateSigner(ctx, ks, mk, "ajar-audit")
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	ca, err := sshcert.LoadOrCreateCA(ctx, ks, mk)
	if err != nil {
		return nil, fmt.Errorf("SSH CA: %w", err)
	}
	targets := map[string]provider.Target{}
	for _, name := range pol.TargetNames() {
		t, _ := pol.Target(name)
		targets[name] = provider.Target{Provider: t.Provider, Config: t.Config}
	}
	testOnly, err := testOnlyProviders(o, e)
	if err != nil {
		return nil, err
	}
	provs, err := provider.NewSet(targets, provider.Deps{SSHCA: ca, TestOnly: testOnly, AWS: awsx.DefaultLoader})
	if err != nil {
		return nil, err
	}
	sc := pol.Scheduler()
	reg, err := metrics.New(st) // what GET /metrics serves; each part registers its counters
	if err != nil {
		return nil, err
	}
	if err := registerBuildInfo(reg, readBuildInfo()); err != nil {
		return nil, err
	}
	sinks, err := sinksFromPolicy(pol, e.getenv, log)
	if err != nil {
		return nil, err
	}
	delivery, err := outbox.New(outbox.Config{ // notification delivery (the notifications section)
		Store: st, Sinks: sinks, Logger: log, Registerer: reg,
		RetryBase: time.Duration(sc.NotifyRetry), RetryMax: time.Duration(sc.NotifyMaxRetry),
		GiveUp: time.Duration(sc.NotifyGiveUp),
	})
	if err != nil {
		return nil, err
	}
	parts, err := sso.Build(ctx, pol, st, mk, clock, log) // identity/sso: sessions, single sign-on, security keys
	if err != nil {
		return nil, err
	}
	ids := parts.IDs
	svc, err := broker.New(broker.Config{
		Store: st, Policy: pol, Providers: provs,
		Logger: log, Metrics: broker.NewMetrics(reg), Now: clock, Users: ids.Lookup,
		Scheduler: broker.SchedulerConfig{
			Poll: time.Duration(sc.PollInterval), MaxGrantAttempts: sc.MaxGrantAttempts,
			MaxRevokeAttempts: sc.MaxRevokeAttempts, SlowRetry: time.Duration(sc.SlowRetry),
		},
		Notify: events.NotifyConfig{ // the notifications section
			Sinks: sinks, BaseURL: pol.Server().PublicURL, ExpiryReminder: time.Duration(sc.ExpiryReminder),
			Wake: delivery.Kick, Delivered: delivery.Delivered,
		},
	})
	if err != nil {
		return nil, err
	}
	hosts, err := sshhost.New(sshhost.Config{ // the SSH host-agent protocol, beside the core
		Store: st, Providers: provs, Audit: svc.AppendAudit, SSHCA: ca.AuthorizedKey, SSHKRL: ca.KRL,
		Metrics: reg,
	})
	if err != nil {
		return nil, err
	}
	checks, err := reconcile.New(reconcile.Config{ // the drift check and grants of removed users
		Store: st, Policy: pol, Providers: provs, Core: svc, Registerer: reg, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if _, err := checks.ReportOrphans(ctx); err != nil { // grants of users removed from the policy: log and metric
		return nil, err
	}
	listen := o.listen
	if listen == "" {
		listen = pol.Server().Listen
	}
	c := core{Service: svc, SSH: sshaccess.New(svc, st, pol, provs, ca.AuthorizedKey), Creds: credentials.New(svc, st, provs, clock), Checks: checks,
		Reader: readmodel.New(readmodel.Config{Core: svc, Store: st, Policy: pol, Providers: provs, Now: clock, Signer: signer})}
	srv := api.NewServer(c, ids, api.Options{
		Addr: listen, Logger: log, Metrics: metrics.Handler(reg), SSHHosts: hosts,
		Web:   web.New(c, ids, web.Options{Logger: log, Now: clock, Login: webLogin(parts.Login), MFA: webMFA(parts.MFA), DevTokens: devTokensFile(o)}),
		Login: apiLogin(parts.Login),
		Ready: func(ctx context.Context) error {
			return st.View(ctx, func(tx ajar.ReadTx) error { _, _, err := tx.AuditHead(ctx); return err })
		},
	})
	if err := srv.Open(); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a := &app{store: st, svc: svc, http: srv, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		var wg sync.WaitGroup
		wg.Go(func() { delivery.Run(runCtx) })      // notify/outbox: outbox delivery
		wg.Go(func() { checks.Run(runCtx) })        // reconcile: the drift check
		if idc := pol.Identity(); idc.OIDC != nil { // groups change at the IdP: look again every identity.refresh
			wg.Go(func() { checks.RunOrphans(runCtx, idc.Refresh, idc.RevokeOnLoss, ids.RefreshIdle) })
		}
		svc.Run(runCtx)
		wg.Wait()
	}()

	mode := "policy " + o.config
	if o.config == "" {
		mode = "dev mode, demo policy"
	}
	fmt.Fprintf(e.stderr, "ajar serving on %s (%s, %s, data in %s; %s)\n", srv.URL(), mode, storeDesc, o.data, readBuildInfo())
	if !o.devMode() {
		// A new deployment has no tokens yet: say how to mint one.
		fmt.Fprintf(e.stderr, "API tokens (the first one too) are minted on this host: ajar token create --config %s --data %s --user USER_ID\n",
			o.config, o.data)
	}
	if o.devMode() {
		if err := writeDevTokens(ctx, ids, pol, o.data, srv.URL(), e); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// Close stops the HTTP server, then the scheduler, then the store.
func (a *app) Close() error {
	err := a.http.Close()
	a.stop()
	<-a.done
	return errors.Join(err, a.store.Close())
}

// core is what the HTTP layers serve: the broker's lifecycle and, beside it,
// the read model (the lists, explain, evidence, the audit log, the web's view
// models), "ajar ssh"'s one round trip and SSH certificates (sshaccess) and
// cloud credentials (credentials).
type core struct {
	*broker.Service
	*readmodel.Reader
	SSH    *sshaccess.Service
	Creds  *credentials.Service
	Checks *reconcile.Checker
}

// ListOrphans lists the grants whose requester lost the right (package reconcile).
func (c core) ListOrphans(ctx context.Context, u ajar.User) ([]reconcile.Orphan, error) {
	return c.Checks.ListOrphans(ctx, u)
}

// IssueDBLogin gives a database login (package credentials).
func (c core) IssueDBLogin(ctx context.Context, u ajar.User, id string) (*credentials.DBLoginOutput, error) {
	return c.Creds.IssueDBLogin(ctx, u, id)
}

// IssueCredentials vends cloud credentials (package credentials).
func (c core) IssueCredentials(ctx context.Context, u ajar.User, id string) (*credentials.Output, error) {
	return c.Creds.IssueCredentials(ctx, u, id)
}

// SSHAccess is "ajar ssh"'s one round trip (package sshaccess).
func (c core) SSHAccess(ctx context.Context, u ajar.User, in sshaccess.Input) (*sshaccess.Output, error) {
	return c.SSH.SSHAccess(ctx, u, in)
}

// CreateWithCert is POST /v1/requests with a key to certify (package sshaccess).
func (c core) CreateWithCert(ctx context.Context, u ajar.User, in ajar.CreateInput, publicKey string) (*ajar.Request, *ajar.SSHCertOutput, error) {
	return c.SSH.CreateWithCert(ctx, u, in, publicKey)
}

// IssueSSHCert certifies a key for an active request (package sshaccess).
func (c core) IssueSSHCert(ctx context.Context, u ajar.User, id string, publicKey []byte) (*ajar.SSHCertOutput, error) {
	return c.SSH.IssueSSHCert(ctx, u, id, publicKey)
}

// SSHCA is the SSH CA's public key (package sshaccess).
func (c core) SSHCA(ctx context.Context) (string, error) { return c.SSH.SSHCA(ctx) }

var (
	_ api.Core            = core{}
	_ api.WorkflowCore    = core{}
	_ api.EvidenceCore    = core{}
	_ api.InboxCore       = core{}
	_ web.Core            = core{}
	_ web.Extender        = core{}
	_ web.Counter         = core{}
	_ api.SSHCore         = core{}
	_ api.CredentialsCore = core{}
	_ api.DBLoginCore     = core{}
	_ api.OrphansCore     = core{}
)

// writeDevTokens mints a token for every configured user on the first dev start
// and writes them to DATA/dev-tokens.env (0600) as shell lines. They live
// identity.DevTokenTTL (a year), so a dev data directory keeps working.
func writeDevTokens(ctx context.Context, ids *identity.Service, pol *policy.Policy, data, url string, e *cliEnv) error {
	path := filepath.Join(data, "dev-tokens.env")
	if _, err := os.Stat(path); err == nil {
		fmt.Fprintf(e.stderr, "dev tokens: %s (from an earlier start)\n", path)
		printDevUsage(e, path)
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# ajar dev-mode API tokens; load with: set -a; . %s; set +a\n", path)
	fmt.Fprintf(&b, "AJAR_SERVER=%s\n", url)
	for _, u := range pol.Users() {
		tok, _, err := ids.CreateToken(ctx, ajar.User{}, u.ID, "dev", identity.DevTokenTTL)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s=%s\n", devTokenVar(u.ID), tok)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "dev tokens written to %s\n", path)
	printDevUsage(e, path)
	return nil
}

func printDevUsage(e *cliEnv, path string) {
	fmt.Fprintf(e.stderr, "try:\n  set -a; . %s; set +a\n  AJAR_TOKEN=$AJAR_TOKEN_ALICE ajar targets\n", path)
}

// devTokenVar turns alice@example.com into AJAR_TOKEN_ALICE.
func devTokenVar(id string) string {
	local, _, _ := strings.Cut(id, "@")
	var b strings.Builder
	for _, r := range strings.ToUpper(local) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteRune('_')
		}
	}
	return "AJAR_TOKEN_" + b.String()
}
