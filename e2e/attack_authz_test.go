package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// Attacks on who may decide (issue 10, items 8, 9, 10 and 15): approving
// after the approval deadline, escalate_to deciding an extension before any
// escalation, extending after being removed from the policy, break-glass
// extensions without an alert, and deciding one's own extension.

// authzAttackPolicy: alice requests and is an approver too; bob approves;
// dave is the step's escalate_to (after 10m); otto may use break-glass but is
// no requester. Extensions need approval. HOOK_URL is the test's receiver.
const authzAttackPolicy = `
users:
  - {id: alice@example.com, groups: [engineers, sre]}
  - {id: bob@example.com, groups: [sre]}
  - {id: dave@example.com, groups: [leads]}
  - {id: otto@example.com, groups: [oncall]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
scheduler: {poll_interval: 200ms, notify_retry: 500ms, notify_max_retry: 2s}
targets:
  shell: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: shell
    targets: [shell]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      timeout: 30m
      steps: [{approvers: [group:sre], count: 1, escalate_after: 10m, escalate_to: [group:leads]}]
    extend: {max_extensions: 3, max_total: 4h}
    breakglass: {allowed: [group:oncall]}
notifications:
  - {name: hook, type: webhook, url: 'HOOK_URL', secret_env: ` + hookSecretEnv + `}
`

// authzAttackPolicyLater is the policy after an edit: alice is no longer a
// requester of shell.
var authzAttackPolicyLater = strings.Replace(authzAttackPolicy, "requesters: [group:engineers]", "requesters: [group:contractors]", 1)

