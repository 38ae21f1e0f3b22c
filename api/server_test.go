package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestServer(tb testing.TB, core Core) (*Server, *syncBuffer) {
	tb.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return NewServer(core, idsOf(core), Options{Addr: "127.0.0.1:0", Logger: log}), logs
}

// call sends one request through the handler. token "" sends no Authorization header.
func call(tb testing.TB, h http.Handler, method, target, token, body string) *httptest.ResponseRecorder {
	tb.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	r := httptest.NewRequest(method, target, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// envelope decodes an error response, checking its shape.
func envelope(tb testing.TB, w *httptest.ResponseRecorder) errorBody {
	tb.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("Content-Type = %q, want application/json; body %s", ct, w.Body)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		tb.Fatalf("error body is not JSON: %v: %s", err, w.Body)
	}
	if len(raw) != 1 || raw["error"] == nil {
		tb.Fatalf("error body = %s, want only an \"error\" object", w.Body)
	}
	if f, ok := raw["error"]["field"]; ok && f == "" {
		tb.Fatalf("error body has an empty field: %s", w.Body)
	}
	var env errorEnvelope
	json.Unmarshal(w.Body.Bytes(), &env)
	return env.Error
}

func wantError(tb testing.TB, w *httptest.ResponseRecorder, status int, code, field string) errorBody {
	tb.Helper()
	if w.Code != status {
		tb.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body)
	}
	e := envelope(tb, w)
	if e.Code != code || e.Field != field {
		tb.Fatalf("error = %+v, want code %q field %q", e, code, field)
	}
	if e.Message == "" {
		tb.Fatalf("error has no message: %s", w.Body)
	}
	return e
}

func TestAuth(t *testing.T) {
	s, _ := newTestServer(t, newFakeCore())
	h := s.Handler()
	for _, route := range []string{
		"GET /v1/whoami", "GET /v1/targets", "POST /v1/requests", "GET /v1/requests",
		"GET /v1/requests/r1", "POST /v1/requests/r1/approve", "POST /v1/requests/r1/deny",
		"POST /v1/requests/r1/revoke", "POST /v1/requests/r1/cancel", "POST /v1/requests/r1/ssh-cert",
		"GET /v1/audit", "GET /v1/audit/checkpoint",
	} {
		method, path, _ := strings.Cut(route, " ")
		t.Run(route, func(t *testing.T) {
			w := call(t, h, method, path, "", "")
			wantError(t, w, http.StatusUnauthorized, ajar.EUNAUTH, "")
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			wantError(t, call(t, h, method, path, "no-such-token", ""), http.StatusUnauthorized, ajar.EUNAUTH, "")
		})
	}

	for _, header := range []string{"Basic YWxpY2U6cHc=", "Bearer", "Bearer ", "alice-token", "Bearer a b"} {
		r := httptest.NewRequest("GET", "/v1/whoami", nil)
		r.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		wantError(t, w, http.StatusUnauthorized, ajar.EUNAUTH, "")
	}

	w := call(t, h, "GET", "/v1/whoami", "alice-token", "")
	if w.Code != http.StatusOK {
		t.Fatalf("whoami with a good token: %d %s", w.Code, w.Body)
	}
	var id ajar.Caller
	if err := json.Unmarshal(w.Body.Bytes(), &id); err != nil || id.ID != "alice@example.com" {
		t.Fatalf("whoami = %s (%v)", w.Body, err)
	}
	// The scheme is case-insensitive (RFC 9110).
	r := httptest.NewRequest("GET", "/v1/whoami", nil)
	r.Header.Set("Authorization", "bearer alice-token")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("lower-case bearer: %d %s", w.Code, w.Body)
	}
}

func TestAuthCoreErrors(t *testing.T) {
	core := newFakeCore()
	s, logs := newTestServer(t, core)

	// Whatever the core says about a token, the client learns only that it was refused.
	core.authErr = ajar.Errorf(ajar.ENOTFOUND, "token hash abc not found")
	e := wantError(t, call(t, s.Handler(), "GET", "/v1/whoami", "alice-token", ""), http.StatusUnauthorized, ajar.EUNAUTH, "")
	if strings.Contains(e.Message, "abc") {
		t.Errorf("message leaks the core's text: %q", e.Message)
	}

	// A store failure is not the client's fault.
	core.authErr = errors.New("database is locked")
	e = wantError(t, call(t, s.Handler(), "GET", "/v1/whoami", "alice-token", ""), http.StatusInternalServerError, ajar.EINTERNAL, "")
	if e.Message != "internal error" {
		t.Errorf("message = %q", e.Message)
	}
	if !strings.Contains(logs.String(), "database is locked") {
		t.Errorf("internal error not logged: %s", logs)
	}
}

