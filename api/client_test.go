package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

func newTestClient(tb testing.TB, core *fakeCore, token string) *Client {
	tb.Helper()
	s, _ := newTestServer(tb, core)
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return NewClient(s.URL()+"/", token) // a trailing slash is fine
}

func TestClientRoundTrip(t *testing.T) {
	core := newFakeCore()
	for i := int64(1); i <= 5; i++ {
		core.events = append(core.events, ajar.AuditEvent{Seq: i, Time: testTime, Actor: "ajar", Action: "request.created", Subject: "r1"})
	}
	c := newTestClient(t, core, "alice-token")
	ctx := t.Context()

	id, err := c.WhoAmI(ctx)
	if err != nil || id.ID != "alice@example.com" {
		t.Fatalf("WhoAmI = %+v, %v", id, err)
	}
	targets, err := c.Targets(ctx)
	if err != nil || len(targets) != 1 || targets[0].Steps[0].Approvers[0] != "group:sre" {
		t.Fatalf("Targets = %+v, %v", targets, err)
	}

	start := time.Date(2026, 1, 2, 16, 0, 0, 0, time.UTC)
	in := ajar.CreateInput{Target: "prod-web", Duration: "30m", Reason: "deploy", Ticket: "OPS-1",
		Start: &start, Params: map[string]string{"source_ip": "203.0.113.7"}}
	req, err := c.CreateRequest(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(core.create, in) {
		t.Errorf("core got %+v, want %+v", core.create, in)
	}
	if req.ID != "r2" || req.State != ajar.StatePending || req.Requester != "alice@example.com" {
		t.Errorf("CreateRequest = %+v", req)
	}

	got, err := c.GetRequest(ctx, "r1")
	if err != nil || got.Duration != 30*time.Minute || got.ExpiresAt == nil {
		t.Fatalf("GetRequest = %+v, %v", got, err)
	}
	list, err := c.ListRequests(ctx, readmodel.ListInput{Mine: true, State: ajar.StateActive})
	if err != nil || len(list.Requests) != 1 || list.NextCursor != "" {
		t.Fatalf("ListRequests = %v, %v", list, err)
	}
	if want := (readmodel.ListInput{Mine: true, State: ajar.StateActive}); core.list != want {
		t.Errorf("core got %+v", core.list)
	}

	if r, err := c.Approve(ctx, "r1", "lgtm"); err != nil || r.State != ajar.StateApproved || core.comment != "lgtm" {
		t.Errorf("Approve = %v, %v (comment %q)", r, err, core.comment)
	}
	if r, err := c.Deny(ctx, "r1", "freeze"); err != nil || r.State != ajar.StateDenied || core.reason != "freeze" {
		t.Errorf("Deny = %v, %v (reason %q)", r, err, core.reason)
	}
	if r, err := c.Revoke(ctx, "r1"); err != nil || r.State != ajar.StateRevoking {
		t.Errorf("Revoke = %v, %v", r, err)
	}
	if r, err := c.Cancel(ctx, "r1"); err != nil || r.State != ajar.StateCancelled {
		t.Errorf("Cancel = %v, %v", r, err)
	}
	cert, err := c.IssueSSHCert(ctx, "r1", []byte("ssh-ed25519 AAAAkey"))
	if err != nil || cert.Info.Serial != 7 || core.publicKey != "ssh-ed25519 AAAAkey" {
		t.Errorf("IssueSSHCert = %+v, %v", cert, err)
	}

	events, err := c.Audit(ctx, ajar.AuditFilter{Subject: "r1", AfterSeq: 2, Limit: 2})
	if err != nil || len(events) != 2 || events[0].Seq != 3 {
		t.Errorf("Audit = %+v, %v", events, err)
	}
	if want := (ajar.AuditFilter{Subject: "r1", AfterSeq: 2, Limit: 3}); core.filter != want { // one more: has_more
		t.Errorf("core got filter %+v", core.filter)
	}
	note, err := c.Checkpoint(ctx)
	if err != nil || string(note) != "ajar.example/audit\n3\nAAAA\n\n— ajar+1234abcd SIGSIG\n" {
		t.Errorf("Checkpoint = %q, %v", note, err)
	}

	// The public keys need no token.
	anon := NewClient(c.BaseURL, "")
	if ca, err := anon.SSHCA(ctx); err != nil || ca != core.ca {
		t.Errorf("SSHCA = %q, %v", ca, err)
	}
	if key, err := anon.AuditKey(ctx); err != nil || key != core.auditKey {
		t.Errorf("AuditKey = %q, %v", key, err)
	}
}

func TestClientErrors(t *testing.T) {
	core := newFakeCore()
	c := newTestClient(t, core, "alice-token")
	ctx := t.Context()

	// A field error comes back as an *ajar.Error with code and field.
	_, err := c.ListRequests(ctx, readmodel.ListInput{State: "sleeping"})
	if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "state" {
		t.Fatalf("err = %v, want invalid on field state", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Fatalf("err = %#v, want a *StatusError with 400", err)
	}
	var ae *ajar.Error
	if !errors.As(err, &ae) || ae.Message == "" {
		t.Fatalf("err does not unwrap to an *ajar.Error with a message: %v", err)
	}

	core.err = ajar.Errorf(ajar.EFORBIDDEN, "you cannot approve your own request")
	_, err = c.Approve(ctx, "r1", "")
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN || ajar.ErrorMessage(err) != "you cannot approve your own request" {
		t.Fatalf("err = %v", err)
	}
	core.err = nil

	if _, err := c.GetRequest(ctx, "r9"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("missing request: %v", err)
	}
	if _, err := NewClient(c.BaseURL, "wrong").WhoAmI(ctx); ajar.ErrorCode(err) != ajar.EUNAUTH {
		t.Errorf("wrong token: %v", err)
	}
	if _, err := c.GetRequest(ctx, ""); ajar.ErrorField(err) != "id" {
		t.Errorf("empty id: %v", err)
	}
	// Ids are escaped into the path.
	if _, err := c.GetRequest(ctx, "a/../../healthz"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("id with slashes: %v", err)
	}
}

func TestClientNonEnvelopeError(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer proxy.Close()
	_, err := NewClient(proxy.URL, "t").WhoAmI(t.Context())
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusBadGateway || ajar.ErrorCode(err) != ajar.EINTERNAL {
		t.Fatalf("err = %#v", err)
	}
	if ajar.ErrorMessage(err) != "server answered 502 Bad Gateway" {
		t.Errorf("message = %q", ajar.ErrorMessage(err))
	}
}
