package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
)

// MaxBodyBytes is the largest request body the server reads.
const MaxBodyBytes = 64 << 10

// maxIDLen bounds ids taken from paths and queries before they reach the core.
const maxIDLen = 200

// errorEnvelope is how every error leaves the server:
// {"error":{"code":"...","message":"...","field":"..."}}.
type errorEnvelope struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// codeStatus is the one mapping between error codes and HTTP statuses. The API's
// responses and the web pages (HTTPStatus) and the client reading a response
// without an error envelope (codeOf) all derive from it. Each status appears
// once, so the mapping can be read both ways.
var codeStatus = map[string]int{
	ajar.EINVALID:   http.StatusBadRequest,
	ajar.EUNAUTH:    http.StatusUnauthorized,
	ajar.EFORBIDDEN: http.StatusForbidden,
	ajar.ENOTFOUND:  http.StatusNotFound,
	ajar.ECONFLICT:  http.StatusConflict,
	ajar.ETOOMANY:   http.StatusTooManyRequests,
}

// HTTPStatus maps an error code to its HTTP status: 500 for EINTERNAL and for any
// code codeStatus does not name.
func HTTPStatus(code string) int {
	if status, ok := codeStatus[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// retryAfterSeconds is the Retry-After of a 429 (ETOOMANY).
const retryAfterSeconds = "60"

// writeError renders err as the error envelope. Internal errors (any error that is
// not an *ajar.Error with a known client-facing code) are logged in full and shown
// only as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := ajar.ErrorCode(err)
	status := HTTPStatus(code)
	body := errorBody{Code: code, Message: ajar.ErrorMessage(err), Field: ajar.ErrorField(err)}
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		body = errorBody{Code: ajar.EINTERNAL, Message: "internal error"}
	}
	if _, ok := errors.AsType[*mediaTypeError](err); ok {
		status = http.StatusUnsupportedMediaType
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ajar"`)
	}
	if status == http.StatusTooManyRequests {
		// The rate limit counts the last minute; the other limits free up when a
		// request is decided or ends, for which a minute is a fair first wait.
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	s.writeJSON(w, r, status, errorEnvelope{Error: body})
}

// writeJSON renders v with the given status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var b []byte
	var err error
	if m, ok := v.(ajar.CreateOutput); ok {
		b, err = m.MarshalJSON() // the hot path: encoded once, not validated again
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		// Nothing has been written yet, so the client still gets a proper error.
		s.log.ErrorContext(r.Context(), "encode response", "path", r.URL.Path, "err", err)
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeText renders a text/plain body, ending it with a newline.
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	io.WriteString(w, text)
}

// decodeJSON reads a JSON object from the body into dst (a pointer to a struct) and
// returns an EINVALID *ajar.Error naming the field for anything wrong: unknown
// fields, a key given twice (at any depth), values of the wrong type, malformed
// JSON, trailing data, or a body over MaxBodyBytes. An empty body is an empty
// object, so the core decides what is required. Field names must match exactly
// (no case folding). A body, or a Content-Type header, that is not
// application/json is refused with 415 Unsupported Media Type (see
// checkContentType).
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return ajar.Errorf(ajar.EINVALID, "request body is larger than %d bytes", tooBig.Limit)
		}
		return ajar.Errorf(ajar.EINVALID, "cannot read request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if r.Header.Get("Content-Type") == "" {
		return &mediaTypeError{ajar.FieldErrorf("Content-Type", "a request body must be sent with Content-Type: application/json")}
	}
	// One pass over the body checks for duplicate keys and finds the members
	// of the top-level object; the errors for a body that is not one are
	// those of encoding/json's Decoder decoding it into a map and then
	// finding data after it (syntax first, then the type, then trailing data).
	d := dupScanner{collect: true}
	if err := d.scan(body); err != nil {
		return err
	}
	if d.end == 0 {
		return ajar.Errorf(ajar.EINVALID, "request body is not valid JSON")
	}
	if d.first != '{' && d.first != 'n' {
		return ajar.Errorf(ajar.EINVALID, "request body must be a JSON object")
	}
	if d.rest < len(body) {
		return ajar.Errorf(ajar.EINVALID, "request body has data after the JSON object")
	}
	if d.first == 'n' { // the body was "null"
		return ajar.Errorf(ajar.EINVALID, "request body must be a JSON object")
	}

	// Each field is decoded on its own, so that every problem can be
	// attributed to a field without parsing encoding/json's error texts.
	v := reflect.ValueOf(dst).Elem()
	index := jsonFields(v.Type())
	slices.SortFunc(d.members, func(a, b rawMember) int { // report the same field first every time
		return bytes.Compare(a.key, b.key)
	})
	for _, m := range d.members {
		f, ok := index[string(m.key)]
		if !ok {
			return ajar.FieldErrorf(string(m.key), "unknown field")
		}
		fv := v.Field(f.index)
		// The common cases as json.Unmarshal would do them, without reflection.
		switch {
		case f.plainString && m.raw[0] == '"':
			fv.SetString(string(d.decodeString(m.raw[1 : len(m.raw)-1])))
			continue
		case f.stringMap && m.raw[0] == '{' && fv.IsNil():
			if sm, ok := d.stringMap(m.raw); ok {
				fv.Set(reflect.ValueOf(sm))
				continue
			}
		}
		if err := json.Unmarshal(m.raw, fv.Addr().Interface()); err != nil {
			return fieldDecodeError(string(m.key), fv.Type(), m.raw, err)
		}
	}
	return nil
}

