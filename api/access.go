package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
)

// The access log's per-request facts: a request id (also the X-Request-Id
// response header) and the user the request was authenticated as.

// RequestIDHeader carries the request id both ways. An incoming one is kept
// only when it is short and safe (goodRequestID), so a proxy's id follows the
// request into the log; anything else is replaced by a fresh one.
const RequestIDHeader = "X-Request-Id"

// RefreshHeader marks a web page's own periodic refresh (web/static/app.js).
const RefreshHeader = "X-Ajar-Refresh"

// goodRequestID is an incoming request id ajar keeps: up to 64 letters,
// digits, '.', '_' or '-'; nothing that could break a log line or a header.
var goodRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// accessInfo is filled in while a request is served and logged at its end.
type accessInfo struct {
	id   string
	user string
}

type accessKey struct{}

// RequestID returns the id of the request ctx belongs to ("" outside a
// request), so that other log lines can carry it.
func RequestID(ctx context.Context) string {
	if ai, ok := ctx.Value(accessKey{}).(*accessInfo); ok {
		return ai.id
	}
	return ""
}

// noteUser records who the request was authenticated as, for the access log.
func noteUser(r *http.Request, id string) {
	if ai, ok := r.Context().Value(accessKey{}).(*accessInfo); ok {
		ai.user = id
	}
}

// withAccessInfo gives r a request id (the incoming one if it is good) and a
// place for the user, and sets the response header.
func withAccessInfo(w http.ResponseWriter, r *http.Request) (*http.Request, *accessInfo) {
	id := r.Header.Get(RequestIDHeader)
	if !goodRequestID.MatchString(id) || len(r.Header.Values(RequestIDHeader)) != 1 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		id = hex.EncodeToString(b[:])
	}
	ai := &accessInfo{id: id}
	w.Header().Set(RequestIDHeader, id)
	return r.WithContext(context.WithValue(r.Context(), accessKey{}, ai)), ai
}

// pollingRoute reports whether a successful request is one that clients and
// host agents repeat on a timer, so that its access log line is at debug
// level: probes and metrics, the hosts' revocation list, key sync and session
// reports, a request's status (ajar request --wait, ajar ssh), and a web page
// refreshing itself (RefreshHeader). It only sets a log level: a client that
// sends the header on its own requests hides nothing but reads from info.
func pollingRoute(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/readyz" || p == "/metrics":
		return true
	case r.Method == http.MethodGet && (p == "/v1/ssh/krl" || p == "/v1/ssh/keys"):
		return true
	case r.Method == http.MethodPost && p == "/v1/ssh/sessions":
		return true
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/requests/") && !strings.Contains(p[len("/v1/requests/"):], "/"):
		return true
	case r.Method == http.MethodGet && !strings.HasPrefix(p, "/v1/") && r.Header.Get(RefreshHeader) == "1":
		return true // a web page refreshing itself (web/static/app.js)
	}
	return false
}
