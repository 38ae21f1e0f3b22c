package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// The notification outbox, review tasks and extensions.

func testNotifications(t *testing.T, h *harness) {
	ctx := t.Context()
	ev := func(s string) []byte { return []byte(`{"type":"` + s + `","n":[1,2.5,"ü"]}`) }
	var ids []int64
	h.update(t, func(tx ajar.Tx) error {
		for i, s := range []string{"a", "b", "a", "a"} {
			n := &ajar.Notification{Sink: "sink-" + s, Event: ev(s), CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if i == 2 {
				n.NextAt = t0.Add(time.Hour + 1)
				n.Key = "k1"
			}
			ok, err := tx.EnqueueNotification(ctx, n)
			if err != nil || !ok {
				t.Fatalf("EnqueueNotification %d: %v, %v", i, ok, err)
			}
			if n.State != ajar.NotificationPending || n.Version != 1 || n.Attempts != 0 {
				t.Errorf("enqueued %+v", n)
			}
			if i == 0 && !n.NextAt.Equal(n.CreatedAt) {
				t.Errorf("zero NextAt became %v, want CreatedAt", n.NextAt)
			}
			ids = append(ids, n.ID)
		}
		// The same key again: nothing for that sink; another sink is separate.
		ok, err := tx.EnqueueNotification(ctx, &ajar.Notification{Sink: "sink-a", Key: "k1", Event: ev("dup"), CreatedAt: t0})
		if err != nil || ok {
			t.Errorf("duplicate key: %v, %v; want false, nil", ok, err)
		}
		ok, err = tx.EnqueueNotification(ctx, &ajar.Notification{Sink: "sink-b", Key: "k1", Event: ev("b2"), CreatedAt: t0.Add(5 * time.Second)})
		if err != nil || !ok {
			t.Errorf("same key, other sink: %v, %v", ok, err)
		}
		return nil
	})
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids do not grow: %v", ids)
		}
	}
	// A rolled-back enqueue leaves nothing behind.
	boom := errors.New("boom")
	err := h.s.Update(ctx, func(tx ajar.Tx) error {
		if _, err := tx.EnqueueNotification(ctx, &ajar.Notification{Sink: "sink-c", Event: ev("c"), CreatedAt: t0}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}

	var head *ajar.Notification
	h.view(t, func(tx ajar.ReadTx) error {
		var err error
		head, err = tx.NextNotification(ctx, "sink-a")
		if err != nil {
			return err
		}
		if head.ID != ids[0] || head.Sink != "sink-a" || !jsonEqual(head.Event, ev("a")) || !head.CreatedAt.Equal(t0) || head.Key != "" {
			t.Errorf("head of sink-a = %+v", head)
		}
		_, err = tx.NextNotification(ctx, "sink-c")
		wantCode(t, err, ajar.ENOTFOUND)
		counts, err := tx.CountPendingNotifications(ctx)
		if err != nil {
			return err
		}
		if len(counts) != 2 || counts["sink-a"] != 3 || counts["sink-b"] != 2 {
			t.Errorf("CountPendingNotifications = %v", counts)
		}
		all, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Sink: "sink-a"})
		if err != nil {
			return err
		}
		if len(all) != 3 || all[1].Key != "k1" || !all[1].NextAt.Equal(t0.Add(time.Hour+1)) {
			t.Errorf("ListNotifications(sink-a) = %+v", all)
		}
		two, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Limit: 2})
		if err != nil {
			return err
		}
		if len(two) != 2 || two[0].ID != ids[0] || two[1].ID != ids[1] {
			t.Errorf("ListNotifications(limit 2) = %+v", two)
		}
		return nil
	})

	// A failed attempt, then delivery: the head moves on.
	h.update(t, func(tx ajar.Tx) error {
		n := *head
		n.Attempts, n.LastError, n.NextAt = 1, "connection refused", t0.Add(2*time.Second+3)
		if err := tx.UpdateNotification(ctx, &n); err != nil {
			return err
		}
		if n.Version != 2 {
			t.Errorf("Version after update = %d", n.Version)
		}
		stale := *head
		wantCode(t, tx.UpdateNotification(ctx, &stale), ajar.ECONFLICT)
		missing := ajar.Notification{ID: ids[len(ids)-1] + 100, State: ajar.NotificationPending, NextAt: t0, Version: 1}
		wantCode(t, tx.UpdateNotification(ctx, &missing), ajar.ENOTFOUND)
		n.State, n.DoneAt = ajar.NotificationDelivered, tp(t0.Add(3*time.Second+7))
		return tx.UpdateNotification(ctx, &n)
	})
	h.view(t, func(tx ajar.ReadTx) error {
		next, err := tx.NextNotification(ctx, "sink-a")
		if err != nil {
			return err
		}
		if next.ID != ids[2] {
			t.Errorf("after delivering the head, next is %d, want %d", next.ID, ids[2])
		}
		done, err := tx.ListNotifications(ctx, ajar.NotificationFilter{State: ajar.NotificationDelivered})
		if err != nil {
			return err
		}
		if len(done) != 1 || done[0].Attempts != 1 || done[0].LastError != "connection refused" ||
			done[0].DoneAt == nil || !done[0].DoneAt.Equal(t0.Add(3*time.Second+7)) || done[0].Version != 3 {
			t.Errorf("delivered = %+v", done)
		}
		return nil
	})

	// Pruning removes only finished notifications done before the cut-off.
	h.update(t, func(tx ajar.Tx) error {
		_, err := tx.PruneNotifications(ctx, t0.Add(time.Hour), 0)
		wantCode(t, err, ajar.EINVALID)
		n, err := tx.PruneNotifications(ctx, t0.Add(3*time.Second+7), 10)
		if err != nil || n != 0 {
			t.Errorf("prune before DoneAt: %d, %v", n, err)
		}
		n, err = tx.PruneNotifications(ctx, t0.Add(time.Hour*24*365), 10)
		if err != nil || n != 1 {
			t.Errorf("prune: %d, %v; want 1", n, err)
		}
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		all, err := tx.ListNotifications(ctx, ajar.NotificationFilter{})
		if err != nil {
			return err
		}
		if len(all) != 4 {
			t.Errorf("%d notifications after pruning, want the 4 pending", len(all))
		}
		return nil
	})
	// A key stays taken while its notification exists, whatever its state.
	h.update(t, func(tx ajar.Tx) error {
		ok, err := tx.EnqueueNotification(ctx, &ajar.Notification{Sink: "sink-a", Key: "k1", Event: ev("again"), CreatedAt: t0})
		if err != nil || ok {
			t.Errorf("key of a pending notification: %v, %v", ok, err)
		}
		_, err = tx.EnqueueNotification(ctx, &ajar.Notification{Sink: "sink-a", Event: []byte("{not json"), CreatedAt: t0})
		wantCode(t, err, ajar.EINVALID)
		return nil
	})
}