// jsonField is a field of a request body struct.
type jsonField struct {
	index int
	// plainString: the field is a string type that json.Unmarshal fills
	// with the decoded JSON string as it is (no UnmarshalJSON or
	// UnmarshalText method, not json.Number).
	plainString bool
	// stringMap: the field is a map[string]string.
	stringMap bool
}

// jsonFieldsCache maps a reflect.Type to its jsonFieldIndex.
var jsonFieldsCache sync.Map

// jsonFields is jsonFieldIndex(t), computed once per type.
func jsonFields(t reflect.Type) map[string]jsonField {
	if m, ok := jsonFieldsCache.Load(t); ok {
		return m.(map[string]jsonField)
	}
	m, _ := jsonFieldsCache.LoadOrStore(t, jsonFieldIndex(t))
	return m.(map[string]jsonField)
}

// jsonFieldIndex maps the JSON names of t's exported fields to their indexes.
// Embedded structs are not flattened: request bodies are flat.
func jsonFieldIndex(t reflect.Type) map[string]jsonField {
	index := make(map[string]jsonField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		pt := reflect.PointerTo(f.Type)
		plain := f.Type.Kind() == reflect.String && f.Type != reflect.TypeFor[json.Number]() &&
			!pt.Implements(reflect.TypeFor[json.Unmarshaler]()) &&
			!pt.Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
		index[name] = jsonField{index: i, plainString: plain, stringMap: f.Type == reflect.TypeFor[map[string]string]()}
	}
	return index
}

// fieldDecodeError explains why the value raw of a body field could not be decoded
// into type t. For an object of values (params) it names the key that is wrong.
func fieldDecodeError(name string, t reflect.Type, raw json.RawMessage, err error) error {
	if t.Kind() == reflect.Map && t.Key().Kind() == reflect.String {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) == nil {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if err := json.Unmarshal(m[k], reflect.New(t.Elem()).Interface()); err != nil {
					return fieldDecodeError(name+"."+k, t.Elem(), m[k], err)
				}
			}
		}
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := name
		if typeErr.Field != "" {
			field = name + "." + typeErr.Field
		}
		return ajar.FieldErrorf(field, "must be %s, not %s", describeType(typeErr.Type), typeErr.Value)
	}
	if t == reflect.TypeFor[time.Time]() || t == reflect.TypeFor[*time.Time]() {
		return ajar.FieldErrorf(name, "must be an RFC 3339 time (2006-01-02T15:04:05Z)")
	}
	return ajar.FieldErrorf(name, "must be %s", describeType(t))
}

