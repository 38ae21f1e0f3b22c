package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// IssueLogin makes the drift tests' fake a database provider too.
func (f *accessFake) IssueLogin(_ context.Context, h ajar.Handle, now time.Time) (ajar.DBLogin, error) {
	return ajar.DBLogin{User: "ajar_" + h.Grant.RequestID, Password: "pa55word", Host: "db", Port: 5432, Database: "app",
		DSN: "postgres://ajar_" + h.Grant.RequestID + "@db:5432/app", ExpiresAt: h.Grant.ExpiresAt}, nil
}

func TestIssueDBLogin(t *testing.T) {
	e := newDriftEnv(t, false)
	ctx := t.Context()
	r := e.request(t, e.alice)
	out, err := e.svc.IssueDBLogin(ctx, e.alice, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out.User != "ajar_"+r.ID || out.Password != "pa55word" || out.RequestID != r.ID || out.Target != "cloud" {
		t.Fatalf("login = %+v", out)
	}
	evs := e.events(t, r.ID)
	last := evs[len(evs)-1]
	if last.Action != "db_credentials.issued" || last.Actor != "alice@example.com" || !strings.Contains(string(last.Details), out.User) {
		t.Fatalf("last audit event %s %s %s", last.Action, last.Actor, last.Details)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Details), "pa55word") {
			t.Fatalf("the password is in the audit log: %s %s", ev.Action, ev.Details)
		}
	}
	if _, err := e.svc.IssueDBLogin(ctx, e.bob, r.ID); ajar.ErrorCode(err) != ajar.ENOTFOUND && ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Fatalf("bob gets alice's login: %v", err)
	}
	if _, err := e.svc.Revoke(ctx, e.alice, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.IssueDBLogin(ctx, e.alice, r.ID); ajar.ErrorCode(err) != ajar.ECONFLICT {
		t.Fatalf("login for a revoked request: %v", err)
	}
}
