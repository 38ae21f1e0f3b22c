package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// auditSeqs decodes an audit page into its events' seqs and has_more.
func auditSeqs(t *testing.T, w interface{ Result() *http.Response }, body []byte) ([]int64, bool) {
	t.Helper()
	if code := w.Result().StatusCode; code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var resp auditResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("response %s: %v", body, err)
	}
	var seqs []int64
	for _, e := range resp.Events {
		seqs = append(seqs, e.Seq)
	}
	return seqs, resp.HasMore
}

// TestAuditSearchQuery: every search parameter reaches the core's search (not
// the seq-order listing), the limit is capped, and a search pages backwards
// with before until has_more is false.
func TestAuditSearchQuery(t *testing.T) {
	core := newFakeCore()
	for i := int64(1); i <= 12; i++ {
		core.events = append(core.events, ajar.AuditEvent{Seq: i, Time: testTime, Actor: "ajar", Action: "request.created", Subject: "r1"})
	}
	s, _ := newTestServer(t, core)
	h := s.Handler()

	w := call(t, h, "GET", "/v1/audit?request=r1&user=alice%40example.com&target=prod-web&action=request.&since=2026-01-02T00:00:00Z&until=2026-01-03T12:30:00.5%2B02:00&before=15&limit=5", "alice-token", "")
	seqs, more := auditSeqs(t, w, w.Body.Bytes())
	want := readmodel.AuditQuery{
		Request: "r1", User: "alice@example.com", Target: "prod-web", Action: "request.",
		From: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 1, 3, 10, 30, 0, 5e8, time.UTC),
		Before: 15, Limit: 5,
	}
	if got := core.search; got.Request != want.Request || got.User != want.User || got.Target != want.Target || got.Action != want.Action ||
		!got.From.Equal(want.From) || !got.To.Equal(want.To) || got.Before != want.Before || got.Limit != want.Limit {
		t.Errorf("core got %+v, want %+v", got, want)
	}
	if core.user.ID != "alice@example.com" {
		t.Errorf("the search ran as %q, not as the caller", core.user.ID)
	}
	if !slices.Equal(seqs, []int64{12, 11, 10, 9, 8}) || !more {
		t.Errorf("first page %v more=%v, want newest first and more", seqs, more)
	}
	if slices.Contains(core.calls, "Audit") {
		t.Errorf("a search used the seq-order listing: calls %v", core.calls)
	}

	// Paging backwards with before ends with has_more false and covers every event once.
	var all []int64
	before := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		w := call(t, h, "GET", "/v1/audit?action=request.created&limit=5"+before, "alice-token", "")
		seqs, more := auditSeqs(t, w, w.Body.Bytes())
		all = append(all, seqs...)
		if !more {
			break
		}
		before = "&before=" + auditJSONInt(seqs[len(seqs)-1])
	}
	if !slices.Equal(all, []int64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}) {
		t.Errorf("pages %v", all)
	}

	// The limit is capped at a search page; above MaxAuditLimit it is refused (below).
	call(t, h, "GET", "/v1/audit?user=alice%40example.com&limit=5000", "alice-token", "")
	if core.search.Limit != readmodel.MaxAuditSearchLimit {
		t.Errorf("limit 5000 reached the core as %d", core.search.Limit)
	}
	call(t, h, "GET", "/v1/audit?user=alice%40example.com", "alice-token", "")
	if core.search.Limit != 0 {
		t.Errorf("no limit reached the core as %d, want 0 (the search's default)", core.search.Limit)
	}
	// No match is an empty list, not null.
	w = call(t, h, "GET", "/v1/audit?action=grant.started", "alice-token", "")
	if !strings.Contains(w.Body.String(), `"events":[]`) || !strings.Contains(w.Body.String(), `"has_more":false`) {
		t.Errorf("empty search = %s", w.Body)
	}
}

func auditJSONInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestAuditSearchBadInput: every bad search parameter is a 400 naming it,
// before the core is called.
func TestAuditSearchBadInput(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()
	long := strings.Repeat("x", maxAuditField+1)
	for _, tt := range []struct{ query, field string }{
		{"user=", "user"},
		{"user=" + long, "user"},
		{"user=a%0Ab", "user"},
		{"target=", "target"},
		{"target=" + long, "target"},
		{"action=Request.Created", "action"},
		{"action=request+created", "action"},
		{"action=", "action"},
		{"since=yesterday", "since"},
		{"since=24h", "since"},
		{"since=2026-01-02", "since"},
		{"since=0000-01-01T00:00:00%2B01:00", "since"},
		{"until=9999-12-31T23:00:00-01:00", "until"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-01-03T00:00:00Z&until=2026-01-02T00:00:00Z", "until"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-02T00:00:00Z", "until"},
		{"before=0", "before"},
		{"before=-1", "before"},
		{"before=x", "before"},
		{"user=alice&after=3", "after"},
		{"user=alice&limit=abc", "limit"},
		{"user=alice&limit=-1", "limit"},
		{"user=alice&limit=10001", "limit"},
		{"user=alice&request=", "request"},
		{"user=alice&request=r%001", "request"},
		{"user=alice&user=bob", "user"},
		{"user=alice&actor=bob", "actor"},
	} {
		core.calls = nil
		wantError(t, call(t, h, "GET", "/v1/audit?"+tt.query, "alice-token", ""), http.StatusBadRequest, ajar.EINVALID, tt.field)
		if len(core.calls) != 0 {
			t.Errorf("%s reached the core: %v", tt.query, core.calls)
		}
	}
}

const auditSearchPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [engineers]}
  - {id: carol@example.com, groups: [sre]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  web: {provider: fake}
  db: {provider: fake}
policies:
  - name: all
    targets: [web, db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
`

type auditNopProvider struct{}

func (auditNopProvider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	return ajar.Handle{Provider: "fake", Version: 1, Grant: req, Data: []byte(`{}`)}, nil
}
func (auditNopProvider) Revoke(ctx context.Context, h ajar.Handle) error { return nil }

type auditNopProviders struct{}

func (auditNopProviders) ForTarget(string) (ajar.Provider, error) { return auditNopProvider{}, nil }
func (auditNopProviders) ForHandle(ajar.Handle) (ajar.Provider, error) {
	return auditNopProvider{}, nil
}
func (auditNopProviders) Kind(string) (string, error) { return "fake", nil }

// realAuditCore serves the audit log from a real broker and read model over
// SQLite (and the rest from the fake): who may read what is theirs to decide.
type realAuditCore struct {
	*fakeCore
	rm *readmodel.Reader
}

func (c realAuditCore) Audit(ctx context.Context, u ajar.User, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	return c.rm.Audit(ctx, u, f)
}

func (c realAuditCore) SearchAudit(ctx context.Context, u ajar.User, q readmodel.AuditQuery) (*readmodel.AuditSearch, error) {
	return c.rm.SearchAudit(ctx, u, q)
}

// TestAuditSearchAuthorization: a search answers with the events the caller
// may read, as the web audit page decides (readmodel.SearchAudit): an admin
// searches the whole log, alice her own requests' events, and bob, who can
// see none of alice's requests, finds none of them however he searches, and
// cannot name one.
func TestAuditSearchAuthorization(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse([]byte(auditSearchPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	svc, err := broker.New(broker.Config{Store: st, Policy: pol, Providers: auditNopProviders{}})
	if err != nil {
		t.Fatal(err)
	}
	core := realAuditCore{newFakeCore(), readmodel.New(readmodel.Config{Core: svc, Store: st, Policy: pol, Providers: auditNopProviders{}})}
	users := map[string]ajar.User{}
	for _, u := range pol.Users() {
		name, _, _ := strings.Cut(u.ID, "@")
		users[name] = u
		core.tokens[name+"-token"] = u
	}
	aliceReq, err := svc.CreateRequest(ctx, users["alice"], ajar.CreateInput{Target: "db", Reason: "migration"})
	if err != nil {
		t.Fatal(err)
	}
	bobReq, err := svc.CreateRequest(ctx, users["bob"], ajar.CreateInput{Target: "web", Reason: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestServer(t, core)
	h := s.Handler()
	search := func(token, query string) []ajar.AuditEvent {
		t.Helper()
		w := call(t, h, "GET", "/v1/audit?"+query, token, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s as %s: %d %s", query, token, w.Code, w.Body)
		}
		var resp auditResponse
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Events
	}
	subjects := func(evs []ajar.AuditEvent) map[string]bool {
		m := map[string]bool{}
		for _, e := range evs {
			m[e.Subject] = true
		}
		return m
	}
	aliceQ := "user=" + url.QueryEscape("alice@example.com")
	if got := subjects(search("root-token", aliceQ)); !got[aliceReq.ID] || got[bobReq.ID] {
		t.Errorf("an admin's search for alice found %v, want %s only", got, aliceReq.ID)
	}
	if got := subjects(search("alice-token", aliceQ)); !got[aliceReq.ID] {
		t.Errorf("alice's search for her own events found %v", got)
	}
	for _, q := range []string{aliceQ, "target=db", "action=request.", "since=2000-01-01T00:00:00Z", "before=9223372036854775807"} {
		if got := subjects(search("bob-token", q)); got[aliceReq.ID] || len(got) > 1 || len(got) == 1 && !got[bobReq.ID] {
			t.Errorf("bob's search %s found %v: events of requests he cannot see", q, got)
		}
	}
	if got := subjects(search("bob-token", "action=request.created")); !got[bobReq.ID] {
		t.Errorf("bob's search found %v, not his own request", got)
	}
	// Naming alice's request is not found for bob, as GET /v1/requests/ID is.
	wantError(t, call(t, h, "GET", "/v1/audit?action=request.&request="+aliceReq.ID, "bob-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")
	// The seq-order listing of the whole log stays admin-only.
	wantError(t, call(t, h, "GET", "/v1/audit", "bob-token", ""), http.StatusForbidden, ajar.EFORBIDDEN, "")
}

// TestClientSearchAudit: the client sends every field of the query (times in
// RFC 3339, whatever their zone) and returns the page newest first with
// has_more; a query without a search field is refused before any call, since
// the server would answer it with the seq-order listing.
func TestClientSearchAudit(t *testing.T) {
	core := newFakeCore()
	for i := int64(1); i <= 5; i++ {
		core.events = append(core.events, ajar.AuditEvent{Seq: i, Time: testTime, Actor: "ajar", Action: "request.created", Subject: "r1"})
	}
	c := newTestClient(t, core, "alice-token")
	paris := time.FixedZone("CET", 3600)
	q := readmodel.AuditQuery{
		Request: "r1", User: "alice@example.com", Target: "prod-web", Action: "request.",
		From: time.Date(2026, 1, 2, 10, 0, 0, 0, paris), To: time.Date(2026, 1, 2, 12, 0, 0, 123, paris),
		Before: 5, Limit: 2,
	}
	events, next, err := c.SearchAudit(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(auditSeqsOf(events), []int64{4, 3}) || next != 3 {
		t.Errorf("page %v next=%d", auditSeqsOf(events), next)
	}
	got := core.search
	if got.Request != q.Request || got.User != q.User || got.Target != q.Target || got.Action != q.Action ||
		!got.From.Equal(q.From) || !got.To.Equal(q.To) || got.Before != q.Before || got.Limit != q.Limit {
		t.Errorf("core got %+v, want %+v", got, q)
	}
	core.calls = nil
	if _, _, err := c.SearchAudit(t.Context(), readmodel.AuditQuery{Request: "r1", Limit: 5}); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Errorf("a query with no search field: %v", err)
	}
	if len(core.calls) != 0 {
		t.Errorf("it reached the core: %v", core.calls)
	}
}

func auditSeqsOf(evs []ajar.AuditEvent) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}