func testReviews(t *testing.T, h *harness) {
	ctx := t.Context()
	mk := func(id string, opened time.Time) ajar.ReviewTask {
		return ajar.ReviewTask{RequestID: id, Kind: "breakglass", Requester: "bob@example.com", Target: "prod-web", Reason: "outage ✓", OpenedAt: opened}
	}
	h.update(t, func(tx ajar.Tx) error {
		for _, r := range []ajar.ReviewTask{mk("r1", t0), mk("r3", t0.Add(time.Second)), mk("r2", t0.Add(time.Second)), mk("r4", t0.Add(2*time.Second))} {
			if err := tx.CreateReview(ctx, r); err != nil {
				return err
			}
		}
		wantCode(t, tx.CreateReview(ctx, mk("r1", t0)), ajar.ECONFLICT)
		return nil
	})
	h.update(t, func(tx ajar.Tx) error {
		wantCode(t, tx.CloseReview(ctx, "nope", "root@example.com", "x", t0), ajar.ENOTFOUND)
		if err := tx.CloseReview(ctx, "r4", "root@example.com", "checked the logs", t0.Add(time.Minute+1)); err != nil {
			return err
		}
		wantCode(t, tx.CloseReview(ctx, "r4", "other@example.com", "again", t0.Add(time.Hour)), ajar.ECONFLICT)
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		r, err := tx.GetReview(ctx, "r4")
		if err != nil {
			return err
		}
		if r.ClosedAt == nil || !r.ClosedAt.Equal(t0.Add(time.Minute+1)) || r.ClosedBy != "root@example.com" ||
			r.Comment != "checked the logs" || r.Reason != "outage ✓" || !r.OpenedAt.Equal(t0.Add(2*time.Second)) || r.Kind != "breakglass" {
			t.Errorf("closed review = %+v", r)
		}
		open, err := tx.GetReview(ctx, "r1")
		if err != nil {
			return err
		}
		if open.ClosedAt != nil || open.ClosedBy != "" || open.Comment != "" {
			t.Errorf("open review = %+v", open)
		}
		_, err = tx.GetReview(ctx, "nope")
		wantCode(t, err, ajar.ENOTFOUND)
		order := func(rs []ajar.ReviewTask) string {
			s := ""
			for _, r := range rs {
				s += r.RequestID + " "
			}
			return s
		}
		all, err := tx.ListReviews(ctx, ajar.ReviewFilter{})
		if err != nil {
			return err
		}
		if got := order(all); got != "r4 r3 r2 r1 " {
			t.Errorf("ListReviews = %s, want newest first, ties by id descending", got)
		}
		open2, err := tx.ListReviews(ctx, ajar.ReviewFilter{OnlyOpen: true, Limit: 2})
		if err != nil {
			return err
		}
		if got := order(open2); got != "r3 r2 " {
			t.Errorf("ListReviews(open, limit 2) = %s", got)
		}
		// Keyset paging: after a key, including one that ties on time.
		for _, c := range []struct {
			f    ajar.ReviewFilter
			want string
		}{
			{ajar.ReviewFilter{After: &ajar.ReviewKey{OpenedAt: t0.Add(time.Second), RequestID: "r3"}}, "r2 r1 "},
			{ajar.ReviewFilter{OnlyOpen: true, Limit: 1, After: &ajar.ReviewKey{OpenedAt: t0.Add(2 * time.Second), RequestID: "r4"}}, "r3 "},
			{ajar.ReviewFilter{OnlyOpen: true, After: &ajar.ReviewKey{OpenedAt: t0.Add(time.Second), RequestID: "r2"}}, "r1 "},
			{ajar.ReviewFilter{After: &ajar.ReviewKey{OpenedAt: t0, RequestID: "r1"}}, ""},
		} {
			page, err := tx.ListReviews(ctx, c.f)
			if err != nil {
				return err
			}
			if got := order(page); got != c.want {
				t.Errorf("ListReviews(after %+v) = %q, want %q", *c.f.After, got, c.want)
			}
		}
		n, err := tx.CountOpenReviews(ctx)
		if err != nil || n != 3 {
			t.Errorf("CountOpenReviews = %d, %v; want 3", n, err)
		}
		return nil
	})
}

