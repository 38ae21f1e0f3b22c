package credentials_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/credentials"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// credsFake grants nothing real and vends fixed credentials.
type credsFake struct{}

func (credsFake) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req, Data: []byte(`{}`)}, nil
}

func (credsFake) Revoke(ctx context.Context, h ajar.Handle) error { return nil }

func (credsFake) IssueCredentials(ctx context.Context, h ajar.Handle, now time.Time) (ajar.Credentials, error) {
	return ajar.Credentials{AccessKeyID: "ASIAFAKE" + h.Grant.RequestID, SecretAccessKey: "s3cret", SessionToken: "t0ken", Expiration: h.Grant.ExpiresAt}, nil
}

type providers struct{}

func (providers) ForTarget(string) (ajar.Provider, error)      { return credsFake{}, nil }
func (providers) ForHandle(ajar.Handle) (ajar.Provider, error) { return credsFake{}, nil }
func (providers) Kind(string) (string, error)                  { return "fake", nil }

type env struct {
	svc        *broker.Service
	creds      *credentials.Service
	store      *sqlite.Store
	alice, bob ajar.User
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pol, err := policy.Parse([]byte(`
users: [{id: alice@example.com}, {id: bob@example.com}]
targets: {cloud: {provider: fake}}
policies:
  - {name: cloud, targets: [cloud], requesters: [alice@example.com, bob@example.com], default_duration: 1h, max_duration: 2h, approval: {auto_approve: 'true'}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) }
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: providers{}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := pol.User("alice@example.com")
	bob, _ := pol.User("bob@example.com")
	return &env{svc: svc, creds: credentials.New(svc, st, providers{}, clock), store: st, alice: alice, bob: bob}
}

func TestIssueCredentials(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	r, err := e.svc.CreateRequest(ctx, e.alice, ajar.CreateInput{Target: "cloud", Duration: "5m", Reason: "test"})
	if err != nil || r.State != ajar.StateActive {
		t.Fatalf("request: %+v, %v", r, err)
	}
	out, err := e.creds.IssueCredentials(ctx, e.alice, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out.AccessKeyID != "ASIAFAKE"+r.ID || out.SecretAccessKey != "s3cret" || out.RequestID != r.ID || out.Target != "cloud" {
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
	if _, err := e.creds.IssueCredentials(ctx, e.bob, r.ID); ajar.ErrorCode(err) != ajar.ENOTFOUND && ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("bob gets alice's credentials: %v", err)
	}
	if _, err := e.svc.Revoke(ctx, e.alice, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.creds.IssueCredentials(ctx, e.alice, r.ID); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("credentials for a revoked request: %v", err)
	}
}
