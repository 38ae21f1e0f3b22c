package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider/httpprovider"
)

// TestHTTPProvider runs the real binary against a receiver written from
// docs/providers/http.md: every call is signed, the grant's handle comes back
// with the revoke, a receiver that is down during the revoke is retried until
// it answers, and a refused grant is grant_failed.
func TestHTTPProvider(t *testing.T) {
	parallel(t, costLight)
	const secret = "e2e-http-provider-secret-0123456789abcdef"
	var (
		mu    sync.Mutex
		calls []httpprovider.Call
		down  atomic.Bool
		bad   atomic.Int32
	)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := httpprovider.VerifyRequest([]byte(secret), r.Header, body, time.Now()); err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var c httpprovider.Call
		json.Unmarshal(body, &c)
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		if c.Action == "grant" {
			if c.Params["team"] == "nope" {
				http.Error(w, "no such team", http.StatusForbidden)
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"handle": map[string]string{"panel_user": "u-" + c.RequestID}})
		}
	}))
	defer rc.Close()
	dir := t.TempDir()
	cfg := awsPolicy(t, dir, `  panel:
    provider: http
    config: {url: "`+rc.URL+`", secret_env: AJAR_PANEL_SECRET, timeout: 5s, params: [team]}`,
		"scheduler: {max_grant_attempts: 2}\n")
	s := startServerEnv(t, dir, []string{"AJAR_PANEL_SECRET=" + secret}, "--config", cfg, "--dev")

	r := s.request(t, "alice", "request", "panel", "--for", "10m", "--reason", "fix a customer", "--param", "team=ops")
	if r.State != ajar.StateActive {
		t.Fatalf("request is %s: %s", r.State, r.LastError)
	}
	down.Store(true)
	s.ok(t, "alice", "revoke", r.ID)
	eventually(t, 90*time.Second, "a failed revoke attempt", func() bool {
		return s.request(t, "alice", "show", r.ID).Attempts >= 1
	})
	down.Store(false)
	s.waitState(t, "alice", r.ID, ajar.StateRevoked, 2*time.Minute)

	mu.Lock()
	var grant, revoke *httpprovider.Call
	for i := range calls {
		if calls[i].RequestID != r.ID {
			continue
		}
		switch calls[i].Action {
		case "grant":
			grant = &calls[i]
		case "revoke":
			revoke = &calls[i]
		}
	}
	mu.Unlock()
	if grant == nil || grant.Requester != "alice@example.com" || grant.Target != "panel" || grant.Params["team"] != "ops" ||
		!grant.Window.ExpiresAt.Equal(*r.ExpiresAt) {
		t.Fatalf("grant call = %+v", grant)
	}
	if revoke == nil || string(revoke.Handle) != `{"panel_user":"u-`+r.ID+`"}` {
		t.Fatalf("revoke call = %+v, want the grant's handle", revoke)
	}

	refused := s.request(t, "alice", "request", "panel", "--for", "10m", "--reason", "refused", "--param", "team=nope")
	refused = s.waitState(t, "alice", refused.ID, ajar.StateGrantFailed, 60*time.Second)
	if refused.Attempts > 1 {
		t.Errorf("a refused grant was retried: %d attempts", refused.Attempts)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d calls with a bad signature", bad.Load())
	}
}
