package readmodel

import (
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/sshaccess"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// evidencePolicy has an SSH target that needs one approval and may be
// extended without one.
const evidencePolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  ssh: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: ssh-prod
    targets: [ssh]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 1h
    require_reason: true
    approval:
      steps: [{approvers: [group:sre], count: 1}]
    extend: {max_extensions: 1, max_total: 1h, approval: none}
`

// TestEvidenceGolden checks ajar evidence's Markdown for a full lifecycle:
// request, approval, certificate, a session, an extension, expiry.
func TestEvidenceGolden(t *testing.T) {
	e := newWorkflowEnv(t, evidencePolicy)
	ctx := t.Context()
	r := e.createIn(t, "alice", ajar.CreateInput{Target: "ssh", Duration: "30m", Reason: "deploy 1.2.3 | hotfix", Ticket: "OPS-7"})
	e.advance(t, time.Minute)
	if _, err := e.svc.Approve(ctx, e.users["bob"], r.ID, "looks fine"); err != nil {
		t.Fatal(err)
	}
	e.advance(t, time.Minute)
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sshaccess.New(e.svc, e.store, e.pol, e.provs, nil).IssueSSHCert(ctx, e.users["alice"], r.ID, ssh.MarshalAuthorizedKey(pub))
	if err != nil {
		t.Fatal(err)
	}
	e.advance(t, 10*time.Minute)
	// A host agent reports the login (as package sshhost records it).
	details, err := json.Marshal(map[string]any{
		"host": "web-1", "user": "ubuntu", "source": "203.0.113.7", "serial": cert.Info.Serial,
		"fingerprint": ssh.FingerprintSHA256(pub), "known": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = e.store.Update(ctx, func(tx ajar.Tx) error {
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "node-web-1", Action: "ssh.session.opened", Subject: r.ID, Details: details})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "15m", Reason: "smoke tests"}); err != nil {
		t.Fatal(err)
	}
	e.advance(t, 34*time.Minute) // the extended expiry: 45m after the grant
	if st := e.get(t, r.ID).State; st != ajar.StateExpired {
		t.Fatalf("state %s", st)
	}
	ev, err := e.rm.EvidenceReport(ctx, e.users["root"], r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Integrity.HashesOK || !ev.Integrity.Covers || ev.End == nil || !ev.End.Confirmed || len(ev.Sessions) != 1 ||
		len(ev.Certificates) != 1 || len(ev.Extensions) != 1 || ev.Grant == nil {
		t.Fatalf("evidence: %+v", ev)
	}
	got := normalizeEvidence(ev.Markdown(), r.ID, cert.Info.Serial)
	golden := filepath.Join("testdata", "evidence.golden.md")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./readmodel -run TestEvidenceGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("evidence differs from %s (run with -update to accept):\n%s", golden, got)
	}

	// The requester sees the same story without the checkpoint (admins only);
	// others see nothing.
	mine, err := e.rm.EvidenceReport(ctx, e.users["alice"], r.ID)
	if err != nil || mine.Integrity.Checkpoint != "" || len(mine.Events) != len(ev.Events) {
		t.Errorf("alice's evidence: %v, %+v", err, mine.Integrity)
	}
	_, err = e.rm.EvidenceReport(ctx, e.users["bob"], "req_nope")
	wantCode(t, err, ajar.ENOTFOUND)
	if _, err := json.Marshal(ev); err != nil {
		t.Errorf("evidence does not encode as JSON: %v", err)
	}
}

var hexHash = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

// normalizeEvidence replaces what changes from run to run (the request id, the
// certificate serial, and the hashes that cover them) with stable names.
func normalizeEvidence(s, id string, serial uint64) string {
	s = strings.ReplaceAll(s, id, "REQ_ID")
	s = strings.ReplaceAll(s, fmt.Sprint(serial), "SERIAL")
	names := map[string]string{}
	return hexHash.ReplaceAllStringFunc(s, func(h string) string {
		if n, ok := names[h]; ok {
			return n
		}
		names[h] = fmt.Sprintf("HASH-%d", len(names)+1)
		return names[h]
	})
}

// TestEvidence: the web's evidence page's data is the API's evidence, with
// the whole chain verified for an admin only; the API's report never carries
// that (its JSON is unchanged).
func TestEvidence(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", "web", "30m")
	if _, err := e.svc.Approve(t.Context(), e.users["bob"], a.ID, "go"); err != nil {
		t.Fatal(err)
	}
	ev, err := e.rm.Evidence(t.Context(), e.users["root"], a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c := ev.Integrity.Chain; c == nil || !c.OK || c.Events < 4 || len(c.Head) != 32 || !ev.Integrity.HashesOK {
		t.Errorf("admin's chain status: %+v", ev.Integrity)
	}
	if len(ev.Events) != 4 || ev.Request.State != ajar.StateActive {
		t.Errorf("evidence: %d events, state %s", len(ev.Events), ev.Request.State)
	}
	ev, err = e.rm.Evidence(t.Context(), e.users["alice"], a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Integrity.Chain != nil || !ev.Integrity.HashesOK || len(ev.Events) != 4 {
		t.Errorf("requester's chain status: %+v", ev.Integrity)
	}
	if _, err := e.rm.Evidence(t.Context(), e.users["dave"], a.ID); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("someone who cannot see it: %v, want not_found", err)
	}
	rep, err := e.rm.EvidenceReport(t.Context(), e.users["root"], a.ID)
	if err != nil || rep.Integrity.Chain != nil {
		t.Errorf("API evidence for an admin: %v, chain %+v", err, rep.Integrity.Chain)
	}
}
