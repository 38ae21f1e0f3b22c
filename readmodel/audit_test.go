package readmodel

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

func TestSearchAudit(t *testing.T) {
	e := newEnv(t)
	start := e.clock.Now()
	a := e.create(t, "alice", "web", "30m")
	e.clock.Add(time.Minute)
	b := e.create(t, "erin", "web", "30m")
	e.clock.Add(time.Minute)
	if _, err := e.svc.Approve(t.Context(), e.users["bob"], a.ID, "go"); err != nil {
		t.Fatal(err)
	}
	search := func(user string, q AuditQuery) *AuditSearch {
		t.Helper()
		res, err := e.rm.SearchAudit(t.Context(), e.users[user], q)
		if err != nil {
			t.Fatalf("%s: %+v: %v", user, q, err)
		}
		return res
	}
	subjects := func(res *AuditSearch) map[string]bool {
		m := map[string]bool{}
		for _, r := range res.Records {
			m[r.Subject] = true
		}
		return m
	}
	newestFirst := func(res *AuditSearch) bool {
		return slices.IsSortedFunc(res.Records, func(x, y AuditRecord) int { return int(y.Seq - x.Seq) })
	}

	all := search("root", AuditQuery{})
	if !all.All || !subjects(all)[a.ID] || !subjects(all)[b.ID] || !newestFirst(all) {
		t.Errorf("admin search: all %v, subjects %v", all.All, subjects(all))
	}
	if r := all.Records[0]; r.Target != "web" || r.Requester != "alice@example.com" {
		t.Errorf("newest record %+v: want target and requester of its request", r)
	}
	if got := subjects(search("alice", AuditQuery{})); !got[a.ID] || got[b.ID] {
		t.Errorf("alice sees events of %v, want only her request %s", got, a.ID)
	}
	if got := subjects(search("bob", AuditQuery{})); !got[a.ID] || !got[b.ID] {
		t.Errorf("bob, an approver of both, sees %v", got)
	}
	if res := search("alice", AuditQuery{}); res.All || !newestFirst(res) {
		t.Errorf("alice's search: All %v, newest first %v", res.All, newestFirst(res))
	}
	if _, err := e.rm.SearchAudit(t.Context(), e.users["alice"], AuditQuery{Request: b.ID}); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("alice naming erin's request: %v, want not_found", err)
	}

	for _, tt := range []struct {
		name string
		q    AuditQuery
		want []string // actions, newest first
	}{
		{"request", AuditQuery{Request: b.ID}, []string{"request.created"}},
		{"actor", AuditQuery{User: "bob@example.com"}, []string{"request.approved"}},
		{"requester", AuditQuery{User: "alice@example.com"}, []string{"request.activated", "grant.started", "request.approved", "request.created"}},
		{"action prefix", AuditQuery{Action: "request.", Request: a.ID}, []string{"request.activated", "request.approved", "request.created"}},
		{"exact action", AuditQuery{Action: "request.created"}, []string{"request.created", "request.created"}},
		{"target", AuditQuery{Target: "db"}, nil},
		{"time range", AuditQuery{From: start.Add(30 * time.Second), To: start.Add(90 * time.Second)}, []string{"request.created"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range search("root", tt.q).Records {
				got = append(got, r.Action)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("actions = %v, want %v", got, tt.want)
			}
		})
	}

	if res := search("root", AuditQuery{Limit: 2}); len(res.Records) != 2 || !res.More || res.Records[0].Seq != all.Records[0].Seq {
		t.Errorf("limit 2: %d records, more %v", len(res.Records), res.More)
	}
	for _, q := range []AuditQuery{
		{From: start, To: start},
		{Limit: MaxAuditSearchLimit + 1},
		{Action: strings.Repeat("x", 300)},
	} {
		if _, err := e.rm.SearchAudit(t.Context(), e.users["root"], q); ajar.ErrorCode(err) != ajar.EINVALID || ajar.ErrorField(err) == "" {
			t.Errorf("%+v: %v, want invalid with a field", q, err)
		}
	}
}

// A search by someone who is not an admin reads at most maxAuditScan of the
// store's matches per page: behind more matching events they may not see than
// that, a page ends early (fewer records, maybe none) with More and a Before
// that goes on from where it stopped, and paging on reaches every event they
// may see, and none other. An admin's page goes on from its last record.
func TestSearchAuditBoundedForOthers(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "alice", "web", "30m")
	b := e.create(t, "erin", "web", "30m")
	noise := maxAuditScan + 700
	if err := e.store.Update(t.Context(), func(tx ajar.Tx) error {
		for range noise { // newer than alice's events, about erin's request
			if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: e.clock.Now(), Actor: "ajar", Action: "test.noise", Subject: b.ID}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	q := AuditQuery{Target: "web", Limit: 10}
	var got []AuditRecord
	pages := 0
	for {
		res, err := e.rm.SearchAudit(t.Context(), e.users["alice"], q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, res.Records...)
		if !res.More {
			break
		}
		if res.Before <= 0 || q.Before > 0 && res.Before >= q.Before {
			t.Fatalf("page %d: more, but before %d does not go back from %d", pages, res.Before, q.Before)
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		q.Before = res.Before
	}
	for _, r := range got {
		if r.Subject != a.ID {
			t.Fatalf("alice found event %d about %s", r.Seq, r.Subject)
		}
	}
	if len(got) == 0 || pages < 2 {
		t.Errorf("alice found %d events in %d pages; want her request's events, after a page stopped by the bound", len(got), pages)
	}
	var want int
	if err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{Subject: a.ID})
		want = len(evs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != want {
		t.Errorf("alice found %d of her request's %d events", len(got), want)
	}

	res, err := e.rm.SearchAudit(t.Context(), e.users["root"], AuditQuery{Target: "web", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !res.More || len(res.Records) != 10 || res.Before != res.Records[9].Seq {
		t.Errorf("admin page: %d records, more %v, before %d", len(res.Records), res.More, res.Before)
	}
}
