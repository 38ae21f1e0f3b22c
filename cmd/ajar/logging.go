package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/ajar-dev/ajar/api"
)

// The server's log stream: --log-format text|json and --log-level. The
// start-up banner ("ajar serving on ...", dev tokens, warnings for people) is
// plain text written to stderr directly, never through the logger, so it reads
// the same whatever the format and a JSON log stays one object a line.

// logFormat is the value of --log-format.
type logFormat string

func (f *logFormat) String() string { return string(*f) }
func (f *logFormat) Type() string   { return "format" }
func (f *logFormat) Set(v string) error {
	switch v {
	case "text", "json":
		*f = logFormat(v)
		return nil
	}
	return usageErrorf("--log-format", `must be "text" or "json", not %q`, v)
}

// logLevel is the value of --log-level.
type logLevel struct{ slog.Level }

func (l *logLevel) String() string {
	return map[slog.Level]string{slog.LevelDebug: "debug", slog.LevelInfo: "info", slog.LevelWarn: "warn", slog.LevelError: "error"}[l.Level]
}
func (l *logLevel) Type() string { return "level" }
func (l *logLevel) Set(v string) error {
	switch v {
	case "debug":
		l.Level = slog.LevelDebug
	case "info":
		l.Level = slog.LevelInfo
	case "warn":
		l.Level = slog.LevelWarn
	case "error":
		l.Level = slog.LevelError
	default:
		return usageErrorf("--log-level", `must be debug, info, warn or error, not %q`, v)
	}
	return nil
}

// newLogger returns the server's logger writing to w in format at level.
// Lines logged while serving an HTTP request carry its request_id.
func newLogger(w io.Writer, format logFormat, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(requestIDHandler{h})
}

// requestIDHandler adds request_id (api.RequestID) to records logged with a
// request's context that do not have it already.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := api.RequestID(ctx); id != "" {
		has := false
		r.Attrs(func(a slog.Attr) bool {
			has = a.Key == "request_id"
			return !has
		})
		if !has {
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
