package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar/api"
)

func TestLogFlags(t *testing.T) {
	runRaw(t, "serve", "--log-format", "xml").want(t, exitUsage, `--log-format`, `must be "text" or "json", not "xml"`)
	runRaw(t, "serve", "--log-level", "loud").want(t, exitUsage, `--log-level`, `must be debug, info, warn or error, not "loud"`)
}

// TestLoggerFormatsAndRequestID: the JSON logger writes one object a line at
// the chosen level, and lines logged while serving a request carry its id.
func TestLoggerFormatsAndRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, "json", slog.LevelWarn)
	log.Info("dropped")
	var ctx context.Context
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ctx = r.Context() })
	srv := api.NewServer(nil, nil, api.Options{Addr: "127.0.0.1:0", Web: h})
	r := httptest.NewRequest("GET", "/page", nil)
	r.Header.Set(api.RequestIDHeader, "req-7")
	srv.Handler().ServeHTTP(httptest.NewRecorder(), r)
	log.WarnContext(ctx, "inside a request")
	log.Warn("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var in, out map[string]any
	if json.Unmarshal([]byte(lines[0]), &in) != nil || json.Unmarshal([]byte(lines[1]), &out) != nil {
		t.Fatalf("not JSON: %q", lines)
	}
	if in["request_id"] != "req-7" || out["request_id"] != nil || in["level"] != "WARN" {
		t.Errorf("lines: %v / %v", in, out)
	}
	buf.Reset()
	newLogger(&buf, "text", slog.LevelDebug).Debug("hello", "k", "v")
	if !strings.Contains(buf.String(), "level=DEBUG msg=hello k=v") {
		t.Errorf("text: %q", buf.String())
	}
}
