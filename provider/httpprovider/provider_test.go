package httpprovider

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider/providertest"
)

const secret = "0123456789abcdef0123456789abcdef-test"

// receiver is a receiver as docs/providers/http.md describes it: it checks
// every call's signature and timestamp, grants by request id (so a second grant
// is the same access), hands out a handle, and answers revoke with 2xx also when
// the access is gone.
type receiver struct {
	mu      sync.Mutex
	access  map[string]string // request id -> handle id
	keys    map[string]int    // idempotency keys seen
	fail    atomic.Int32      // answer 503 to the next N calls
	refuse  atomic.Bool       // answer 403 to grants
	bad     atomic.Int32      // calls refused for their signature
	handles []json.RawMessage // handles sent with revokes
	n       atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := VerifyRequest([]byte(secret), r.Header, body, time.Now()); err != nil {
		rc.bad.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if rc.fail.Load() > 0 {
		rc.fail.Add(-1)
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var c Call
	if err := json.Unmarshal(body, &c); err != nil || "/"+c.Action != r.URL.Path || r.Header.Get(HeaderAction) != c.Action {
		http.Error(w, "bad call", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.keys[r.Header.Get(HeaderIdempotencyKey)]++
	switch c.Action {
	case "grant":
		if rc.refuse.Load() {
			http.Error(w, "no such team", http.StatusForbidden)
			return
		}
		if _, ok := rc.access[c.RequestID]; !ok {
			rc.access[c.RequestID] = fmt.Sprintf("h%d", rc.n.Add(1))
		}
		json.NewEncoder(w).Encode(map[string]any{"handle": map[string]string{"id": rc.access[c.RequestID]}})
	case "revoke":
		rc.handles = append(rc.handles, c.Handle)
		delete(rc.access, c.RequestID)
	case "verify":
		_, ok := rc.access[c.RequestID]
		json.NewEncoder(w).Encode(map[string]bool{"present": ok})
	}
}

func newReceiver(t *testing.T) (*receiver, *Provider) {
	t.Helper()
	rc := &receiver{access: map[string]string{}, keys: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	os.Setenv("AJAR_TEST_HTTP_SECRET", secret) // not t.Setenv: subtests run in parallel
	cfg, _ := json.Marshal(map[string]any{"url": srv.URL, "secret_env": "AJAR_TEST_HTTP_SECRET", "verify": true})
	p, err := New("panel", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rc, p
}

func request(id string) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "panel", Requester: "alice@example.com",
		Params: map[string]string{"team": "ops"}, ExpiresAt: time.Now().Add(time.Hour)}
}

func TestConformance(t *testing.T) {
	rc, p := newReceiver(t)
	providertest.Run(t, providertest.Subject{
		Provider: p, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest { return request(id) },
		Count: func(t testing.TB, req ajar.GrantRequest) int {
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if _, ok := rc.access[req.RequestID]; ok {
				return 1
			}
			return 0
		},
	})
	if n := rc.bad.Load(); n != 0 {
		t.Fatalf("%d calls had a bad signature", n)
	}
}

// TestHandleKeptForRevoke: the handle the grant answered with is what the
// revoke sends; an intent sends null.
func TestHandleKeptForRevoke(t *testing.T) {
	rc, p := newReceiver(t)
	h, err := p.Grant(t.Context(), request("req_a"))
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as the store keeps it.
	b, _ := json.Marshal(h)
	var saved ajar.Handle
	json.Unmarshal(b, &saved)
	if err := p.Revoke(t.Context(), saved); err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(t.Context(), providertest.Intent(Name, request("req_b"))); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.handles) != 2 || string(rc.handles[0]) != `{"id":"h1"}` || string(rc.handles[1]) != "null" {
		t.Fatalf("handles sent with revokes = %s", rc.handles)
	}
}

// TestFailures: a refused grant is EINVALID (no retry); a receiver that is down
// is an error the scheduler retries, with the same idempotency key; a bad
// secret is refused by the receiver.
func TestFailures(t *testing.T) {
	rc, p := newReceiver(t)
	rc.refuse.Store(true)
	if _, err := p.Grant(t.Context(), request("req_refused")); ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "403") {
		t.Fatalf("refused grant: %v, want invalid naming 403", err)
	}
	rc.refuse.Store(false)
	rc.fail.Store(1)
	_, err := p.Grant(t.Context(), request("req_retry"))
	if err == nil || ajar.ErrorCode(err) == ajar.EINVALID {
		t.Fatalf("grant while down: %v, want a retryable error", err)
	}
	if _, err := p.Grant(t.Context(), request("req_retry")); err != nil {
		t.Fatal(err)
	}
	rc.fail.Store(1)
	h := providertest.Intent(Name, request("req_retry"))
	if err := p.Revoke(t.Context(), h); err == nil || ajar.ErrorCode(err) == ajar.EINVALID {
		t.Fatalf("revoke while down: %v, want a retryable error", err)
	}
	if err := p.Revoke(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	if rc.keys["req_retry:grant"] != 1 || rc.keys["req_retry:revoke"] != 1 {
		t.Errorf("idempotency keys seen: %v", rc.keys) // 503s are answered before counting
	}
	rc.mu.Unlock()

	p.secret = []byte("another secret, 32 bytes or more....")
	if _, err := p.Grant(t.Context(), request("req_forged")); err == nil {
		t.Fatal("a call with the wrong secret was accepted")
	}
	if rc.bad.Load() != 1 {
		t.Fatalf("%d calls refused for their signature, want 1", rc.bad.Load())
	}
}

func TestVerifyRequest(t *testing.T) {
	body := []byte(`{"action":"grant"}`)
	now := time.Now()
	h := http.Header{}
	ts := fmt.Sprint(now.Unix())
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign([]byte(secret), ts, body))
	if err := VerifyRequest([]byte(secret), h, body, now); err != nil {
		t.Fatal(err)
	}
	if err := VerifyRequest([]byte(secret), h, []byte(`{"action":"revoke"}`), now); err == nil {
		t.Fatal("another body passes")
	}
	if err := VerifyRequest([]byte(secret), h, body, now.Add(MaxSkew+time.Second)); err == nil {
		t.Fatal("a stale call passes")
	}
	h.Set(HeaderTimestamp, fmt.Sprint(now.Unix()+1))
	if err := VerifyRequest([]byte(secret), h, body, now); err == nil {
		t.Fatal("the timestamp is not signed")
	}
}

func TestCheckConfig(t *testing.T) {
	probs := CheckConfig(json.RawMessage(`{"url": "http://example.com/x", "secret_env": "a b", "timeout": "2m", "verify": "yes", "x": 1}`))
	var got []string
	for _, p := range probs {
		got = append(got, p.Field)
	}
	if want := "x,verify,url,secret_env,timeout"; strings.Join(got, ",") != want {
		t.Fatalf("fields = %v, want %s\n%v", got, want, probs)
	}
	if probs := CheckConfig(json.RawMessage(`{"url": "http://127.0.0.1:8080/ajar", "secret_env": "S"}`)); probs != nil {
		t.Fatalf("loopback http: %v", probs)
	}
	os.Setenv("AJAR_TEST_SHORT_SECRET", "short")
	if _, err := New("x", json.RawMessage(`{"url": "https://a.example/", "secret_env": "AJAR_TEST_SHORT_SECRET"}`)); err == nil {
		t.Fatal("a short secret is accepted")
	}
}

func TestValidateParams(t *testing.T) {
	os.Setenv("AJAR_TEST_HTTP_SECRET", secret)
	p, err := New("panel", json.RawMessage(`{"url": "https://panel.example/ajar", "secret_env": "AJAR_TEST_HTTP_SECRET", "params": ["team"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ValidateParams(map[string]string{"team": "ops"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]string{{"role": "admin"}, {"team": "a\nb"}, {"team": strings.Repeat("x", 257)}} {
		if err := p.ValidateParams(bad); ajar.ErrorCode(err) != ajar.EINVALID || !strings.HasPrefix(ajar.ErrorField(err), "params.") {
			t.Errorf("ValidateParams(%q) = %v, want invalid params.*", bad, err)
		}
	}
	if probs := CheckConfig(json.RawMessage(`{"url": "https://a.example", "secret_env": "S", "params": ["ok", "Bad", "ok"]}`)); len(probs) != 2 {
		t.Fatalf("params problems = %v, want params[1] and params[2]", probs)
	}
}
