package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
)

// overflowBy wrapped window + by to a negative duration: the extension was
// auto-approved and the access ran until the year 2319.
const overflowBy = "2562047h47m16s"

// TestExtendOverflow: a huge extension is refused with a field error, nothing
// is stored, and the expiry and certificates stay within start + max_total.
func TestExtendOverflow(t *testing.T) {
	e := newWorkflowEnv(t, "", events.NotifyConfig{})
	ctx := t.Context()
	r := e.create(t, "alice", "ssh", "1h")
	if r.State != ajar.StateActive {
		t.Fatalf("ssh request: %s", r.State)
	}
	start, exp := e.clock.Now(), *r.ExpiresAt
	if want := start.Add(2 * time.Hour); !r.Handle.Grant.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want start + max_total %v", r.Handle.Grant.NotAfter, want)
	}
	for _, by := range []string{overflowBy, "8785h", "2h"} {
		_, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: by})
		if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "by" {
			t.Fatalf("extend by %s: %v, want a field error on by", by, err)
		}
	}
	got := e.get(t, r.ID)
	if !got.ExpiresAt.Equal(exp) || !got.Handle.Grant.ExpiresAt.Equal(exp) || got.Duration != time.Hour {
		t.Fatalf("after refused extensions: expires %v (handle %v), duration %s; want %v, 1h", got.ExpiresAt, got.Handle.Grant.ExpiresAt, got.Duration, exp)
	}
	e.store.View(ctx, func(tx ajar.ReadTx) error {
		exts, err := tx.ListExtensions(ctx, r.ID)
		if err != nil || len(exts) != 0 {
			t.Errorf("extensions stored: %+v, %v", exts, err)
		}
		return nil
	})
	if c := e.issueCert(t, "alice", r.ID); time.Unix(int64(c.ValidBefore), 0).After(start.Add(2 * time.Hour)) {
		t.Errorf("certificate valid before %v, past start + max_total", time.Unix(int64(c.ValidBefore), 0).UTC())
	}
	if n := count(e.actions(t, r.ID), "request.extended"); n != 0 {
		t.Errorf("%d request.extended events", n)
	}
}

// TestNotAfterBoundsExtensionsAndCerts: the latest end recorded with the grant
// holds even when the policy (or a tampered expiry) would allow more: an
// extension past it is refused, and a certificate never outlives it.
func TestNotAfterBoundsExtensionsAndCerts(t *testing.T) {
	e := newWorkflowEnv(t, "", events.NotifyConfig{})
	ctx := t.Context()
	r := e.create(t, "alice", "ssh", "1h")
	start := e.clock.Now()
	notAfter := start.Add(90 * time.Minute) // as if max_total was 1h30m when it was granted
	setHandle := func(edit func(*ajar.Handle)) {
		t.Helper()
		err := e.store.Update(ctx, func(tx ajar.Tx) error {
			cur, err := tx.GetRequest(ctx, r.ID)
			if err != nil {
				return err
			}
			edit(cur.Handle)
			return tx.UpdateRequest(ctx, cur)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setHandle(func(h *ajar.Handle) { h.Grant.NotAfter = notAfter })
	_, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "45m"})
	if ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) != "by" || !strings.Contains(ajar.ErrorMessage(err), "latest possible end") {
		t.Fatalf("extend past NotAfter: %v", err)
	}
	out, err := e.svc.Extend(ctx, e.users["alice"], r.ID, ajar.ExtendInput{By: "30m"})
	if err != nil || !out.Request.ExpiresAt.Equal(notAfter) {
		t.Fatalf("extend up to NotAfter: %+v, %v", out, err)
	}
	// A handle whose expiry was moved past NotAfter (by a bug or by hand):
	// the signer still stops at NotAfter.
	setHandle(func(h *ajar.Handle) { h.Grant.ExpiresAt = start.Add(300 * 24 * time.Hour) })
	if c := e.issueCert(t, "alice", r.ID); !time.Unix(int64(c.ValidBefore), 0).Equal(notAfter) {
		t.Errorf("certificate valid before %v, want NotAfter %v", time.Unix(int64(c.ValidBefore), 0).UTC(), notAfter)
	}
}

// windowPolicy has the README's business-hours rule.
const windowPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
targets:
  web: {provider: fake}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 1h
    max_duration: 2h
    deny:
      - {expr: 'now.getHours("UTC") < 8 || now.getHours("UTC") >= 18', message: outside business hours}
    approval:
      timeout: 24h
      steps: [{approvers: [group:sre], count: 1}]
`

// TestConditionsSeeGrantTime: conditions are about the window, not the time
// of asking. The clock starts at 09:00 UTC.
func TestConditionsSeeGrantTime(t *testing.T) {
	e := newWorkflowEnv(t, windowPolicy, events.NotifyConfig{})
	ctx := context.Background()
	now := e.clock.Now()
	night := now.Add(17 * time.Hour) // 02:00 tomorrow
	_, err := e.svc.CreateRequest(ctx, e.users["alice"], ajar.CreateInput{Target: "web", Reason: "x", Start: &night})
	if ajar.ErrorCode(err) != ajar.EFORBIDDEN || !strings.Contains(ajar.ErrorMessage(err), "business hours") {
		t.Fatalf("made at 09:00 for 02:00: %v, want denied", err)
	}
	// Made and approved in hours: granted.
	ok := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Reason: "x"})
	if _, err := e.svc.Approve(ctx, e.users["bob"], ok.ID, ""); err != nil {
		t.Fatal(err)
	}
	if st := e.get(t, ok.ID).State; st != ajar.StateActive {
		t.Fatalf("made and approved at 09:00: %s", st)
	}
	// Made for 17:30, approved at 18:30: the grant would begin out of hours.
	late := now.Add(8*time.Hour + 30*time.Minute)
	r := e.createIn(t, "alice", ajar.CreateInput{Target: "web", Reason: "x", Duration: "2h", Start: &late})
	if r.State != ajar.StatePending {
		t.Fatalf("made at 09:00 for 17:30: %s", r.State)
	}
	e.advance(t, 9*time.Hour+30*time.Minute)
	if _, err := e.svc.Approve(ctx, e.users["bob"], r.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, r.ID); got.State != ajar.StateDenied || got.Handle != nil {
		t.Fatalf("approved at 18:30: %s (handle %v), want denied and never granted", got.State, got.Handle)
	}
	if g, _ := e.prov.counts(); g != 1 {
		t.Errorf("granted %d times, want once (the request in hours)", g)
	}
	if acts := e.actions(t, r.ID); count(acts, "request.denied") != 1 || count(acts, "grant.started") != 0 {
		t.Errorf("audit: %v", acts)
	}
}
