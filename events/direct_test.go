package events

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// The server's log (a notify.Direct sink) gets an event once the change it
// reports has committed, and never one that did not commit; it has no row in
// the outbox, where a webhook's event still goes in the same transaction.
func TestDirectSinkGetsTheEventAfterTheCommit(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir()+"/ajar.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logged bytes.Buffer // written in Update's caller (AfterCommit)
	logSink := notify.NewLog("server-log", nil, slog.New(slog.NewTextHandler(&logged, nil)))
	hook := notify.NewWebhook("hook", nil, "http://127.0.0.1:9/", nil, nil)
	var delivered []string // NotifyConfig.Delivered, in Update's caller
	n := NewNotifier(NotifyConfig{Sinks: []notify.Sink{logSink, hook}, Delivered: func(s string) { delivered = append(delivered, s) }},
		func(string) (string, error) { return "ssh-cert", nil }, func(string) bool { return false })
	r := &ajar.Request{ID: "req_1", Target: "web", Requester: "alice@example.com", Reason: "fix", Policy: "web", State: ajar.StatePending}
	create := func(tx ajar.Tx) error {
		c := *r
		c.CreatedAt, c.UpdatedAt = tx.Now(), tx.Now()
		if err := tx.CreateRequest(ctx, &c); err != nil {
			return err
		}
		return n.AuditStored(ctx, tx, r.Requester, "request.created", &c, nil)
	}
	errRefused := errors.New("refused after the audit write")
	err = st.Update(ctx, func(tx ajar.Tx) error {
		if err := create(tx); err != nil {
			return err
		}
		return errRefused
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("Update: %v", err)
	}
	if got := logged.String(); got != "" || len(delivered) != 0 {
		t.Fatalf("logged for a change that did not commit (delivered %v):\n%s", delivered, got)
	}
	err = st.Update(ctx, func(tx ajar.Tx) error {
		if err := create(tx); err != nil {
			return err
		}
		if got := logged.String(); got != "" {
			t.Errorf("logged before the commit:\n%s", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := logged.String(); strings.Count(got, "msg=notification") != 1 || !strings.Contains(got, "type=request.created") || !strings.Contains(got, "request=req_1") {
		t.Errorf("after the commit, logged:\n%s\nwant one request.created line about req_1", got)
	}
	if !slices.Equal(delivered, []string{"server-log"}) {
		t.Errorf("delivered %v, want the log sink's one event counted", delivered)
	}
	err = st.View(ctx, func(tx ajar.ReadTx) error {
		for sink, want := range map[string]int{"server-log": 0, "hook": 1} {
			ns, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Sink: sink})
			if err != nil {
				return err
			}
			if len(ns) != want {
				t.Errorf("%d outbox rows for %s, want %d", len(ns), sink, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// With only Direct sinks, the event is built after the commit (out of the
// writer's time), but from the request as it was when the change was
// notified: fn changing its request afterwards does not change the event.
func TestDirectSinkEventIsTheRequestAsNotified(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir()+"/ajar.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logged bytes.Buffer
	logSink := notify.NewLog("server-log", nil, slog.New(slog.NewTextHandler(&logged, nil)))
	n := NewNotifier(NotifyConfig{Sinks: []notify.Sink{logSink}},
		func(string) (string, error) { return "ssh-cert", nil }, func(string) bool { return false })
	err = st.Update(ctx, func(tx ajar.Tx) error {
		r := &ajar.Request{ID: "req_1", Target: "web", Requester: "alice@example.com", Reason: "fix", Policy: "web",
			State: ajar.StatePending, CreatedAt: tx.Now(), UpdatedAt: tx.Now()}
		if err := tx.CreateRequest(ctx, r); err != nil {
			return err
		}
		if err := n.enqueue(ctx, tx, "request.created", r.Requester, r.ID, r, nil, ""); err != nil {
			return err
		}
		r.Target, r.State = "db", ajar.StateDenied
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := logged.String()
	if !strings.Contains(got, "requests web") || !strings.Contains(got, "needs approval") || strings.Contains(got, "requests db") {
		t.Errorf("logged:\n%s\nwant the request as notified: pending, for web", got)
	}
}
