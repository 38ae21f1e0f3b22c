package broker

import (
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
)

// TestFreeTextRefusedAtEdge checks that every method taking free text refuses
// control characters, bidirectional controls and invalid UTF-8 with an
// EINVALID naming the field, while multi-line text from a textarea passes.
func TestFreeTextRefusedAtEdge(t *testing.T) {
	e := newWorkflowEnv(t, "", events.NotifyConfig{})
	ctx := t.Context()
	wantField := func(t *testing.T, err error, field string) {
		t.Helper()
		if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != field {
			t.Fatalf("error %v, want EINVALID on field %s", err, field)
		}
	}
	_, err := e.svc.CreateRequest(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "fix \x1b[2J\x1b[Happroved by root"})
	wantField(t, err, "reason")
	_, err = e.svc.CreateRequest(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "ok", Ticket: "OPS-\u202e7"})
	wantField(t, err, "ticket")
	_, err = e.svc.CreateRequest(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "bad \xff utf-8"})
	wantField(t, err, "reason")
	_, err = e.svc.Breakglass(ctx, e.users["bob"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "outage \u2066hidden\u2069"})
	wantField(t, err, "reason")

	r := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Duration: "30m", Reason: "line one\r\nline two\n\tindented"})
	_, err = e.svc.Approve(ctx, e.users["bob"], r.ID, "ok \x1b]8;;https://evil.example\x07link")
	wantField(t, err, "comment")
	_, err = e.svc.Deny(ctx, e.users["bob"], r.ID, "no \u202e")
	wantField(t, err, "reason")
	if _, err := e.svc.Approve(ctx, e.users["bob"], r.ID, "fine\nby me"); err != nil {
		t.Fatal(err)
	}
	if st := e.get(t, r.ID).State; st != ajar.StateActive {
		t.Fatalf("state %s", st)
	}
	_, err = e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "10m", Reason: "more \u009b31m"})
	wantField(t, err, "reason")

	bg, err := e.svc.Breakglass(ctx, e.users["bob"], ajar.CreateInput{Target: "web", Duration: "30m", Reason: "outage"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CloseReview(ctx, e.users["root"], bg.ID, "checked \r overwritten")
	wantField(t, err, "comment")
}
