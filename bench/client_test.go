package bench

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The load generator's own HTTP/1.1 client: what it sends, keep-alive, a
// connection the server closed, and error statuses.
func TestClientPost(t *testing.T) {
	var conns atomic.Int32
	var closeNext atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/requests" || r.Header.Get("Authorization") != "Bearer tok-1" ||
			r.Header.Get("Content-Type") != "application/json" || string(body) != `{"target":"t"}` {
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path+" "+string(body), http.StatusBadRequest)
			return
		}
		if strings.Contains(r.URL.RawQuery, "fail") {
			http.Error(w, `{"error":"nope"}`, http.StatusForbidden)
			return
		}
		if closeNext.Swap(false) {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": "r1", "state": "active"})
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c, err := newClient(srv.URL, []string{"tok-1"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := c.worker()
	defer w.close()
	post := func(path string) (requestOut, error) {
		var out requestOut
		err := w.post(context.Background(), "tok-1", path, map[string]string{"target": "t"}, &out)
		return out, err
	}
	for range 3 {
		out, err := post("/v1/requests")
		if err != nil || out.ID != "r1" || out.State != "active" {
			t.Fatalf("post = %+v, %v", out, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 calls used %d connections, want 1 (keep-alive)", n)
	}
	// The server closes the connection after answering: the next call dials again.
	closeNext.Store(true)
	for range 2 {
		if _, err := post("/v1/requests"); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("after the server closed a connection: %d connections, want 2", n)
	}
	// A connection closed while idle (the server's idle timeout) is dialed again.
	srv.CloseClientConnections()
	if _, err := post("/v1/requests"); err != nil {
		t.Fatalf("after the server dropped the idle connection: %v", err)
	}
	if _, err := post("/v1/requests?fail"); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("a 403 gave %v, want an error with the status and body", err)
	}
	// A new connection that fails is an error at once, not a second request.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	bad, err := newClient("http://"+ln.Addr().String(), []string{"tok-1"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	bw := bad.worker()
	defer bw.close()
	if err := bw.post(context.Background(), "tok-1", "/v1/requests", map[string]string{"target": "t"}, new(requestOut)); err == nil {
		t.Fatal("a server that hangs up gave no error")
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("a call on a new connection that failed was made on %d connections, want 1", n)
	}
	if _, err := newClient("https://example.com", nil, 1); err == nil {
		t.Fatal("newClient accepted an https URL it cannot speak")
	}
}
