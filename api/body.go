package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/ajar-dev/ajar"
)

// mediaTypeError is an EINVALID error that the server answers with 415
// Unsupported Media Type instead of 400.
type mediaTypeError struct{ err *ajar.Error }

func (e *mediaTypeError) Error() string { return e.err.Error() }
func (e *mediaTypeError) Unwrap() error { return e.err }

// checkContentType refuses a request whose Content-Type header is set to
// anything but application/json (with no parameter but charset=utf-8), so a
// body is never read as JSON when its sender said it was something else (a
// form, text/plain). decodeJSON also refuses a non-empty body with no
// Content-Type at all. The error names the header and is answered with 415.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	ok := err == nil && mt == "application/json"
	for k, v := range params {
		ok = ok && k == "charset" && strings.EqualFold(v, "utf-8")
	}
	if !ok {
		return &mediaTypeError{ajar.FieldErrorf("Content-Type", "must be application/json, not %q", ct)}
	}
	return nil
}

// checkDuplicateKeys refuses a JSON text in which an object, at any depth,
// names a key twice: encoding/json keeps the last one silently, so two
// readers of the same body (a proxy, a log, ajar) could each see a different
// value. The error is EINVALID naming the key's path (params.db). body must
// be valid JSON for the check to be complete; a syntax error is left to the
// decoder, which reports it.
func checkDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := dupValue(dec, "")
	if errors.Is(err, io.EOF) {
		return nil
	}
	if _, ok := errors.AsType[*ajar.Error](err); ok {
		return err
	}
	return nil // malformed JSON: the decoder says so
}

// dupValue reads one JSON value from dec, checking the keys of every object
// in it; path is where the value is.
func dupValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			field := key
			if path != "" {
				field = path + "." + key
			}
			if seen[key] {
				return ajar.FieldErrorf(field, "given more than once")
			}
			seen[key] = true
			if err := dupValue(dec, field); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			if err := dupValue(dec, path); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}
