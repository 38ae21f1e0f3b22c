package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ajar-dev/ajar/credentials"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/provider"
)

// awsCommands returns the AWS commands: ajar credentials and ajar aws.
func awsCommands(e *cliEnv) []*cobra.Command {
	aws := &cobra.Command{Use: "aws", Short: "AWS helpers for operators"}
	aws.AddCommand(newIAMPolicyCmd(e))
	return []*cobra.Command{newCredentialsCmd(e), aws}
}

// Formats of ajar credentials.
const (
	credsEnv     = "env"
	credsProcess = "credential-process"
)

func newCredentialsCmd(e *cliEnv) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "credentials ID [--format env|credential-process]",
		Short: "Get short-lived cloud credentials for your active request (aws-sts), shown once",
		Long: `Get short-lived cloud credentials for your active request on an aws-sts target.
Each call assumes the target's role anew, for the rest of the request's window;
ajar stores none of them and audits only the access key id.

  eval "$(ajar credentials ID)"                  export them into this shell
  credential_process = ajar credentials ID --format credential-process
                                                 in ~/.aws/config, for the AWS CLI and SDKs`,
		Args: argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != credsEnv && format != credsProcess {
				return usageErrorf("--format", "must be %s or %s, not %q", credsEnv, credsProcess, format)
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			out, err := c.IssueCredentials(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if format == credsProcess {
				return writeCredentialProcess(e, out)
			}
			return writeCredentialEnv(e, out)
		},
	}
	cmd.Flags().StringVar(&format, "format", credsEnv, "env (export lines for a shell) or credential-process (the AWS CLI's JSON)")
	return cmd
}

// writeCredentialProcess prints the JSON the AWS CLI and SDKs read from a
// credential_process.
func writeCredentialProcess(e *cliEnv, c *credentials.Output) error {
	return writeJSON(e.stdout, struct {
		Version         int    `json:"Version"`
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string `json:"SecretAccessKey"`
		SessionToken    string `json:"SessionToken"`
		Expiration      string `json:"Expiration"`
	}{1, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expiration.UTC().Format(time.RFC3339)})
}

// writeCredentialEnv prints shell export lines, quoted for sh.
func writeCredentialEnv(e *cliEnv, c *credentials.Output) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# ajar: credentials for request %s (target %s), expire %s\n",
		clean(c.RequestID), clean(c.Target), c.Expiration.UTC().Format(time.RFC3339))
	line := func(k, v string) { fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v)) }
	line("AWS_ACCESS_KEY_ID", c.AccessKeyID)
	line("AWS_SECRET_ACCESS_KEY", c.SecretAccessKey)
	line("AWS_SESSION_TOKEN", c.SessionToken)
	line("AWS_CREDENTIAL_EXPIRATION", c.Expiration.UTC().Format(time.RFC3339))
	if c.Region != "" {
		line("AWS_REGION", c.Region)
	}
	_, err := fmt.Fprint(e.stdout, b.String())
	return err
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newIAMPolicyCmd(e *cliEnv) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "iam-policy [--config FILE]",
		Short: "Print the least-privilege IAM policy ajar needs for the AWS targets of a policy file",
		Long: `Print the IAM policy document ajar's own AWS credentials need to manage every
AWS target of the policy file, and nothing more: attach it to the role or user
ajar serve runs as. docs/aws/ explains each permission.`,
		Args: argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := loadPolicy(config)
			if err != nil {
				return err
			}
			doc, n, err := combinedIAMPolicy(pol.TargetNames(), func(name string) (string, json.RawMessage) {
				t, _ := pol.Target(name)
				return t.Provider, t.Config
			})
			if err != nil {
				return err
			}
			if n == 0 {
				where := config
				if where == "" {
					where = "the demo policy"
				}
				return fmt.Errorf("%s has no AWS targets", where)
			}
			_, err = fmt.Fprint(e.stdout, doc.Indented())
			return err
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "policy file (without it: the demo policy)")
	return cmd
}

// combinedIAMPolicy merges the IAM statements of every AWS target, in target
// order, dropping statements an earlier target already needs. Each statement's
// Sid names the target that first needed it. n counts the AWS targets.
func combinedIAMPolicy(targets []string, lookup func(string) (kind string, config json.RawMessage)) (awsx.Policy, int, error) {
	doc := awsx.NewPolicy()
	seen := map[string]bool{}
	n := 0
	for _, name := range targets {
		kind, config := lookup(name)
		k, ok := provider.Kinds[kind]
		if !ok || k.IAMPolicy == nil {
			continue
		}
		n++
		sts, err := k.IAMPolicy(name, config)
		if err != nil {
			return doc, n, fmt.Errorf("target %s: %w", name, err)
		}
		i := 0
		for _, st := range sts {
			st.Sid = ""
			key, _ := json.Marshal(st)
			if seen[string(key)] {
				continue
			}
			seen[string(key)] = true
			i++
			st.Sid = fmt.Sprintf("%sS%d", sidOf(name), i)
			doc.Statement = append(doc.Statement, st)
		}
	}
	return doc, n, nil
}

var notAlnum = regexp.MustCompile(`[^A-Za-z0-9]+`)

// sidOf turns a target name into a statement id prefix: "bastion-22" becomes
// "AjarBastion22" (its statements are AjarBastion22S1, AjarBastion22S2...).
func sidOf(target string) string {
	var b strings.Builder
	b.WriteString("Ajar")
	for _, part := range notAlnum.Split(target, -1) {
		if part == "" {
			continue
		}
		r := []rune(part)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	return b.String()
}
