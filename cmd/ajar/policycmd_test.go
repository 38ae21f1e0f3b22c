package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const demoPolicyFile = "../../policy/demo.yaml"

func TestPolicyCheck(t *testing.T) {
	r := runRaw(t, "policy", "check", demoPolicyFile)
	r.want(t, exitOK)
	if !strings.HasPrefix(r.stdout, "ok: ../../policy/demo.yaml: 1 target(s), 1 rule(s), 3 user(s), 0 warning(s)\n") {
		t.Errorf("stdout = %q", r.stdout)
	}
	bad := writeFile(t, "bad.yaml", `
users: [{id: a@example.com, groups: [eng]}, {id: b@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - {name: r, targets: [t, nope], requesters: [group:eng], default_duration: 5m, max_duration: 1m,
     approval: {steps: [{approvers: [group:sres], count: 1}]}}
`)
	r = runRaw(t, "policy", "check", bad)
	r.want(t, exitError, "has 2 problem(s):\n",
		"\n  - policies[0].targets[1]: no target named \"nope\"\n",
		"\n  - policies[0].default_duration: 5m is longer than max_duration 1m")
	// Approvability is judged once the file is otherwise valid.
	bad = writeFile(t, "bad.yaml", `
users: [{id: a@example.com, groups: [eng]}, {id: b@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - {name: r, targets: [t], requesters: [group:eng], default_duration: 5m, max_duration: 1h,
     approval: {steps: [{approvers: [group:sres], count: 1}]}}
`)
	r = runRaw(t, "policy", "check", bad)
	r.want(t, exitError, "has 2 problem(s):\n",
		"\n  - policies[0].approval.steps[0].approvers[0]: no user is in group sres",
		"\n  - policies[0].approval.steps[0].count: needs 1 approver(s) but only 0 person(s)")
	// A warning: b may request but is the only approver of his own requests.
	warn := writeFile(t, "warn.yaml", `
users: [{id: a@example.com}, {id: b@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - {name: r, targets: [t], requesters: [a@example.com, b@example.com], default_duration: 5m, max_duration: 1h,
     approval: {steps: [{approvers: [b@example.com], count: 1}]}}
`)
	r = runRaw(t, "policy", "check", warn)
	r.want(t, exitOK)
	if want := "warning: policies[0].approval.steps[0].count: needs 1 approver(s) but only 0 person(s) other than the requester may approve this step, so requests by b@example.com could never be approved\n"; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout = %q, lacks %q", r.stdout, want)
	}
	runRaw(t, "policy", "check", "--strict", warn).want(t, exitError, "1 warning(s) (--strict)")
	runRaw(t, "policy", "check", filepath.Join(t.TempDir(), "missing.yaml")).want(t, exitError, "policy file: ")
	runRaw(t, "policy", "check").want(t, exitUsage, "missing argument FILE")
	// A typo fails, with a suggestion, rather than printing help and exiting 0.
	runRaw(t, "policy", "chek", warn).want(t, exitUsage, "unknown command \"chek\" for \"ajar policy\"\n\nDid you mean this?\n  check\n")
	runRaw(t, "policy").want(t, exitUsage, "missing command")
}

func TestPolicyTest(t *testing.T) {
	cases := writeFile(t, "cases.yaml", `
now: 2026-06-01T10:00:00Z
cases:
  - name: short is auto-approved
    user: alice@example.com
    target: demo-ssh
    duration: 5m
    reason: deploy
    params: {source_ip: 203.0.113.7}
    expect: auto_approved
  - user: Alice@Example.com
    target: demo-ssh
    duration: 30m
    reason: debug
    params: {source_ip: 203.0.113.7}
    expect: needs 1 of group:sre
  - user: alice@example.com
    target: demo-ssh
    duration: 30m
    reason: debug
    params: {source_ip: 203.0.113.7}
    expect: needs approval
  - user: dave@example.com
    groups: [contractors]
    target: demo-ssh
    expect: no-policy
  - user: alice@example.com
    target: demo-ssh
    duration: 2h
    reason: long
    params: {source_ip: 203.0.113.7}
    expect: invalid
  - name: a missing reason is invalid, as the real request would be
    user: alice@example.com
    target: demo-ssh
    params: {source_ip: 203.0.113.7}
    expect: invalid
`)
	r := runRaw(t, "policy", "test", demoPolicyFile, cases)
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "ok    cases[1] Alice@Example.com demo-ssh 30m: needs 1 of group:sre\n") ||
		!strings.HasSuffix(r.stdout, "6 case(s) passed\n") {
		t.Errorf("stdout = %q", r.stdout)
	}

	failing := writeFile(t, "failing.yaml", `
cases:
  - user: alice@example.com
    target: demo-ssh
    duration: 30m
    reason: debug
    params: {source_ip: 203.0.113.7}
    expect: needs 1 of group:sres
  - user: bob@example.com
    target: demo-ssh
    reason: x
    params: {source_ip: 203.0.113.7}
    expect: auto-approved
  - user: bob@example.com
    groups: [engineers]
    target: demo-ssh
    expect: denied
  - user: alice@example.com
    target: demo-ssh
    duration: soon
    expect: denied
`)
	r = runRaw(t, "policy", "test", demoPolicyFile, failing)
	r.want(t, exitError, "error: 4 of 4 case(s) failed\n")
	for _, want := range []string{
		"FAIL  cases[0] alice@example.com demo-ssh 30m\n      expected: needs 1 of group:sres\n      policy says: needs 1 of group:sre\n      why: policy engineers-demo-ssh applies; needs approval",
		"FAIL  cases[1] bob@example.com demo-ssh default duration\n      expected: auto-approved\n      policy says: no-policy\n",
		"FAIL  cases[2] bob@example.com demo-ssh default duration: groups: only for a user who is not in the policy file",
		"FAIL  cases[3] alice@example.com demo-ssh soon: duration: \"soon\" is not a positive duration",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}

	bad := writeFile(t, "bad.yaml", "cases:\n  - {user: a@example.com, expect: maybe}\n  - {user: a@example.com, target: t, expect: denied, colour: red}\n")
	runRaw(t, "policy", "test", demoPolicyFile, bad).want(t, exitError, "field colour not found")
	bad = writeFile(t, "bad.yaml", "cases:\n  - {user: a@example.com, expect: maybe}\n")
	runRaw(t, "policy", "test", demoPolicyFile, bad).want(t, exitError, "has 2 problem(s):\n",
		"\n  - cases[0].target: required\n", "\n  - cases[0].expect: \"maybe\" is not one of")
}