func TestErrorStatus(t *testing.T) {
	for _, tt := range []struct {
		err     error
		status  int
		code    string
		field   string
		message string
	}{
		{ajar.FieldErrorf("duration", "exceeds the maximum of 2h"), 400, ajar.EINVALID, "duration", "exceeds the maximum of 2h"},
		{ajar.Errorf(ajar.EUNAUTH, "expired"), 401, ajar.EUNAUTH, "", "expired"},
		{ajar.Errorf(ajar.EFORBIDDEN, "you cannot approve your own request"), 403, ajar.EFORBIDDEN, "", "you cannot approve your own request"},
		{ajar.Errorf(ajar.ENOTFOUND, "no request r9"), 404, ajar.ENOTFOUND, "", "no request r9"},
		{ajar.Errorf(ajar.ECONFLICT, "request is not pending"), 409, ajar.ECONFLICT, "", "request is not pending"},
		{fmt.Errorf("approve r1: %w", ajar.Errorf(ajar.ECONFLICT, "lost a race")), 409, ajar.ECONFLICT, "", "lost a race"},
		{ajar.Errorf(ajar.EINTERNAL, "disk full at /var/lib/ajar"), 500, ajar.EINTERNAL, "", "internal error"},
		{ajar.Errorf("weird", "secret detail"), 500, ajar.EINTERNAL, "", "internal error"},
		{errors.New("pq: connection refused to 10.0.0.5"), 500, ajar.EINTERNAL, "", "internal error"},
	} {
		t.Run(tt.err.Error(), func(t *testing.T) {
			core := newFakeCore()
			core.err = tt.err
			s, logs := newTestServer(t, core)
			w := call(t, s.Handler(), "POST", "/v1/requests/r1/approve", "bob-token", `{"comment":"ok"}`)
			e := wantError(t, w, tt.status, tt.code, tt.field)
			if e.Message != tt.message {
				t.Errorf("message = %q, want %q", e.Message, tt.message)
			}
			if tt.status == 500 && !strings.Contains(logs.String(), tt.err.Error()) {
				t.Errorf("internal error %q not logged:\n%s", tt.err, logs)
			}
		})
	}
}

