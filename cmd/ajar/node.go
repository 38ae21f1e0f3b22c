package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar/node"
	"github.com/ajar-dev/ajar/provider/sshcert"
)

// newNodeCmd is "ajar node": the host agent on SSH hosts.
func newNodeCmd(e *cliEnv) *cobra.Command {
	nf := &nodeFlags{}
	cmd := &cobra.Command{
		Use:   "node sync|run|install|keys|principals",
		Short: "The host agent for SSH hosts: CA and revocation list for sshd, ending sessions",
		Long: `ajar node runs on each SSH host of an ssh-cert target. It reads its config from
--config (default ` + node.DefaultConfigPath + `):

  server: https://ajar.example.com   # the ajar server
  target: prod-web                    # the target this host belongs to
  token_file: /etc/ajar/node.token    # token of a user in the target's "nodes" (mode 0640)
  # mode: authorized-keys             # if the target uses authorized-keys mode
  # auth_log: ` + node.DefaultAuthLog + `     # where sshd logs accepted logins (LogLevel VERBOSE)
  # logins: [deploy]                  # logins only ajar grants may use on this host
  # ca_file: ` + node.DefaultCAFile + `       krl_file: ` + node.DefaultKRLFile + `
  # interval: 2s                      host: (this host's name)`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return usageErrorf("", "unknown command %q for %q", args[0], cmd.CommandPath())
		},
	}
	cmd.PersistentFlags().StringVar(&nf.configPath, "config", node.DefaultConfigPath, "the node config file")
	cmd.AddCommand(newNodeSyncCmd(e, nf), newNodeRunCmd(e, nf), newNodeInstallCmd(e, nf), newNodeKeysCmd(e, nf), newNodePrincipalsCmd(e))
	return cmd
}

// nodeFlags are the flags every "ajar node" subcommand shares.
type nodeFlags struct {
	configPath string // --config
}

// load reads the node config (--server overrides its server) and makes the agent.
func (nf *nodeFlags) load(e *cliEnv) (*node.Config, *node.Agent, error) {
	cfg, err := node.LoadConfig(nf.configPath)
	if err != nil {
		return nil, nil, err
	}
	if e.server != "" {
		if err := node.CheckServerURL(e.server); err != nil {
			return nil, nil, usageErrorf("--server", "%s", err)
		}
		cfg.Server = e.server
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := node.New(cfg, node.Options{Logger: log})
	return cfg, a, err
}

// newNodeSyncCmd is "ajar node sync": install the CA key and KRL once.
func newNodeSyncCmd(e *cliEnv, nf *nodeFlags) *cobra.Command {
	var acceptNewCA bool
	syncCmd := &cobra.Command{
		Use:   "sync",
		Short: "Fetch the CA key and revocation list once and install them for sshd",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, a, err := nf.load(e)
			if err != nil {
				return err
			}
			res, err := a.Sync(cmd.Context(), acceptNewCA)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "synced %s (written: %t) and %s (written: %t, %d revoked serials)\n",
				cfg.CAFile, res.CAWritten, cfg.KRLFile, res.KRLWritten, res.Serials)
			return nil
		},
	}
	syncCmd.Flags().BoolVar(&acceptNewCA, "accept-new-ca", false, "replace an installed CA key that differs from the server's (after a rotation)")
	return syncCmd
}

// newNodeRunCmd is "ajar node run": the agent's loop.
func newNodeRunCmd(e *cliEnv, nf *nodeFlags) *cobra.Command {
	var acceptNewCA bool
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "Keep the CA and revocation list current and end sessions whose access ended (runs until stopped)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, a, err := nf.load(e)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context(), acceptNewCA)
		},
	}
	runCmd.Flags().BoolVar(&acceptNewCA, "accept-new-ca", false, "replace an installed CA key that differs from the server's (after a rotation)")
	return runCmd
}

