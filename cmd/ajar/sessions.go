package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/identity"
)

// API tokens and sessions: "ajar token", "ajar sessions", "ajar logout".

func newTokenCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens (admins)"}
	cmd.AddCommand(newTokenCreateCmd(e), newTokenListCmd(e), newTokenRevokeCmd(e))
	return cmd
}

func newTokenCreateCmd(e *cliEnv) *cobra.Command {
	var config, data, user, name, ttlFlag string
	create := &cobra.Command{
		Use:   "create --user ID [--ttl D] [--name N]",
		Short: "Mint an API token for a user and print only the token",
		Long: `Mint an API token for a user and print only the token (it is shown once).

Through the server (the default): an admin's credentials ($AJAR_TOKEN) and the
server's API. On the server's host, without a running server: give --data (or
--config) the server runs with; the database must exist.

The token expires after --ttl (default 90d, at most 366d).`,
		Args: argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usageErrorf("--user", "a user id is required")
			}
			ttl, err := identity.ParseTTL(ttlFlag)
			if err != nil {
				return usageErrorf("--ttl", "%s", ajar.ErrorMessage(err))
			}
			if !cmd.Flags().Changed("data") && !cmd.Flags().Changed("config") {
				c, err := e.client(true)
				if err != nil {
					return err
				}
				out, err := c.CreateToken(cmd.Context(), api.CreateTokenInput{User: user, Name: name, TTL: ttlFlag})
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, out.Token)
				return nil
			}
			pol, err := loadPolicy(config)
			if err != nil {
				return err
			}
			// A token is only any use in the server's database: never create
			// an empty one (a mistyped or missing --data would mint a token the
			// running server does not know).
			if cfg := pol.Storage(); e.getenv(EnvDatabaseURL) == "" && (cfg.Driver == "" || cfg.Driver == "sqlite") {
				path, field := cfg.DSN, "storage.dsn"
				if path == "" {
					path, field = filepath.Join(data, "ajar.db"), "data"
				}
				if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
					return ajar.FieldErrorf(field, "no ajar database at %s: give the --data (or --config) the server runs with, or start the server first", path)
				}
			}
			st, _, err := openStore(cmd.Context(), pol, data, e.getenv, time.Now)
			if err != nil {
				return err
			}
			defer st.Close()
			ids, err := identity.New(identity.Config{Store: st, Policy: pol})
			if err != nil {
				return err
			}
			tok, _, err := ids.CreateToken(cmd.Context(), ajar.User{}, user, name, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, tok)
			return nil
		},
	}
	create.Flags().StringVar(&config, "config", "", "on the host: the policy file (without it: the demo policy)")
	create.Flags().StringVar(&data, "data", "ajar-data", "on the host: the data directory (when the config names no database)")
	create.Flags().StringVar(&user, "user", "", "the user id")
	create.Flags().StringVar(&name, "name", "cli", "a label for the token")
	create.Flags().StringVar(&ttlFlag, "ttl", "", "lifetime, such as 30d or 720h (default 90d, at most 366d)")
	return create
}

func newTokenListCmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	var user string
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--user ID]",
		Short: "List API tokens (never the tokens themselves)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			list, err := c.ListTokens(cmd.Context(), user, all)
			if err != nil {
				return err
			}
			return e.printSessions(list, out, false)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this user's tokens")
	cmd.Flags().BoolVar(&all, "all", false, "revoked and expired tokens too")
	addOutputFlag(cmd, &out)
	return cmd
}

func newTokenRevokeCmd(e *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token by its id (from ajar token list); it stops working at once",
		Args:  argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "token %s revoked\n", clean(args[0]))
			return nil
		},
	}
}

func newSessionsCmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	var user string
	var all bool
	cmd := &cobra.Command{
		Use:   "sessions [--user ID]",
		Short: "List web and CLI sessions (admins; anyone with --user themselves)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			list, err := c.ListSessions(cmd.Context(), user, all)
			if err != nil {
				return err
			}
			return e.printSessions(list, out, true)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this user's sessions")
	cmd.Flags().BoolVar(&all, "all", false, "ended sessions too")
	addOutputFlag(cmd, &out)
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke ID",
		Short: "End a session by its id (admins, or your own); it stops working at once",
		Args:  argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			if err := c.RevokeSession(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "session %s ended\n", clean(args[0]))
			return nil
		},
	})
	return cmd
}

// printSessions prints tokens or sessions: a table, or JSON (never a secret:
// api.SessionInfo has none).
func (e *cliEnv) printSessions(list []api.SessionInfo, format outputFormat, sessions bool) error {
	if format == outputJSON {
		if list == nil {
			list = []api.SessionInfo{}
		}
		return writeJSON(e.stdout, list)
	}
	tw := newTable(e.stdout)
	if sessions {
		fmt.Fprintln(tw, "ID\tKIND\tUSER\tNAME\tEXPIRES\tLAST USED")
	} else {
		fmt.Fprintln(tw, "ID\tUSER\tNAME\tEXPIRES\tLAST USED")
	}
	for _, s := range list {
		expires := e.fmtTime(s.ExpiresAt)
		if s.RevokedAt != nil {
			expires = "revoked " + e.fmtTime(*s.RevokedAt)
		}
		if sessions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(s.ID), clean(s.Kind), clean(s.User), orDash(clean(s.Name)), expires, e.fmtTimePtr(s.LastUsedAt))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(s.ID), clean(s.User), orDash(clean(s.Name)), expires, e.fmtTimePtr(s.LastUsedAt))
		}
	}
	return tw.Flush()
}

func newLogoutCmd(e *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the session or API token you use, on the server, and forget stored credentials",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			err = c.Logout(cmd.Context())
			if err != nil && !(ajar.ErrorCode(err) == ajar.EUNAUTH && e.storedSession != "") {
				return err
			}
			// A stored session the server no longer accepts is forgotten too.
			if rerr := e.removeCredentials(); rerr != nil {
				return rerr
			}
			if err != nil {
				fmt.Fprintln(e.stderr, "the session had already ended; stored credentials removed")
				return nil
			}
			fmt.Fprintln(e.stderr, "logged out")
			return nil
		},
	}
}
