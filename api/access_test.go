package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// accessLines sends r through a server logging JSON at level and returns the
// response and the access log lines.
func accessLines(t *testing.T, level slog.Level, reqs ...*http.Request) ([]*httptest.ResponseRecorder, []map[string]any) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	core := newFakeCore()
	h := NewServer(core, idsOf(core), Options{Addr: "127.0.0.1:0", Logger: log}).Handler()
	var ws []*httptest.ResponseRecorder
	for _, r := range reqs {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		ws = append(ws, w)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	return ws, lines
}

func newReq(method, target, token, reqID string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "203.0.113.7:5555"
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if reqID != "" {
		r.Header.Set(RequestIDHeader, reqID)
	}
	return r
}

// TestAccessLogFields: each access log line carries the user, the remote
// address and the request id, which is also the X-Request-Id response header;
// a short, safe incoming id is kept, anything else replaced.
func TestAccessLogFields(t *testing.T) {
	long := strings.Repeat("a", 65)
	ws, lines := accessLines(t, slog.LevelDebug,
		newReq("GET", "/v1/whoami", "alice-token", "proxy-id.42_x"),
		newReq("GET", "/v1/whoami", "alice-token", "evil\" id=1"),
		newReq("GET", "/v1/whoami", "", long),
		newReq("GET", "/v1/whoami", "", ""),
	)
	if len(lines) != 4 {
		t.Fatalf("%d access lines", len(lines))
	}
	if got := ws[0].Header().Get(RequestIDHeader); got != "proxy-id.42_x" || lines[0]["request_id"] != got {
		t.Errorf("kept id: header %q, log %v", got, lines[0]["request_id"])
	}
	if lines[0]["user"] != "alice@example.com" || lines[0]["remote"] != "203.0.113.7" {
		t.Errorf("line 0: %v", lines[0])
	}
	seen := map[string]bool{}
	for i := 1; i < 4; i++ {
		id := ws[i].Header().Get(RequestIDHeader)
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || lines[i]["request_id"] != id || seen[id] {
			t.Errorf("request %d: header id %q, log %v", i, id, lines[i]["request_id"])
		}
		seen[id] = true
	}
	if lines[2]["user"] != "" || lines[2]["status"] != float64(401) {
		t.Errorf("unauthenticated line: %v", lines[2])
	}
}

// TestPollingAtDebug: polling routes that succeed are logged at debug, so an
// info log is not flooded by host agents and waiting clients; their failures
// and every other route stay at info.
func TestPollingAtDebug(t *testing.T) {
	_, lines := accessLines(t, slog.LevelInfo,
		newReq("GET", "/healthz", "", ""),
		newReq("GET", "/v1/requests/r1", "alice-token", ""), // ajar request --wait
		newReq("GET", "/v1/requests/nope", "alice-token", ""),
		newReq("GET", "/v1/whoami", "alice-token", ""),
	)
	var paths []string
	for _, l := range lines {
		paths = append(paths, l["path"].(string))
	}
	if got := strings.Join(paths, " "); got != "/v1/requests/nope /v1/whoami" {
		t.Errorf("info access lines for %s; want the failed poll and whoami only", got)
	}
	for _, r := range []*http.Request{
		newReq("GET", "/v1/ssh/krl", "", ""), newReq("GET", "/v1/ssh/keys", "", ""),
		newReq("POST", "/v1/ssh/sessions", "", ""), newReq("GET", "/readyz", "", ""),
	} {
		if !pollingRoute(r) {
			t.Errorf("%s %s is not a polling route", r.Method, r.URL.Path)
		}
	}
	refresh := newReq("GET", "/inbox", "", "")
	refresh.Header.Set(RefreshHeader, "1")
	if !pollingRoute(refresh) {
		t.Errorf("a web page's refresh is not polling")
	}
	apiRefresh := newReq("POST", "/v1/requests/r1/approve", "", "")
	apiRefresh.Header.Set(RefreshHeader, "1")
	for _, r := range []*http.Request{apiRefresh, newReq("GET", "/inbox", "", ""), newReq("GET", "/v1/requests", "", "")} {
		if pollingRoute(r) {
			t.Errorf("%s %s is a polling route", r.Method, r.URL.Path)
		}
	}
}