// newNodeInstallCmd is "ajar node install": the sshd_config lines for this host.
func newNodeInstallCmd(e *cliEnv, nf *nodeFlags) *cobra.Command {
	var (
		apply                    bool
		dropIn, sshdConfig, user string
		binary, sshdPath         string
	)
	installCmd := &cobra.Command{
		Use:   "install [--apply]",
		Short: "Print the sshd_config lines for this host (with --apply: sync, write them and check sshd's config)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, a, err := nf.load(e)
			if err != nil {
				return err
			}
			bin := binary
			if bin == "" {
				if bin, err = os.Executable(); err == nil {
					bin, err = filepath.EvalSymlinks(bin)
				}
				if err != nil {
					return fmt.Errorf("find the ajar binary (pass --binary): %w", err)
				}
			}
			cfgAbs, err := filepath.Abs(nf.configPath)
			if err != nil {
				return err
			}
			text, err := node.SSHDConfig(cfg, node.InstallOptions{Binary: bin, ConfigPath: cfgAbs, KeysUser: user})
			if err != nil {
				return err
			}
			if !apply {
				_, err := fmt.Fprint(e.stdout, text)
				return err
			}
			// The files sshd is told to read must exist first: a missing
			// RevokedKeys file refuses every login.
			if _, err := a.Sync(cmd.Context(), false); err != nil {
				return fmt.Errorf("sync before installing (nothing was changed): %w", err)
			}
			sshd := sshdPath
			if sshd == "" {
				if p, err := exec.LookPath("sshd"); err == nil {
					sshd = p
				} else if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
					sshd = "/usr/sbin/sshd"
				} else {
					fmt.Fprintln(e.stderr, "warning: sshd not found; the config is not checked")
				}
			}
			if err := node.ApplyDropIn(dropIn, text, sshd, sshdConfig); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "wrote %s; reload sshd to use it (systemctl reload ssh), and run \"ajar node run\" as a service\n", dropIn)
			return nil
		},
	}
	f := installCmd.Flags()
	f.BoolVar(&apply, "apply", false, "sync, write the lines to --dropin and check them with sshd -t")
	f.StringVar(&dropIn, "dropin", node.DefaultDropIn, "the sshd_config drop-in file to write")
	f.StringVar(&sshdConfig, "sshd-config", "", "the main sshd_config that sshd -t checks (default: sshd's own)")
	f.StringVar(&sshdPath, "sshd", "", "the sshd binary for the check (default: sshd from PATH or /usr/sbin/sshd)")
	f.StringVar(&user, "keys-user", "ajar-node", "the user sshd runs \"ajar node principals\" and \"ajar node keys\" as (authorized-keys mode: must be able to read the token file)")
	f.StringVar(&binary, "binary", "", "the ajar binary sshd runs (default: this one)")
	return installCmd
}

// newNodeKeysCmd is "ajar node keys": sshd's AuthorizedKeysCommand.
func newNodeKeysCmd(e *cliEnv, nf *nodeFlags) *cobra.Command {
	keysCmd := &cobra.Command{
		Use:   "keys USER",
		Short: "Print the authorized keys of USER for sshd's AuthorizedKeysCommand (authorized-keys mode)",
		Long: `Print the authorized_keys lines that let USER log in now: the keys of active
requests for this host's target, each with an expiry-time option. On any error it
prints nothing and exits 1, so sshd lets nobody in with an ajar key.`,
		Args: argNames("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, a, err := nf.load(e)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			lines, err := a.Keys(ctx, args[0])
			if err != nil {
				return err
			}
			for _, l := range lines {
				if _, err := fmt.Fprintln(e.stdout, l); err != nil {
					return err
				}
			}
			return nil
		},
	}
	return keysCmd
}

// newNodePrincipalsCmd is "ajar node principals": sshd's
// AuthorizedPrincipalsCommand. It needs neither the server nor the node config.
func newNodePrincipalsCmd(e *cliEnv) *cobra.Command {
	var principalsTarget string
	principalsCmd := &cobra.Command{
		Use:   "principals --target TARGET USER",
		Short: "Print the certificate principal that may log in as USER (sshd's AuthorizedPrincipalsCommand)",
		Long: `Print the one certificate principal sshd accepts for USER on a host of TARGET:
ajar-target:TARGET:USER. Certificates of other targets carry other principals, so
sshd refuses them. It needs neither the server nor the node config.`,
		Args: argNames("USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !sshcert.ValidTarget(principalsTarget) {
				return usageErrorf("--target", "must be a target name, got %q", principalsTarget)
			}
			if !sshcert.ValidLogin(args[0]) {
				return usageErrorf("USER", "%q is not a user name", args[0])
			}
			_, err := fmt.Fprintln(e.stdout, sshcert.Principal(principalsTarget, args[0]))
			return err
		},
	}
	principalsCmd.Flags().StringVar(&principalsTarget, "target", "", "the target of this host")
	return principalsCmd
}
