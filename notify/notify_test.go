package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar/policy"
)

func testEvent() Event {
	exp := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	return Event{
		ID: "evt_1", Type: policy.EventRequestCreated, Time: exp.Add(-time.Hour), Actor: "alice@example.com",
		Summary: "alice@example.com requests web for 30m; it needs approval",
		Request: &Request{ID: "req_1", Target: "web", Requester: "alice@example.com", Reason: "fix <@channel> & co\nsecond line",
			Duration: "30m", Policy: "web", State: "pending", ExpiresAt: &exp, URL: "https://ajar.example.com/requests/req_1"},
		Actions: []Action{
			{Label: "Approve", Who: "approvers", Command: "ajar approve req_1", URL: "https://ajar.example.com/requests/req_1"},
			{Label: "Deny", Who: "approvers", Command: `ajar deny req_1 --reason "..."`, URL: "https://ajar.example.com/requests/req_1"},
		},
	}
}

func TestWebhookSignsTheBody(t *testing.T) {
	var got struct {
		body    []byte
		headers http.Header
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.headers = r.Header.Clone()
	}))
	defer srv.Close()
	body, _ := json.Marshal(testEvent())
	w := &Webhook{base: base{name: "hook"}, URL: srv.URL, Secret: []byte("k3y"), Client: srv.Client()}
	if err := w.Send(t.Context(), body); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.body, body) {
		t.Errorf("body changed on the way: %s", got.body)
	}
	sig := got.headers.Get(HeaderSignature)
	if !strings.HasPrefix(sig, "sha256=") || !Verify([]byte("k3y"), body, sig) || Verify([]byte("other"), body, sig) ||
		Verify([]byte("k3y"), append(body, ' '), sig) {
		t.Errorf("signature %q does not verify as it should", sig)
	}
	// A known answer, so receivers in other languages can check theirs.
	if s := Sign([]byte("secret"), []byte(`{"a":1}`)); s != "sha256=aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494" {
		t.Errorf("Sign = %q", s)
	}
	if got.headers.Get(HeaderEvent) != policy.EventRequestCreated || got.headers.Get(HeaderEventID) != "evt_1" ||
		got.headers.Get("Content-Type") != "application/json" {
		t.Errorf("headers: %v", got.headers)
	}
}

func TestWebhookFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		case "/ok":
		default:
			http.Error(w, "nope", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	body, _ := json.Marshal(testEvent())
	for _, path := range []string{"/fail", "/redirect"} {
		w := &Webhook{base: base{name: "hook"}, URL: srv.URL + path, Secret: []byte("k"), Client: newHTTPClient()}
		err := w.Send(t.Context(), body)
		if err == nil {
			t.Errorf("%s: no error", path)
			continue
		}
		if strings.Contains(err.Error(), srv.URL) {
			t.Errorf("%s: the error shows the URL: %v", path, err)
		}
	}
	srv.Close()
	w := &Webhook{base: base{name: "hook"}, URL: srv.URL, Secret: []byte("k"), Client: newHTTPClient()}
	if err := w.Send(t.Context(), body); err == nil || strings.Contains(err.Error(), srv.URL) {
		t.Errorf("receiver down: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Send(ctx, body); err == nil {
		t.Error("cancelled: no error")
	}
}

func TestSlackMessage(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	body, _ := json.Marshal(testEvent())
	s := &Slack{base: base{name: "chat"}, URL: srv.URL, Client: srv.Client()}
	if err := s.Send(t.Context(), body); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(got)
	text := buf.String()
	for _, want := range []string{
		`"text":"alice@example.com requests web for 30m; it needs approval"`,
		"Request `req_1`: *web* for *30m* by alice@example.com",
		`>fix &lt;@channel&gt; &amp; co\n>second line`, // escaped, quoted on every line
		"Approve (approvers): `ajar approve req_1`",
		`"url":"https://ajar.example.com/requests/req_1"`,
		`"type":"button"`,
		"Ends: 2026-03-01T10:00:00Z",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("message lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, "<@channel>") {
		t.Errorf("the reason can mention @channel: %s", text)
	}
}

func TestLogSink(t *testing.T) {
	var buf bytes.Buffer
	l := &Log{base: base{name: "log"}, Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	body, _ := json.Marshal(testEvent())
	if err := l.Send(t.Context(), body); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "type=request.created") || !strings.Contains(out, `do="ajar approve req_1"`) {
		t.Errorf("log line: %s", out)
	}
}

// TestLogDeliverIsSend: the line Deliver writes for an event (the server
// makes it, without the outbox) is the line Send writes for its JSON (an
// event the outbox still held).
func TestLogDeliverIsSend(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	for range 2000 {
		ev := randomEvent(t, rnd)
		body, err := json.Marshal(ev)
		if err != nil {
			continue // a time json.Marshal refuses: never stored
		}
		var decoded Event
		if err := json.Unmarshal(body, &decoded); err != nil {
			t.Fatal(err)
		}
		var sent, delivered bytes.Buffer
		if err := (&Log{base: base{name: "log"}, Logger: slog.New(slog.NewJSONHandler(&sent, noTime))}).Send(t.Context(), body); err != nil {
			t.Fatal(err)
		}
		(&Log{base: base{name: "log"}, Logger: slog.New(slog.NewJSONHandler(&delivered, noTime))}).Deliver(t.Context(), &decoded)
		if sent.String() != delivered.String() {
			t.Fatalf("Deliver logged\n%s\nSend logged\n%s", &delivered, &sent)
		}
	}
}

// TestLogLineIsTheEvent: the log sink's line shows what the event says, as
// decoding the whole Event shows it, for any event.
func TestLogLineIsTheEvent(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	for range 2000 {
		ev := randomEvent(t, rnd)
		body, err := json.Marshal(ev)
		if err != nil {
			continue // a time json.Marshal refuses: never stored
		}
		var got, want bytes.Buffer
		l := &Log{base: base{name: "log"}, Logger: slog.New(slog.NewJSONHandler(&got, noTime))}
		if err := l.Send(t.Context(), body); err != nil {
			t.Fatal(err)
		}
		var e Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		attrs := []any{"sink", "log", "type", e.Type, "id", e.ID, "summary", e.Summary}
		if e.Request != nil {
			attrs = append(attrs, "request", e.Request.ID)
		}
		for _, a := range e.Actions {
			attrs = append(attrs, "do", a.Command)
		}
		slog.New(slog.NewJSONHandler(&want, noTime)).InfoContext(t.Context(), "notification", attrs...)
		if got.String() != want.String() {
			t.Fatalf("log line\n%s\nwant\n%s", &got, &want)
		}
	}
	if err := (&Log{base: base{name: "log"}}).Send(t.Context(), []byte(`{"id":`)); err == nil {
		t.Error("a broken event logged")
	}
}

// noTime leaves the time out of log lines.
var noTime = &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}}
