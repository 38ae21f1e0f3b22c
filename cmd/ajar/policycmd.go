package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/policy"
)

// ajar policy check and ajar policy test: a policy file reviewed like code, in
// CI, without a server. The case file format is docs/policy-tests.md.

func newPolicyCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check a policy file, and test it against cases (no server needed)",
		// A mistyped subcommand must fail, not print help and exit 0: in CI
		// that would pass a check that never ran.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return errors.New(msg) // before any command ran: a usage error
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageErrorf("", "missing command: ajar policy check FILE, or ajar policy test FILE CASES")
		},
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newPolicyCheckCmd(e), newPolicyTestCmd(e))
	return cmd
}

func newPolicyCheckCmd(e *cliEnv) *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file: every problem with its field path, and the warnings",
		Long: `Validate a policy file as ajar serve would, without starting anything. Every problem
is listed with its field path, one a line, and the command exits 1; warnings (such as a
step some requesters' requests could never complete) are listed and exit 0 unless
--strict is given.`,
		Example: `  ajar policy check /etc/ajar/policy.yaml`,
		Args:    argNames("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := loadPolicyFile(args[0])
			if err != nil {
				return err
			}
			warns := pol.Warnings()
			for _, w := range warns {
				fmt.Fprintf(e.stdout, "warning: %s: %s\n", clean(w.Field), clean(w.Message))
			}
			if strict && len(warns) > 0 {
				return fmt.Errorf("policy file %s has %d warning(s) (--strict)", args[0], len(warns))
			}
			_, err = fmt.Fprintf(e.stdout, "ok: %s: %d target(s), %d rule(s), %d user(s), %d warning(s)\n",
				clean(args[0]), len(pol.TargetNames()), len(pol.Rules()), len(pol.Users()), len(warns))
			return err
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 on warnings too")
	return cmd
}

// loadPolicyFile is loadPolicy for a file that must be given.
func loadPolicyFile(path string) (*policy.Policy, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	return loadPolicy(path)
}

func newPolicyTestCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "test FILE CASES",
		Short: "Check what a policy file decides for each case in a file of cases",
		Long: `Run each case of CASES (a YAML file, see docs/policy-tests.md) through the policy in
FILE, exactly as ajar explain would, and compare the outcome with the case's expect:
"auto-approved", "needs approval", "needs 1 of group:sre" (steps joined by "; then "),
"denied", "invalid" or "no-policy". Every case is reported; the command exits 1 when
any fails, saying what was expected and what the policy says.`,
		Example: `  ajar policy test policy.yaml policy-tests.yaml`,
		Args:    argNames("FILE", "CASES"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := loadPolicyFile(args[0])
			if err != nil {
				return err
			}
			cf, err := readCaseFile(args[1])
			if err != nil {
				return err
			}
			now := e.now()
			if cf.Now != nil {
				now = *cf.Now
			}
			failed := 0
			for i, c := range cf.Cases {
				got, why, err := c.run(pol, now)
				name := caseName(i, c)
				switch {
				case err != nil:
					failed++
					fmt.Fprintf(e.stdout, "FAIL  %s: %s\n", clean(name), cleanLines(err.Error()))
				case normalizeExpect(c.Expect) != normalizeExpect(got) &&
					!(normalizeExpect(c.Expect) == "needs approval" && strings.HasPrefix(got, "needs ")):
					failed++
					fmt.Fprintf(e.stdout, "FAIL  %s\n      expected: %s\n      policy says: %s\n      why: %s\n",
						clean(name), clean(c.Expect), clean(got), clean(why))
				default:
					fmt.Fprintf(e.stdout, "ok    %s: %s\n", clean(name), clean(got))
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d case(s) failed", failed, len(cf.Cases))
			}
			_, err = fmt.Fprintf(e.stdout, "%d case(s) passed\n", len(cf.Cases))
			return err
		},
	}
	return cmd
}

// caseFile is a file of policy test cases (docs/policy-tests.md).
type caseFile struct {
	// Now is the time the cases are evaluated at (conditions on now,
	// request.start); the current time when absent.
	Now   *time.Time   `yaml:"now"`
	Cases []policyCase `yaml:"cases"`
}

// policyCase is one request and the outcome the policy should give it.
type policyCase struct {
	Name   string   `yaml:"name"`
	User   string   `yaml:"user"`
	Groups []string `yaml:"groups"` // only for a user not in the policy file (from an identity provider)
	Target string   `yaml:"target"`
	// Duration is as on the command line ("30m"); empty for the rule's default.
	Duration string            `yaml:"duration"`
	Reason   string            `yaml:"reason"`
	Ticket   string            `yaml:"ticket"`
	Params   map[string]string `yaml:"params"`
	Start    *time.Time        `yaml:"start"`
	Expect   string            `yaml:"expect"`
}