// authzServer writes policy (HOOK_URL replaced by rc's address) to dir and
// starts ajar on it with data in dir; env is added to the server's
// environment.
func authzServer(t *testing.T, dir, policy string, rc *receiver, env ...string) *server {
	t.Helper()
	os.Setenv(hookSecretEnv, hookSecret) // inherited by the server; the same value for every test
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(policy, "HOOK_URL", rc.srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return launch(t, dir, serveOpts{
		bin:     bin,
		args:    []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--config", cfg, "--dev"},
		env:     append(append(os.Environ(), "AJAR_MASTER_KEY=", "AJAR_DATABASE_URL=", "AJAR_TEST_CLOCK_OFFSET="), env...),
		name:    "ajar serve",
		timeout: 60 * time.Second,
		cleanup: func(s *server) {
			s.kill()
			if t.Failed() {
				t.Logf("server log:\n%s", s.logs())
			}
		},
	})
}

// refused runs the CLI as user and fails the test unless it exits non-zero
// with want in its error.
func refused(t *testing.T, s *server, user, want string, args ...string) {
	t.Helper()
	r := s.ajar(t, user, args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("ajar %s as %s: exit %d, stderr %q; want it refused with %q\nstdout: %s", strings.Join(args, " "), user, r.Code, r.Stderr, want, r.Stdout)
	}
}

// extensionsOf returns the extensions of request id, from its evidence.
func extensionsOf(t *testing.T, s *server, id string) []ajar.Extension {
	t.Helper()
	var ev struct {
		Extensions []ajar.Extension `json:"extensions"`
	}
	if err := json.Unmarshal([]byte(s.ok(t, "admin", "evidence", id, "-o", "json")), &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Extensions
}

// activeRequest has alice request shell for 30m and bob approve it.
func activeRequest(t *testing.T, s *server) *ajar.Request {
	t.Helper()
	r := s.request(t, "alice", "request", "shell", "--for", "30m", "--reason", "migration")
	if r.State != ajar.StatePending {
		t.Fatalf("request: %s", r.State)
	}
	if r = s.request(t, "bob", "approve", r.ID); r.State != ajar.StateActive {
		t.Fatalf("approved: %s", r.State)
	}
	return r
}

// TestAttackApproveAfterDeadline (item 8): a pending request the scheduler
// has not timed out yet (here: the server was down past the deadline, and
// the request's next look is still ahead, as when the scheduler is behind)
// cannot be approved once its approval deadline passed.
func TestAttackApproveAfterDeadline(t *testing.T) {
	parallel(t, costLight)
	rc := newReceiver(t)
	dir := t.TempDir()
	s := authzServer(t, dir, authzAttackPolicy, rc)
	r := s.request(t, "alice", "request", "shell", "--for", "30m", "--reason", "late")
	if r.State != ajar.StatePending {
		t.Fatalf("request: %s", r.State)
	}
	s.stop()

	// The scheduler is behind: its next look at the request is an hour away.
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, r.ID)
		if err != nil {
			return err
		}
		later := cur.ApprovalDeadline.Add(time.Hour)
		cur.NextAt = &later
		return tx.UpdateRequest(ctx, cur)
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	// 45 minutes later: past the 30m approval deadline.
	s = authzServer(t, dir, authzAttackPolicy, rc, "AJAR_TEST_CLOCK_OFFSET=45m")
	refused(t, s, "bob", "deadline", "approve", r.ID)
	refused(t, s, "bob", "deadline", "deny", r.ID, "--reason", "too late")
	if got := s.request(t, "alice", "show", r.ID); got.State != ajar.StatePending || len(got.Approvals) != 0 {
		t.Fatalf("after the attack: %s, approvals %+v", got.State, got.Approvals)
	}
	for _, e := range s.auditEvents(t) {
		if e.Subject == r.ID && (e.Action == "request.approved" || e.Action == "request.activated") {
			t.Errorf("%s after the approval deadline", e.Action)
		}
	}
}

// TestAttackEscalateToDeniesEarly (item 9): escalate_to may decide a step
// only once it escalated, and denying follows the same rule as approving: dave
// can neither deny nor approve alice's extension before it waited
// escalate_after.
func TestAttackEscalateToDeniesEarly(t *testing.T) {
	parallel(t, costLight)
	s := authzServer(t, t.TempDir(), authzAttackPolicy, newReceiver(t))
	r := activeRequest(t, s)
	s.ok(t, "alice", "extend", r.ID, "--by", "30m", "--reason", "not done")
	refused(t, s, "dave", "not an approver", "deny", r.ID, "--reason", "I say no")
	refused(t, s, "dave", "not an approver", "approve", r.ID)
	// Nor the pending request of someone else, before it escalates.
	p := s.request(t, "alice", "request", "shell", "--for", "10m", "--reason", "another")
	refused(t, s, "dave", "not an approver", "deny", p.ID, "--reason", "I say no")
	if exts := extensionsOf(t, s, r.ID); len(exts) != 1 || exts[0].State != ajar.ExtensionPending || len(exts[0].Approvals) != 0 {
		t.Fatalf("extension after dave's attempts: %+v", exts)
	}
	got := s.request(t, "bob", "approve", r.ID)
	if !got.ExpiresAt.Equal(r.ExpiresAt.Add(30 * time.Minute)) {
		t.Errorf("bob approved: expires %v, want %v", got.ExpiresAt, r.ExpiresAt.Add(30*time.Minute))
	}
}

// TestAttackExtendAfterRemovedFromPolicy (item 10): once the policy no longer
// lets alice request the target, she cannot extend the access she still has,
// and an extension she asked for before cannot be approved.
func TestAttackExtendAfterRemovedFromPolicy(t *testing.T) {
	parallel(t, costLight)
	rc := newReceiver(t)
	dir := t.TempDir()
	s := authzServer(t, dir, authzAttackPolicy, rc)
	waiting := activeRequest(t, s) // with an extension asked for before the edit
	s.ok(t, "alice", "extend", waiting.ID, "--by", "30m", "--reason", "before the edit")
	r := activeRequest(t, s)
	s.stop()

	s = authzServer(t, dir, authzAttackPolicyLater, rc)
	const why = "no longer lets alice@example.com request shell"
	refused(t, s, "alice", why, "extend", r.ID, "--by", "30m", "--reason", "after the edit")
	refused(t, s, "bob", why, "approve", waiting.ID)
	for _, x := range []*ajar.Request{r, waiting} {
		if got := s.request(t, "alice", "show", x.ID); got.State != ajar.StateActive || !got.ExpiresAt.Equal(*x.ExpiresAt) {
			t.Errorf("request %s: %s, expires %v; want active until %v", x.ID, got.State, got.ExpiresAt, x.ExpiresAt)
		}
	}
	if exts := extensionsOf(t, s, r.ID); len(exts) != 0 {
		t.Errorf("extensions after the edit: %+v", exts)
	}
	refusals := 0
	for _, e := range s.auditEvents(t) {
		if e.Subject == r.ID && e.Action == "extension.refused" {
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("%d extension.refused events, want 1", refusals)
	}
}

// TestAttackBreakglassExtendAlerts (item 10): extending break-glass access is
// break-glass again: it alerts like breakglass.used, at once.
func TestAttackBreakglassExtendAlerts(t *testing.T) {
	parallel(t, costLight)
	rc := newReceiver(t)
	s := authzServer(t, t.TempDir(), authzAttackPolicy, rc)
	r := s.request(t, "otto", "breakglass", "shell", "--for", "30m", "--reason", "INC-9: down")
	if r.State != ajar.StateActive {
		t.Fatalf("break-glass: %s", r.State)
	}
	s.ok(t, "otto", "extend", r.ID, "--by", "30m", "--reason", "still down")
	evs := rc.waitFor(t, "breakglass.extended", 60*time.Second, func(evs []notify.Event) bool {
		return slices.ContainsFunc(evs, func(e notify.Event) bool { return e.Type == "breakglass.extended" })
	})
	e := evs[slices.IndexFunc(evs, func(e notify.Event) bool { return e.Type == "breakglass.extended" })]
	if e.Request == nil || e.Request.ID != r.ID || e.Actor != "otto@example.com" || !strings.Contains(e.Summary, "BREAK-GLASS") {
		t.Errorf("breakglass.extended: %+v", e)
	}
}

// TestAttackSelfDecideExtension (item 15): alice, an approver of the step,
// can neither approve nor deny the extension of her own request, through the
// CLI or the API, and each attempt is audited.
func TestAttackSelfDecideExtension(t *testing.T) {
	parallel(t, costLight)
	s := authzServer(t, t.TempDir(), authzAttackPolicy, newReceiver(t))
	r := activeRequest(t, s)
	s.ok(t, "alice", "extend", r.ID, "--by", "30m", "--reason", "more")
	refused(t, s, "alice", "your own", "approve", r.ID)
	refused(t, s, "alice", "your own", "deny", r.ID, "--reason", "changed my mind")
	for verb, body := range map[string]string{"approve": `{"comment":"mine"}`, "deny": `{"reason":"mine"}`} {
		if status, out := s.httpDo(t, "alice", "POST", "/v1/requests/"+r.ID+"/"+verb, body); status != 403 {
			t.Errorf("POST %s as the requester: %d %s", verb, status, out)
		}
	}
	if exts := extensionsOf(t, s, r.ID); len(exts) != 1 || exts[0].State != ajar.ExtensionPending || len(exts[0].Approvals) != 0 {
		t.Fatalf("extension after alice's attempts: %+v", exts)
	}
	n := 0
	for _, e := range s.auditEvents(t) {
		if e.Subject == r.ID && e.Action == "approval.refused" && e.Actor == "alice@example.com" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d approval.refused events by alice, want 4", n)
	}
}
