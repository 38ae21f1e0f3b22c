package sshaccess_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/sshtest"
)

// TestIssueSSHCertLimit: one request gets 20 certificates (the default
// limits.certificates_per_request), and the 21st is refused with ETOOMANY
// naming the limit, with nothing stored or audited.
func TestIssueSSHCertLimit(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	r := e.access(t, "alice", "db", "5m", nil).Request // auto-approved, active, one certificate
	for range 19 {
		if _, err := e.ssh.IssueSSHCert(ctx, e.Users["alice"], r.ID, []byte(sshtest.PublicKey(t))); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() (certs, events int) {
		t.Helper()
		err := e.Store.View(ctx, func(tx ajar.ReadTx) error {
			cs, err := tx.ListSSHCerts(ctx, r.ID)
			if err != nil {
				return err
			}
			evs, err := tx.ListAudit(ctx, ajar.AuditFilter{Subject: r.ID})
			certs, events = len(cs), len(evs)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return certs, events
	}
	certs, events := stored()
	if certs != 20 {
		t.Fatalf("%d certificates stored, want 20", certs)
	}
	_, err := e.ssh.IssueSSHCert(ctx, e.Users["alice"], r.ID, []byte(sshtest.PublicKey(t)))
	if ajar.ErrorCode(err) != ajar.ETOOMANY || !strings.Contains(err.Error(), "limits.certificates_per_request") {
		t.Fatalf("the 21st certificate: %v", err)
	}
	if c, ev := stored(); c != certs || ev != events {
		t.Errorf("a refused certificate stored %d certificates and %d audit events", c-certs, ev-events)
	}
}

// TestIssueSSHCertOnlyRequester: nobody but the requester gets a certificate
// for a request (one who may not see it is told there is none), and only
// while it is active.
func TestIssueSSHCertOnlyRequester(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	r := e.access(t, "alice", "db", "5m", nil).Request
	key := []byte(sshtest.PublicKey(t))
	if _, err := e.ssh.IssueSSHCert(ctx, e.Users["erin"], r.ID, key); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("an approver: %v", err)
	}
	if _, err := e.ssh.IssueSSHCert(ctx, e.Users["node-1"], r.ID, key); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Fatalf("someone who may not see it: %v", err)
	}
	if _, err := e.ssh.IssueSSHCert(ctx, e.Users["alice"], r.ID, nil); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("no key: %v", err)
	}
	e.Advance(t, 6*time.Minute) // past the 5m window: expired
	if _, err := e.ssh.IssueSSHCert(ctx, e.Users["alice"], r.ID, key); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("after expiry: %v", err)
	}
}
