package sshaccess_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/sshtest"
	"github.com/ajar-dev/ajar/provider"
	"github.com/ajar-dev/ajar/sshaccess"
)

// auditActions returns the actions of the audit events about id, in order,
// and checks that their sequence numbers follow each other.
func (e *sshEnv) auditActions(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	err := e.Store.View(t.Context(), func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{Subject: id})
		for i, ev := range evs {
			if i > 0 && ev.Seq != evs[i-1].Seq+1 {
				t.Errorf("events of %s are not consecutive: %d after %d", id, ev.Seq, evs[i-1].Seq)
			}
			out = append(out, ev.Action)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The common path: an auto-approved request for an ssh-cert target and its
// certificate are one write transaction, with every audit event.
func TestCreateWithCertIsOneCommit(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	before := e.Counted.Updates()
	r, cert, err := e.ssh.CreateWithCert(ctx, e.Users["alice"], ajar.CreateInput{Target: "db", Duration: "5m", Reason: "test"}, sshtest.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.Counted.Updates() - before; n != 1 {
		t.Errorf("%d write transactions, want 1", n)
	}
	if r.State != ajar.StateActive || r.Handle == nil || len(r.Handle.Data) == 0 || cert == nil || cert.Certificate == "" {
		t.Fatalf("request %+v, cert %+v", r, cert)
	}
	if cert.Info.RequestID != r.ID || !cert.Info.ValidBefore.Equal(*r.ExpiresAt) {
		t.Errorf("certificate %+v for request %s until %s", cert.Info, r.ID, r.ExpiresAt)
	}
	// What came back is what was stored: no re-read needed.
	got, err := e.Svc.GetRequest(ctx, e.Users["alice"], r.ID)
	if err != nil || got.Version != r.Version || got.State != r.State || !got.NextAt.Equal(*r.NextAt) {
		t.Errorf("stored %+v, %v; returned %+v", got, err, r)
	}
	var certs []ajar.SSHCert
	e.Store.View(ctx, func(tx ajar.ReadTx) error { certs, err = tx.ListSSHCerts(ctx, r.ID); return err })
	if len(certs) != 1 || certs[0].Serial != cert.Info.Serial {
		t.Errorf("stored certificates %+v, issued %d", certs, cert.Info.Serial)
	}
	want := []string{"request.created", "request.approved", "grant.started", "request.activated", "ssh_cert.issued"}
	if got := e.auditActions(t, r.ID); !equal(got, want) {
		t.Errorf("audit %q, want %q", got, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A request that needs approval is created without a certificate; a bad key
// or a key the core is handed directly stores nothing.
func TestCreateWithCertRefusals(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	alice := e.Users["alice"]
	r, cert, err := e.ssh.CreateWithCert(ctx, alice, ajar.CreateInput{Target: "db", Duration: "1h", Reason: "test"}, sshtest.PublicKey(t))
	if err != nil || r.State != ajar.StatePending || cert != nil {
		t.Fatalf("needs approval: %+v %+v %v", r, cert, err)
	}
	n := e.requests(t, "alice")
	for _, key := range []string{"ssh-ed25519 AAAA-not-base64", "not a key", string(make([]byte, 17<<10))} {
		_, _, err := e.ssh.CreateWithCert(ctx, alice, ajar.CreateInput{Target: "db", Duration: "5m", Reason: "test"}, key)
		if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "ssh_public_key" {
			t.Errorf("key %.20q: %v, want invalid ssh_public_key", key, err)
		}
	}
	if _, err := e.Svc.CreateRequest(ctx, alice, ajar.CreateInput{Target: "db", Duration: "5m", Reason: "test", SSHPublicKey: sshtest.PublicKey(t)}); ajar.ErrorField(err) != "ssh_public_key" {
		t.Errorf("core CreateRequest with a key: %v, want it refused", err)
	}
	if got := e.requests(t, "alice"); got != n {
		t.Errorf("%d requests after refusals, want %d", got, n)
	}
}

// What runs in the creating transaction fails the whole creation: no
// request, no audit event, no certificate is left.
func TestCreateRequestThenIsAtomic(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	boom := errors.New("boom")
	var id string
	_, ran, err := e.Svc.CreateRequestThen(ctx, e.Users["alice"], ajar.CreateInput{Target: "db", Duration: "5m", Reason: "test"},
		func(ctx context.Context, tx ajar.Tx, r *ajar.Request) error {
			id = r.ID
			if r.State != ajar.StateActive {
				t.Errorf("then ran on a %s request", r.State)
			}
			return boom
		})
	if !errors.Is(err, boom) || ran || id == "" {
		t.Fatalf("CreateRequestThen = ran %t, %v (then saw %q)", ran, err, id)
	}
	if n := e.requests(t, "alice"); n != 0 {
		t.Errorf("%d requests stored", n)
	}
	if got := e.auditActions(t, id); len(got) != 0 {
		t.Errorf("audit events left: %q", got)
	}
}

// checkingIssuer is the real ssh-cert issuer whose signature first checks,
// from another transaction, that the certificate's record has committed.
type checkingIssuer struct {
	ajar.SSHCertIssuer
	t      *testing.T
	store  ajar.Store
	signed int
}

func (c *checkingIssuer) PrepareCert(h ajar.Handle, key []byte, serial uint64, now time.Time) (ajar.SSHCert, func() ([]byte, error), error) {
	info, sign, err := c.SSHCertIssuer.PrepareCert(h, key, serial, now)
	return info, func() ([]byte, error) {
		c.signed++
		var certs []ajar.SSHCert
		err := c.store.View(context.Background(), func(tx ajar.ReadTx) error {
			var err error
			certs, err = tx.ListSSHCerts(context.Background(), info.RequestID)
			return err
		})
		if err != nil || !slices.ContainsFunc(certs, func(s ajar.SSHCert) bool { return s.Serial == info.Serial }) {
			c.t.Errorf("signing serial %d before its record committed (records %+v, %v)", info.Serial, certs, err)
		}
		return sign()
	}, err
}

// issuerProviders hands out the checking issuer for the ssh-cert targets.
type issuerProviders struct {
	*provider.Set
	issuer *checkingIssuer
}

func (p issuerProviders) ForTarget(target string) (ajar.Provider, error) {
	prov, err := p.Set.ForTarget(target)
	if err != nil {
		return nil, err
	}
	return struct {
		ajar.Provider
		*checkingIssuer
	}{prov, p.issuer}, nil
}

func (p issuerProviders) ForHandle(h ajar.Handle) (ajar.Provider, error) {
	prov, err := p.Set.ForHandle(h)
	if err != nil {
		return nil, err
	}
	return struct {
		ajar.Provider
		*checkingIssuer
	}{prov, p.issuer}, nil
}

// A certificate is signed after the transaction that records and audits it
// has committed: the signature takes none of the writer's time, and no
// certificate exists without its record. Both paths: with the request, and
// for an active request.
func TestCertificateSignedAfterItsRecordCommits(t *testing.T) {
	e := newSSHEnv(t)
	ctx := t.Context()
	real, err := e.Provs.ForTarget("db")
	if err != nil {
		t.Fatal(err)
	}
	issuer := &checkingIssuer{SSHCertIssuer: real.(ajar.SSHCertIssuer), t: t, store: e.Store}
	svc := sshaccess.New(e.Svc, e.Counted, e.Policy, issuerProviders{e.Provs, issuer}, e.CA.AuthorizedKey)
	r, cert, err := svc.CreateWithCert(ctx, e.Users["alice"], ajar.CreateInput{Target: "db", Duration: "5m", Reason: "test"}, sshtest.PublicKey(t))
	if err != nil || cert == nil || cert.Certificate == "" {
		t.Fatalf("CreateWithCert: %+v, %v", cert, err)
	}
	second, err := svc.IssueSSHCert(ctx, e.Users["alice"], r.ID, []byte(sshtest.PublicKey(t)))
	if err != nil || second.Certificate == "" {
		t.Fatalf("IssueSSHCert: %+v, %v", second, err)
	}
	if issuer.signed != 2 {
		t.Errorf("%d signatures through the issuer, want 2", issuer.signed)
	}
}