func testExtensions(t *testing.T, h *harness) {
	ctx := t.Context()
	approvals := []ajar.Approval{{Approver: "bob@example.com", Step: 0, Decision: ajar.DecisionApprove, Comment: "ok", At: t0.Add(7)}}
	var first, second, other ajar.Extension
	h.update(t, func(tx ajar.Tx) error {
		first = ajar.Extension{RequestID: "req-1", By: 30*time.Minute + 1, Reason: "not done", RequestedBy: "alice@example.com",
			RequestedAt: t0, State: ajar.ExtensionPending}
		second = ajar.Extension{RequestID: "req-1", By: time.Hour, RequestedBy: "alice@example.com", RequestedAt: t0.Add(time.Hour),
			State: ajar.ExtensionApplied, Approvals: approvals, DecidedAt: tp(t0.Add(time.Hour))}
		other = ajar.Extension{RequestID: "req-2", By: time.Minute, RequestedBy: "carol@example.com", RequestedAt: t0, State: ajar.ExtensionPending}
		for _, e := range []*ajar.Extension{&first, &second, &other} {
			if err := tx.CreateExtension(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if first.Seq != 1 || second.Seq != 2 || other.Seq != 1 || first.Version != 1 {
		t.Fatalf("seqs %d %d %d, version %d", first.Seq, second.Seq, other.Seq, first.Version)
	}
	h.update(t, func(tx ajar.Tx) error {
		e := first
		e.State, e.Approvals, e.DecidedAt = ajar.ExtensionDenied, approvals, tp(t0.Add(time.Minute))
		if err := tx.UpdateExtension(ctx, &e); err != nil {
			return err
		}
		if e.Version != 2 {
			t.Errorf("Version after update = %d", e.Version)
		}
		stale := first
		wantCode(t, tx.UpdateExtension(ctx, &stale), ajar.ECONFLICT)
		missing := ajar.Extension{RequestID: "req-1", Seq: 9, State: ajar.ExtensionDenied, Version: 1}
		wantCode(t, tx.UpdateExtension(ctx, &missing), ajar.ENOTFOUND)
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.ListExtensions(ctx, "req-1")
		if err != nil {
			return err
		}
		if len(got) != 2 {
			t.Fatalf("ListExtensions = %+v", got)
		}
		a, b := got[0], got[1]
		if a.Seq != 1 || a.By != 30*time.Minute+1 || a.Reason != "not done" || a.State != ajar.ExtensionDenied ||
			a.DecidedAt == nil || !a.DecidedAt.Equal(t0.Add(time.Minute)) || len(a.Approvals) != 1 || !a.Approvals[0].At.Equal(t0.Add(7)) || a.Version != 2 {
			t.Errorf("first = %+v", a)
		}
		if b.Seq != 2 || b.State != ajar.ExtensionApplied || !b.RequestedAt.Equal(t0.Add(time.Hour)) || b.RequestedBy != "alice@example.com" {
			t.Errorf("second = %+v", b)
		}
		none, err := tx.ListExtensions(ctx, "req-3")
		if err != nil || len(none) != 0 {
			t.Errorf("ListExtensions(none) = %v, %v", none, err)
		}
		return nil
	})
	// The JSON form writes By as users do.
	b, err := json.Marshal(second)
	if err != nil {
		t.Fatal(err)
	}
	var back ajar.Extension
	if err := json.Unmarshal(b, &back); err != nil || back.By != time.Hour {
		t.Errorf("JSON round trip of %s: %+v, %v", b, back, err)
	}
}

// testUpdateNotifications: UpdateNotifications writes each notification whose
// version is current, as UpdateNotification would, and reports the others
// (stale, missing, the same one twice) as not written, leaving them as they
// were; an unknown state writes nothing.
func testUpdateNotifications(t *testing.T, h *harness) {
	ctx := t.Context()
	var ns []*ajar.Notification
	h.update(t, func(tx ajar.Tx) error {
		for i := range 70 { // more than one SQLite statement's worth
			n := &ajar.Notification{Sink: "s", Event: []byte(`{}`), CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if _, err := tx.EnqueueNotification(ctx, n); err != nil {
				return err
			}
			ns = append(ns, n)
		}
		return nil
	})
	// Another writer moves notification 3 on first: its version here is stale.
	other := *ns[3]
	h.update(t, func(tx ajar.Tx) error { other.NextAt = t0.Add(time.Hour); return tx.UpdateNotification(ctx, &other) })

	done := t0.Add(time.Minute)
	var batch []*ajar.Notification
	for i, n := range ns {
		c := *n
		c.Attempts, c.LastError = 2, fmt.Sprintf("e%d", i)
		if i%2 == 0 {
			c.State, c.DoneAt = ajar.NotificationDelivered, &done
		} else {
			c.NextAt = t0.Add(time.Duration(i) * time.Minute)
		}
		batch = append(batch, &c)
	}
	missing := &ajar.Notification{ID: 1 << 40, Version: 1, State: ajar.NotificationPending, NextAt: t0}
	twice := *batch[5]
	batch = append(batch, missing, &twice)
	var written []bool
	h.update(t, func(tx ajar.Tx) error {
		var err error
		written, err = tx.UpdateNotifications(ctx, batch)
		return err
	})
	if len(written) != len(batch) {
		t.Fatalf("%d results for %d notifications", len(written), len(batch))
	}
	for i, w := range written {
		want := i != 3 && i < len(ns)
		if w != want {
			t.Errorf("notification %d: written %v, want %v", i, w, want)
		}
		if w && batch[i].Version != ns[i].Version+1 {
			t.Errorf("notification %d: version %d after writing, want %d", i, batch[i].Version, ns[i].Version+1)
		}
	}
	if batch[3].Version != ns[3].Version || twice.Version != ns[5].Version {
		t.Errorf("versions of those not written moved: %d, %d", batch[3].Version, twice.Version)
	}
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Sink: "s", Limit: 100})
		if err != nil {
			return err
		}
		byID := map[int64]ajar.Notification{}
		for _, n := range got {
			byID[n.ID] = n
		}
		for i, n := range ns {
			g, want := byID[n.ID], *batch[i]
			if i == 3 {
				want = other
			}
			if g.Version != want.Version || g.State != want.State || g.Attempts != want.Attempts || g.LastError != want.LastError ||
				!g.NextAt.Equal(want.NextAt) || (g.DoneAt == nil) != (want.DoneAt == nil) || (g.DoneAt != nil && !g.DoneAt.Equal(*want.DoneAt)) {
				t.Errorf("notification %d stored as %+v, want %+v", i, g, want)
			}
		}
		return nil
	})
	// An unknown state: EINVALID, and nothing written.
	bad := *batch[1]
	bad.State = "gone"
	good := *batch[7]
	good.Attempts = 9
	err := h.s.Update(ctx, func(tx ajar.Tx) error {
		_, err := tx.UpdateNotifications(ctx, []*ajar.Notification{&good, &bad})
		return err
	})
	if ajar.ErrorCode(err) != ajar.EINVALID {
		t.Errorf("unknown state: %v, want EINVALID", err)
	}
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Sink: "s", Limit: 100})
		for _, n := range got {
			if n.ID == good.ID && n.Attempts == 9 {
				t.Errorf("written despite the unknown state: %+v", n)
			}
		}
		return err
	})
}
