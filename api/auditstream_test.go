package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
)

// streamCore adds ExportAuditRecords to the fake: alice is the admin; pages of 3
// events; failAfter > 0 fails after that many pages.
type streamCore struct {
	*fakeCore
	evs       []ajar.AuditEvent
	failAfter int
	after     int64
}

func (c *streamCore) ExportAuditRecords(ctx context.Context, u ajar.User, after int64, fn func(*audit.Records) error) error {
	if u.ID != "alice@example.com" {
		return ajar.Errorf(ajar.EFORBIDDEN, "only admins can read the whole audit log")
	}
	c.after = after
	evs := c.evs[min(int(after), len(c.evs)):]
	for i := 0; len(evs) > 0; i++ {
		if c.failAfter > 0 && i == c.failAfter {
			return errors.New("disk on fire")
		}
		n := min(3, len(evs))
		var r audit.Records
		for i := range evs[:n] {
			r.B = audit.AppendRecord(r.B, &evs[i])
			r.N++
			r.Last = evs[i].Seq
		}
		if err := fn(&r); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

func streamChain(n int) []ajar.AuditEvent {
	evs := make([]ajar.AuditEvent, n)
	var prev []byte
	for i := range evs {
		evs[i] = ajar.AuditEvent{Seq: int64(i + 1), Time: testTime.Add(time.Duration(i) * time.Second), Actor: "alice@example.com",
			Action: "request.created", Subject: fmt.Sprintf("r%d", i), Details: []byte(`{"n":1}`), PrevHash: prev}
		evs[i].Hash = evs[i].ComputeHash()
		prev = evs[i].Hash
	}
	return evs
}

func TestAuditStreamRoute(t *testing.T) {
	core := &streamCore{fakeCore: newFakeCore(), evs: streamChain(10)}
	srv, logs := newTestServer(t, core)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	verify := func(token string, after int64) (audit.Result, error) {
		body, err := NewClient(hs.URL, token).AuditStream(t.Context(), after)
		if err != nil {
			return audit.Result{}, err
		}
		defer body.Close()
		return audit.Verify(t.Context(), audit.StreamPages(body, 4))
	}

	res, err := verify("alice-token", 0)
	if err != nil || res.Events != 10 {
		t.Fatalf("verify = %+v, %v", res, err)
	}
	// after is passed on; an empty remainder is a whole, empty stream.
	if _, err := verify("alice-token", 10); err != nil || core.after != 10 {
		t.Errorf("after 10: %v (core got after=%d)", err, core.after)
	}
	// Not an admin: an ordinary JSON error before any byte of the stream.
	if _, err := verify("bob-token", 0); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Errorf("bob: %v, want forbidden", err)
	}
	wantError(t, call(t, srv.Handler(), "GET", "/v1/audit/stream", "", ""), http.StatusUnauthorized, ajar.EUNAUTH, "")
	wantError(t, call(t, srv.Handler(), "GET", "/v1/audit/stream?after=-1", "alice-token", ""), http.StatusBadRequest, ajar.EINVALID, "after")
	wantError(t, call(t, srv.Handler(), "GET", "/v1/audit/stream?x=1", "alice-token", ""), http.StatusBadRequest, ajar.EINVALID, "x")

	// The store fails after two pages: the stream ends with an error record
	// and the reader fails, naming no internal detail.
	core.failAfter = 2
	_, err = verify("alice-token", 0)
	if err == nil || !strings.Contains(err.Error(), "internal error") || strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("failing store: %v", err)
	}
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("the failure is not logged: %s", logs)
	}

	// A server without the route (a core without ExportAudit, as an older
	// server) answers not_found, which the CLI takes to page instead.
	plain, _ := newTestServer(t, newFakeCore())
	hp := httptest.NewServer(plain.Handler())
	defer hp.Close()
	if _, err := NewClient(hp.URL, "alice-token").AuditStream(t.Context(), 0); ajar.ErrorCode(err) != ajar.ENOTFOUND {
		t.Errorf("no route: %v, want not_found", err)
	}
	// Something that answers 200 but is no stream is refused.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>hello</html>")
	}))
	defer other.Close()
	if _, err := NewClient(other.URL, "alice-token").AuditStream(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "not an ajar server") {
		t.Errorf("html: %v", err)
	}
}

// A connection dropped in the middle of the stream fails verification.
func TestAuditStreamCut(t *testing.T) {
	var buf strings.Builder
	w := audit.NewStreamWriter(&buf)
	evs := streamChain(5)
	for i := range evs {
		w.Event(&evs[i])
	}
	w.End()
	whole := buf.String()
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", audit.StreamContentType)
		io.WriteString(w, whole[:len(whole)/2])
		w.(http.Flusher).Flush()
		// Then the connection closes: the chunked body ends early.
		panic(http.ErrAbortHandler)
	}))
	defer cut.Close()
	body, err := NewClient(cut.URL, "alice-token").AuditStream(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if _, err := audit.Verify(t.Context(), audit.StreamPages(body, 0)); err == nil {
		t.Error("Verify accepted a stream whose connection was cut")
	}
}
