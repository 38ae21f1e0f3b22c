package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// auditSubcommands returns "ajar audit verify" and "ajar audit checkpoint".
func auditSubcommands(e *cliEnv) []*cobra.Command {
	return []*cobra.Command{newAuditVerifyCmd(e), newAuditCheckpointCmd(e)}
}

func newAuditVerifyCmd(e *cliEnv) *cobra.Command {
	var checkpoint, key, db string
	cmd := &cobra.Command{
		Use:   "verify [--checkpoint FILE] [--key VERIFIER_KEY] [--db FILE]",
		Short: "Recompute the audit hash chain and check it against signed checkpoints",
		Long: `Recomputes every event's hash and link, trusting nothing the server says.
It fetches the events through the API in one stream (admins only), or reads them from a
SQLite database file with --db, which it opens read-only and never changes. It also checks the server's current signed
checkpoint and, with --checkpoint, one saved earlier (ajar audit checkpoint > FILE),
which detects a truncated or rewritten history. Prints "ok: N events" and exits 0,
or names the first bad event and exits 1.`,
		Args: argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var saved []byte
			if checkpoint != "" {
				var err error
				if saved, err = os.ReadFile(checkpoint); err != nil {
					return usageErrorf("--checkpoint", "%v", err)
				}
			}
			var next func(context.Context) ([]ajar.AuditEvent, error)
			var stream io.Reader // the server's audit stream, verified as it arrives
			var cps []*audit.Checkpoint
			if db != "" {
				if saved != nil && key == "" {
					return usageErrorf("--key", "with --db, --checkpoint needs the verifier key (ajar audit verify prints it; GET /v1/audit/key)")
				}
				if _, err := os.Stat(db); err != nil {
					return usageErrorf("--db", "%v", err)
				}
				// Read-only: no migration, no journal change, the file is left as it was.
				st, err := sqlite.OpenReadOnly(ctx, db)
				if err != nil {
					return err
				}
				defer st.Close()
				next = audit.StorePages(st, 10000)
			} else {
				c, err := e.client(true)
				if err != nil {
					return err
				}
				if key == "" {
					if key, err = c.AuditKey(ctx); err != nil {
						return fmt.Errorf("get the checkpoint key: %w", err)
					}
				}
				// The current checkpoint first: the events read next must extend it.
				cur, err := c.Checkpoint(ctx)
				if err != nil && ajar.ErrorCode(err) != ajar.ENOTFOUND {
					return err
				}
				if err == nil && len(cur) > 0 {
					cp, err := audit.ParseCheckpoint(cur, key)
					if err != nil {
						return fmt.Errorf("server checkpoint: %w", err)
					}
					cps = append(cps, cp)
				}
				// The whole log in one audit stream; a server older than the
				// stream is read a page of JSON at a time.
				body, err := c.AuditStream(ctx, 0)
				switch {
				case err == nil:
					defer body.Close()
					stream = body
				case ajar.ErrorCode(err) == ajar.ENOTFOUND:
					next = apiPages(c)
				default:
					return err
				}
			}
			if saved != nil {
				cp, err := audit.ParseCheckpoint(saved, key)
				if err != nil {
					return fmt.Errorf("checkpoint %s: %w", checkpoint, err)
				}
				cps = append(cps, cp)
			}
			var res audit.Result
			var err error
			if stream != nil {
				res, err = audit.VerifyStream(ctx, stream, cps...)
			} else {
				res, err = audit.Verify(ctx, next, cps...)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "ok: %d events\n", res.Events)
			return nil
		},
	}
	cmd.Flags().StringVar(&checkpoint, "checkpoint", "", "a signed checkpoint saved earlier with 'ajar audit checkpoint'")
	cmd.Flags().StringVar(&key, "key", "", "the note verifier key to trust (default: fetched from the server)")
	cmd.Flags().StringVar(&db, "db", "", "verify a SQLite database file directly instead of asking the server")
	return cmd
}

// apiPages pages through the whole audit log over the API.
func apiPages(c *api.Client) func(context.Context) ([]ajar.AuditEvent, error) {
	var after int64
	return func(ctx context.Context) ([]ajar.AuditEvent, error) {
		evs, err := c.Audit(ctx, ajar.AuditFilter{AfterSeq: after, Limit: api.MaxAuditLimit})
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].Seq
		}
		return evs, nil
	}
}

func newAuditCheckpointCmd(e *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the server's signed checkpoint of the audit log (save it to verify against later)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			b, err := c.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(b)
			return err
		},
	}
}