// describeType names a Go type the way a JSON client thinks of it.
func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map:
		return "an object of " + describeType(t.Elem()) + " values"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return "an RFC 3339 time"
		}
		return "an object"
	}
	return "a valid value"
}

// query reads query parameters strictly: only the names the handler declared,
// each at most once.
type query struct {
	values url.Values
}

// parseQuery rejects unknown and repeated parameters.
func parseQuery(r *http.Request, allowed ...string) (query, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, ajar.Errorf(ajar.EINVALID, "malformed query string")
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			return query{}, ajar.FieldErrorf(name, "unknown query parameter (allowed: %s)", strings.Join(allowed, ", "))
		}
		if len(values[name]) > 1 {
			return query{}, ajar.FieldErrorf(name, "must be given at most once")
		}
	}
	return query{values: values}, nil
}

func (q query) string(name string) string { return q.values.Get(name) }

// bool parses an optional boolean ("true", "false", "1", "0"...); absent is false.
func (q query) bool(name string) (bool, error) {
	v, ok := q.values[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(v[0])
	if err != nil {
		return false, ajar.FieldErrorf(name, "must be true or false")
	}
	return b, nil
}

// int parses an optional non-negative integer no larger than limit; absent is 0.
func (q query) int(name string, limit int64) (int64, error) {
	v, ok := q.values[name]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n < 0 {
		return 0, ajar.FieldErrorf(name, "must be a non-negative integer")
	}
	if n > limit {
		return 0, ajar.FieldErrorf(name, "must be at most %d", limit)
	}
	return n, nil
}

// checkID validates an id taken from the URL before it reaches the core.
func checkID(field, id string) error { return checkText(field, id, maxIDLen, "is required") }

// checkText refuses v (EINVALID naming field) when it is empty (saying
// missing), longer than max bytes, or holds a control character.
func checkText(field, v string, max int, missing string) error {
	if v == "" {
		return ajar.FieldErrorf(field, "%s", missing)
	}
	if len(v) > max {
		return ajar.FieldErrorf(field, "is longer than %d bytes", max)
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return ajar.FieldErrorf(field, "contains a control character")
		}
	}
	return nil
}

// checkCursor refuses a list cursor that cannot be one the server made (the
// core decodes and checks the rest).
func checkCursor(c string) error {
	if len(c) > maxCursorLen {
		return ajar.FieldErrorf("cursor", "is longer than %d bytes", maxCursorLen)
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return ajar.FieldErrorf("cursor", "is not a cursor this server returned")
		}
	}
	return nil
}

// maxCursorLen bounds a list cursor.
const maxCursorLen = 200

// statusRecorder remembers the status and size of a response for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// middleware wraps every route: security headers, a request id (api/access.go),
// panic recovery and one log line per request (method, path, status, duration,
// request id, user, remote address; never headers, which carry tokens, nor query
// strings). Polling routes that succeed are logged at debug level.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, info := withAccessInfo(w, r)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
			h.Set("Cache-Control", "no-store")
			h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "panic in handler", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
				if rec.status == 0 {
					s.writeError(rec, r, fmt.Errorf("panic: %v", p))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			level := slog.LevelInfo
			if status < 400 && pollingRoute(r) {
				level = slog.LevelDebug
			}
			remote := r.RemoteAddr
			if host, _, err := net.SplitHostPort(remote); err == nil {
				remote = host
			}
			s.log.Log(r.Context(), level, "http request",
				"method", r.Method,
				"path", r.URL.Path,
				"status", status,
				"bytes", rec.bytes,
				"duration", time.Since(start),
				"request_id", info.id,
				"user", info.user,
				"remote", remote,
			)
		}()
		next.ServeHTTP(rec, r)
	})
}