func TestDecodeBody(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()
	for _, tt := range []struct {
		name, path, body string
		field            string
	}{
		{"unknown field", "/v1/requests", `{"target":"prod-web","bogus":1}`, "bogus"},
		{"case-folded name", "/v1/requests", `{"Target":"prod-web"}`, "Target"},
		{"wrong type", "/v1/requests", `{"target":5}`, "target"},
		{"bad time", "/v1/requests", `{"target":"x","start":"tomorrow"}`, "start"},
		{"bad param value", "/v1/requests", `{"target":"x","params":{"source_ip":1}}`, "params.source_ip"},
		{"params not an object", "/v1/requests", `{"target":"x","params":"a=b"}`, "params"},
		{"malformed", "/v1/requests", `{"target":`, ""},
		{"not an object", "/v1/requests", `["prod-web"]`, ""},
		{"null", "/v1/requests", `null`, ""},
		{"trailing data", "/v1/requests", `{"target":"x"} {"target":"y"}`, ""},
		{"unknown field on approve", "/v1/requests/r1/approve", `{"comment":"ok","approve":true}`, "approve"},
		{"any field on revoke", "/v1/requests/r1/revoke", `{"force":true}`, "force"},
		{"ssh-cert without key", "/v1/requests/r1/ssh-cert", `{}`, "public_key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			core.calls = nil
			wantError(t, call(t, h, "POST", tt.path, "alice-token", tt.body), http.StatusBadRequest, ajar.EINVALID, tt.field)
			if len(core.calls) != 0 {
				t.Errorf("core was called (%v) with bad input", core.calls)
			}
		})
	}

	t.Run("too large", func(t *testing.T) {
		body := `{"target":"prod-web","reason":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
		e := wantError(t, call(t, h, "POST", "/v1/requests", "alice-token", body), http.StatusBadRequest, ajar.EINVALID, "")
		if !strings.Contains(e.Message, "larger than") {
			t.Errorf("message = %q", e.Message)
		}
	})
}

func TestCreateRequest(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	body := `{"target":"prod-web","duration":"45m","reason":"deploy hotfix","ticket":"OPS-42",
		"start":"2026-01-02T16:00:00Z","params":{"source_ip":"203.0.113.7"}}`
	w := call(t, s.Handler(), "POST", "/v1/requests", "alice-token", body)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	start := time.Date(2026, 1, 2, 16, 0, 0, 0, time.UTC)
	want := ajar.CreateInput{
		Target: "prod-web", Duration: "45m", Reason: "deploy hotfix", Ticket: "OPS-42",
		Start: &start, Params: map[string]string{"source_ip": "203.0.113.7"},
	}
	if !reflect.DeepEqual(core.create, want) {
		t.Errorf("core got %+v, want %+v", core.create, want)
	}
	if core.user.ID != "alice@example.com" {
		t.Errorf("core got user %q", core.user.ID)
	}
	if loc := w.Header().Get("Location"); loc != "/v1/requests/r2" {
		t.Errorf("Location = %q", loc)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "target", "requester", "state", "reason", "created_at", "approvals"} {
		if _, ok := got[k]; !ok {
			t.Errorf("response lacks %q: %s", k, w.Body)
		}
	}
	if a, ok := got["approvals"].([]any); !ok || len(a) != 0 {
		t.Errorf("approvals = %#v, want []", got["approvals"])
	}
}

func TestListRequestsQuery(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()

	w := call(t, h, "GET", "/v1/requests?mine=true&state=revoke_failed", "alice-token", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if want := (readmodel.ListInput{Mine: true, State: ajar.StateRevokeFailed}); core.list != want {
		t.Errorf("core got %+v, want %+v", core.list, want)
	}
	var resp requestsResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Requests) != 1 || resp.Requests[0].ID != "r1" {
		t.Fatalf("response %s (%v)", w.Body, err)
	}

	call(t, h, "GET", "/v1/requests", "alice-token", "")
	if (core.list != readmodel.ListInput{}) {
		t.Errorf("no query: core got %+v", core.list)
	}

	for _, tt := range []struct{ query, field string }{
		{"state=sleeping", "state"},
		{"mine=maybe", "mine"},
		{"mine=true&mine=false", "mine"},
		{"owner=bob", "owner"},
		{"limit=-1", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"cursor=" + strings.Repeat("a", 201), "cursor"},
		{"cursor=%00", "cursor"},
		{"cursor=a%20b", "cursor"},
	} {
		wantError(t, call(t, h, "GET", "/v1/requests?"+tt.query, "alice-token", ""), http.StatusBadRequest, ajar.EINVALID, tt.field)
	}
}

// TestListRequestsPaging: limit and cursor reach the core, and the page's next
// cursor reaches the client; the last page has none.
func TestListRequestsPaging(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()
	w := call(t, h, "GET", "/v1/requests?limit=1", "alice-token", "")
	var resp requestsResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != http.StatusOK || resp.NextCursor != "r1.next" {
		t.Fatalf("first page: %d %s (%v)", w.Code, w.Body, err)
	}
	w = call(t, h, "GET", "/v1/requests?limit=1&cursor=r1.next", "alice-token", "")
	if want := (readmodel.ListInput{Limit: 1, Cursor: "r1.next"}); core.list != want {
		t.Errorf("core got %+v, want %+v", core.list, want)
	}
	if strings.Contains(w.Body.String(), "next_cursor") {
		t.Errorf("last page names a next cursor: %s", w.Body)
	}
}

func TestAuditQuery(t *testing.T) {
	core := newFakeCore()
	for i := int64(1); i <= 20; i++ {
		core.events = append(core.events, ajar.AuditEvent{Seq: i, Time: testTime, Actor: "ajar", Action: "request.created", Subject: "r1"})
	}
	s, _ := newTestServer(t, core)
	h := s.Handler()

	w := call(t, h, "GET", "/v1/audit?request=r1&after=5&limit=10", "alice-token", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if want := (ajar.AuditFilter{Subject: "r1", AfterSeq: 5, Limit: 11}); core.filter != want {
		t.Errorf("core got %+v, want %+v (one more than the page, to tell whether more follow)", core.filter, want)
	}
	var resp auditResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Events) != 10 || resp.Events[0].Seq != 6 || !resp.HasMore {
		t.Fatalf("response %s (%v)", w.Body, err)
	}
	// The last page says there is no more.
	w = call(t, h, "GET", "/v1/audit?request=r1&after=10&limit=10", "alice-token", "")
	resp = auditResponse{}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Events) != 10 || resp.Events[9].Seq != 20 || resp.HasMore {
		t.Fatalf("last page %s (%v)", w.Body, err)
	}
	call(t, h, "GET", "/v1/audit?request=r1", "alice-token", "")
	if core.filter.Limit != 1001 {
		t.Errorf("default page: core got limit %d", core.filter.Limit)
	}

	// No events is an empty list, not null.
	w = call(t, h, "GET", "/v1/audit?request=r9", "alice-token", "")
	if !strings.Contains(w.Body.String(), `"events":[]`) {
		t.Errorf("empty audit page = %s", w.Body)
	}

	for _, tt := range []struct{ query, field string }{
		{"after=-1", "after"},
		{"after=abc", "after"},
		{"limit=1.5", "limit"},
		{"limit=50000", "limit"},
		{"subject=r1", "subject"},
	} {
		wantError(t, call(t, h, "GET", "/v1/audit?"+tt.query, "alice-token", ""), http.StatusBadRequest, ajar.EINVALID, tt.field)
	}
}

func TestActionsPassInput(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()

	if w := call(t, h, "POST", "/v1/requests/r1/approve", "bob-token", `{"comment":"lgtm"}`); w.Code != 200 {
		t.Fatalf("approve: %d %s", w.Code, w.Body)
	}
	if core.comment != "lgtm" || core.user.ID != "bob@example.com" {
		t.Errorf("approve: core got comment %q user %q", core.comment, core.user.ID)
	}
	// The body of approve is optional.
	if w := call(t, h, "POST", "/v1/requests/r1/approve", "bob-token", ""); w.Code != 200 {
		t.Fatalf("approve without a body: %d %s", w.Code, w.Body)
	}
	if w := call(t, h, "POST", "/v1/requests/r1/deny", "bob-token", `{"reason":"not during the freeze"}`); w.Code != 200 {
		t.Fatalf("deny: %d %s", w.Code, w.Body)
	}
	if core.reason != "not during the freeze" {
		t.Errorf("deny: core got reason %q", core.reason)
	}
	for _, verb := range []string{"revoke", "cancel"} {
		if w := call(t, h, "POST", "/v1/requests/r1/"+verb, "alice-token", "{}"); w.Code != 200 {
			t.Fatalf("%s: %d %s", verb, w.Code, w.Body)
		}
	}
	w := call(t, h, "POST", "/v1/requests/r1/ssh-cert", "alice-token", `{"public_key":"ssh-ed25519 AAAAkey alice"}`)
	if w.Code != 200 {
		t.Fatalf("ssh-cert: %d %s", w.Code, w.Body)
	}
	if core.publicKey != "ssh-ed25519 AAAAkey alice" {
		t.Errorf("ssh-cert: core got %q", core.publicKey)
	}
	var out ajar.SSHCertOutput
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Info.Serial != 7 || out.Certificate == "" {
		t.Errorf("ssh-cert response %s (%v)", w.Body, err)
	}
	wantError(t, call(t, h, "GET", "/v1/requests/r9", "alice-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")
	wantError(t, call(t, h, "GET", "/v1/requests/"+strings.Repeat("x", 300), "alice-token", ""), http.StatusBadRequest, ajar.EINVALID, "id")
}

func TestPublicRoutes(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()

	w := call(t, h, "GET", "/v1/ssh/ca", "", "")
	if w.Code != 200 || w.Body.String() != core.ca+"\n" {
		t.Fatalf("ssh ca without a token: %d %q", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("ssh ca Content-Type = %q", ct)
	}
	w = call(t, h, "GET", "/v1/audit/key", "", "")
	if w.Code != 200 || w.Body.String() != core.auditKey+"\n" {
		t.Fatalf("audit key without a token: %d %q", w.Code, w.Body)
	}
	w = call(t, h, "GET", "/v1/audit/checkpoint", "bob-token", "")
	if w.Code != 200 || !strings.HasPrefix(w.Body.String(), "ajar.example/audit\n") {
		t.Fatalf("checkpoint: %d %q", w.Code, w.Body)
	}
	w = call(t, h, "GET", "/healthz", "", "")
	if w.Code != 200 || w.Body.String() != "ok\n" {
		t.Fatalf("healthz: %d %q", w.Code, w.Body)
	}
}

func TestReadyAndMetrics(t *testing.T) {
	var notReady error = errors.New("store unreachable")
	s := NewServer(newFakeCore(), idsOf(newFakeCore()), Options{
		Ready:   func(ctx context.Context) error { return notReady },
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ajar_up 1") }),
	})
	h := s.Handler()
	if w := call(t, h, "GET", "/readyz", "", ""); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "unreachable") {
		t.Errorf("not ready: %d %q", w.Code, w.Body)
	}
	notReady = nil
	if w := call(t, h, "GET", "/readyz", "", ""); w.Code != 200 {
		t.Errorf("ready: %d %q", w.Code, w.Body)
	}
	if w := call(t, h, "GET", "/metrics", "", ""); w.Code != 200 || w.Body.String() != "ajar_up 1\n" {
		t.Errorf("metrics: %d %q", w.Code, w.Body)
	}
	// Without a Metrics handler there is no /metrics.
	if w := call(t, NewServer(newFakeCore(), idsOf(newFakeCore()), Options{}).Handler(), "GET", "/metrics", "", ""); w.Code != 404 {
		t.Errorf("metrics without a handler: %d", w.Code)
	}
}

func TestHeadersAndUnknownRoutes(t *testing.T) {
	s, _ := newTestServer(t, newFakeCore())
	h := s.Handler()

	w := call(t, h, "GET", "/v1/requests/r1", "alice-token", "")
	if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	w = call(t, h, "GET", "/healthz", "", "")
	if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("healthz X-Content-Type-Options = %q", got)
	}
	// Errors carry the headers too.
	w = call(t, h, "GET", "/v1/whoami", "", "")
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("401 headers: %v", w.Header())
	}

	wantError(t, call(t, h, "GET", "/v1/nothing", "alice-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")
	w = call(t, h, "DELETE", "/v1/requests/r1", "alice-token", "")
	wantError(t, w, http.StatusMethodNotAllowed, ajar.EINVALID, "")
	if allow := w.Header().Get("Allow"); allow != "GET" {
		t.Errorf("Allow = %q", allow)
	}
	w = call(t, h, "GET", "/v1/requests/r1/approve", "alice-token", "")
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET approve: %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

func TestRequestLog(t *testing.T) {
	s, logs := newTestServer(t, newFakeCore())
	r := httptest.NewRequest("GET", "/v1/requests?state=active", nil)
	r.Header.Set("Authorization", "Bearer alice-token")
	s.Handler().ServeHTTP(httptest.NewRecorder(), r)
	out := logs.String()
	for _, want := range []string{"method=GET", "path=/v1/requests", "status=200", "duration="} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "alice-token") {
		t.Errorf("log contains the token:\n%s", out)
	}
}

func TestPanicIsInternal(t *testing.T) {
	s, logs := newTestServer(t, panicCore{newFakeCore()})
	wantError(t, call(t, s.Handler(), "GET", "/v1/targets", "alice-token", ""), http.StatusInternalServerError, ajar.EINTERNAL, "")
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged:\n%s", logs)
	}
}

type panicCore struct{ *fakeCore }

func (panicCore) Targets(context.Context, ajar.User) ([]readmodel.TargetInfo, error) { panic("boom") }

func TestOpenClose(t *testing.T) {
	s, _ := newTestServer(t, newFakeCore())
	if err := s.Close(); err != nil {
		t.Fatalf("Close before Open: %v", err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() == "" || strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr = %q, want the bound port", s.Addr())
	}
	if s.URL() != "http://"+s.Addr() {
		t.Errorf("URL = %q", s.URL())
	}
	resp, err := http.Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Error("server still answers after Close")
	}
}

func TestURLOfUnspecifiedAddr(t *testing.T) {
	s := NewServer(newFakeCore(), idsOf(newFakeCore()), Options{Addr: ":0"})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if u := s.URL(); !strings.HasPrefix(u, "http://127.0.0.1:") && !strings.HasPrefix(u, "http://[::1]:") {
		t.Errorf("URL = %q, want a loopback URL", u)
	}
}
