package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// credsFake vends credentials (ajar.CredentialIssuer) for fakeProvider's grants.
type credsFake struct{ *fakeProvider }

func (f credsFake) IssueCredentials(ctx context.Context, h ajar.Handle, now time.Time) (ajar.Credentials, error) {
	return ajar.Credentials{AccessKeyID: "ASIAFAKE" + h.Grant.RequestID, SecretAccessKey: "s3cret", SessionToken: "t0ken", Expiration: h.Grant.ExpiresAt}, nil
}

// fakeSet serves one provider for every target and handle.
type fakeSet struct{ p ajar.Provider }

func (f fakeSet) ForTarget(string) (ajar.Provider, error)      { return f.p, nil }
func (f fakeSet) ForHandle(ajar.Handle) (ajar.Provider, error) { return f.p, nil }
func (f fakeSet) Kind(string) (string, error)                  { return "fake", nil }

func TestIssueCredentials(t *testing.T) {
	e := newEnv(t)
	e.svc.providers = fakeSet{credsFake{e.prov}}
	ctx := t.Context()
	r := e.create(t, "alice", "web", "5m") // auto-approved: active
	out, err := e.svc.IssueCredentials(ctx, e.users["alice"], r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out.AccessKeyID != "ASIAFAKE"+r.ID || out.SecretAccessKey != "s3cret" || out.RequestID != r.ID || out.Target != "web" {
		t.Fatalf("credentials = %+v", out)
	}
	var evs []ajar.AuditEvent
	if err := e.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(ctx, ajar.AuditFilter{Subject: r.ID})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Action != "credentials.issued" || last.Actor != "alice@example.com" || !strings.Contains(string(last.Details), out.AccessKeyID) {
		t.Fatalf("last audit event %s %s %s", last.Action, last.Actor, last.Details)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Details), "s3cret") || strings.Contains(string(ev.Details), "t0ken") {
			t.Fatalf("a secret is in the audit log: %s %s", ev.Action, ev.Details)
		}
	}
	if _, err := e.svc.IssueCredentials(ctx, e.users["bob"], r.ID); ajar.ErrorCode(err) != ajar.ENOTFOUND && ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("bob gets alice's credentials: %v", err)
	}
	if _, err := e.svc.Revoke(ctx, e.users["alice"], r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.IssueCredentials(ctx, e.users["alice"], r.ID); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("credentials for a revoked request: %v", err)
	}
}