// maxCaseFile bounds what policy test reads.
const maxCaseFile = 4 << 20

// readCaseFile reads and checks a case file: unknown fields and cases without
// a user, target or expect are errors naming the case.
func readCaseFile(path string) (*caseFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("case file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCaseFile+1))
	if err != nil {
		return nil, fmt.Errorf("case file: %w", err)
	}
	if len(data) > maxCaseFile {
		return nil, fmt.Errorf("case file %s: larger than %d bytes", path, maxCaseFile)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cf caseFile
	if err := dec.Decode(&cf); err != nil {
		return nil, fmt.Errorf("case file %s: %w", path, err)
	}
	var probs []string
	for i, c := range cf.Cases {
		for field, v := range map[string]string{"user": c.User, "target": c.Target, "expect": c.Expect} {
			if strings.TrimSpace(v) == "" {
				probs = append(probs, fmt.Sprintf("cases[%d].%s: required", i, field))
			}
		}
		if c.Expect != "" && !validExpect(c.Expect) {
			probs = append(probs, fmt.Sprintf(`cases[%d].expect: %q is not one of "auto-approved", "needs approval", "needs N of APPROVERS[; then N of APPROVERS]...", "denied", "invalid", "no-policy"`, i, c.Expect))
		}
	}
	if len(cf.Cases) == 0 {
		probs = append(probs, "cases: the file has no cases")
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("case file %s has %d problem(s):\n  - %s", path, len(probs), strings.Join(probs, "\n  - "))
	}
	return &cf, nil
}

func validExpect(s string) bool {
	switch n := normalizeExpect(s); n {
	case "auto-approved", "needs approval", "denied", "invalid", "no-policy":
		return true
	default:
		return strings.HasPrefix(n, "needs ") && strings.Contains(n, " of ")
	}
}

// normalizeExpect makes "auto_approved", "Auto-Approved" and "needs 1 of
// group:sre , bob" compare equal to their canonical forms.
func normalizeExpect(s string) string {
	s = strings.ToLower(strings.Join(strings.Fields(s), " "))
	s = strings.ReplaceAll(s, "_", "-")
	s = strings.ReplaceAll(s, " ,", ",")
	return strings.ReplaceAll(s, ", ", ",")
}

func caseName(i int, c policyCase) string {
	if c.Name != "" {
		return fmt.Sprintf("cases[%d] %s", i, c.Name)
	}
	d := c.Duration
	if d == "" {
		d = "default duration"
	}
	return fmt.Sprintf("cases[%d] %s %s %s", i, c.User, c.Target, d)
}

// run explains the case's request with policy.Explain and says the outcome in
// the expect language, with Explain's summary as why. A required input the case
// does not give (a reason, ticket or parameter) makes it "invalid", as the real
// request would be. err is a case that cannot be run (unknown user, bad
// duration).
func (c policyCase) run(pol *policy.Policy, now time.Time) (got, why string, err error) {
	u, known := pol.User(c.User)
	switch {
	case known && len(c.Groups) > 0:
		return "", "", errors.New("groups: only for a user who is not in the policy file; this one is")
	case !known:
		u = ajar.User{ID: ajar.CanonicalUserID(c.User), Groups: c.Groups}
	}
	var d time.Duration
	if c.Duration != "" {
		if d, err = time.ParseDuration(c.Duration); err != nil || d <= 0 {
			return "", "", fmt.Errorf("duration: %q is not a positive duration such as 30m", c.Duration)
		}
	}
	ex := pol.Explain(u, policy.Input{
		Target: c.Target, Duration: d, Reason: c.Reason, Ticket: c.Ticket,
		Params: c.Params, Start: c.Start, Now: now,
	})
	why = ex.Summary
	if ex.Error != nil && ex.Error.Message != "" && !strings.Contains(why, ex.Error.Message) {
		why += ": " + ex.Error.Message
	}
	switch ex.Outcome {
	case policy.OutcomeAutoApproved, policy.OutcomeNeedsApproval:
		if len(ex.Missing) > 0 {
			return "invalid", why, nil
		}
	case policy.OutcomeNoPolicy:
		return "no-policy", why, nil
	default:
		return strings.ReplaceAll(ex.Outcome, "_", "-"), why, nil
	}
	if ex.Outcome == policy.OutcomeAutoApproved {
		return "auto-approved", why, nil
	}
	steps := make([]string, len(ex.Steps))
	for i, s := range ex.Steps {
		steps[i] = fmt.Sprintf("%d of %s", s.Count, strings.Join(s.Approvers, ","))
	}
	return "needs " + strings.Join(steps, "; then "), why, nil
}
