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

// TestSerialsStartWithTheIssueTime: the certificates issued in one millisecond
// get serials with the same leading bits, the low 27 bits of that millisecond,
// so that they land together in the unique index on serials; the rest is
// random, so they still differ.
func TestSerialsStartWithTheIssueTime(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	r := e.access(t, "alice", "db", "5m", nil).Request
	for range 9 {
		if _, err := e.ssh.IssueSSHCert(ctx, e.Users["alice"], r.ID, []byte(sshtest.PublicKey(t))); err != nil {
			t.Fatal(err)
		}
	}
	var certs []ajar.SSHCert
	err := e.Store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		certs, err = tx.ListSSHCerts(ctx, r.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 10 {
		t.Fatalf("%d certificates, want 10", len(certs))
	}
	seen := map[uint64]bool{}
	for _, c := range certs {
		if want := uint64(c.IssuedAt.UnixMilli()) & (1<<27 - 1); c.Serial>>37 != want {
			t.Errorf("serial %#x issued at %v: leading 27 bits %#x, want %#x", c.Serial, c.IssuedAt, c.Serial>>37, want)
		}
		if seen[c.Serial&(1<<37-1)] {
			t.Errorf("serial %#x: its random part repeats", c.Serial)
		}
		seen[c.Serial&(1<<37-1)] = true
	}
}
