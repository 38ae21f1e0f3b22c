package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
)

// TestBodyMediaTypeAndDuplicateKeys checks that a body sent as anything but
// application/json is refused with 415 naming the header, and that a key
// given twice, at any depth, is refused with 400 naming it; the core is never
// called.
func TestBodyMediaTypeAndDuplicateKeys(t *testing.T) {
	core := newFakeCore()
	s, _ := newTestServer(t, core)
	h := s.Handler()
	send := func(path, ct, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		r.Header.Set("Authorization", "Bearer alice-token")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	good := `{"target":"prod-web","duration":"45m","reason":"deploy"}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"application/json; charset=latin1", "application/jsonx", "application/json; foo=bar"} {
		core.calls = nil
		e := wantError(t, send("/v1/requests", ct, good), http.StatusUnsupportedMediaType, ajar.EINVALID, "Content-Type")
		if !strings.Contains(e.Message, "application/json") {
			t.Errorf("Content-Type %q: message %q does not say what to send", ct, e.Message)
		}
		if len(core.calls) != 0 {
			t.Errorf("Content-Type %q: core was called (%v)", ct, core.calls)
		}
	}
	// A declared form is refused even with an empty body.
	wantError(t, send("/v1/requests/r1/revoke", "application/x-www-form-urlencoded", ""), http.StatusUnsupportedMediaType, ajar.EINVALID, "Content-Type")
	for body, field := range map[string]string{
		`{"target":"dev","target":"prod-web","duration":"45m"}`:                        "target",
		`{"target":"prod-web","params":{"db":"a","db":"b"}}`:                           "params.db",
		`{"target":"prod-web","reason":"x","duration":"1m","reason":"y"}`:              "reason",
		`{"target":"prod-web","params":{"db":"a"},"params":{"db":"b"}}`:                "params",
		`{"target":"prod-web","\u0074arget":"dev"}`:                                    "target", // the same key, escaped
		`{"target":"prod-web","params":{"a":"1","b":"2","c":"3","a":"4"},"ticket":""}`: "params.a",
	} {
		core.calls = nil
		wantError(t, send("/v1/requests", "application/json", body), http.StatusBadRequest, ajar.EINVALID, field)
		if len(core.calls) != 0 {
			t.Errorf("%s: core was called (%v)", body, core.calls)
		}
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"} {
		if w := send("/v1/requests", ct, good); w.Code != http.StatusCreated {
			t.Errorf("Content-Type %q: status %d: %s", ct, w.Code, w.Body)
		}
	}
	// An empty body needs no Content-Type (revoke, cancel).
	if w := send("/v1/requests/r1/revoke", "", ""); w.Code != http.StatusOK {
		t.Errorf("revoke without a body: status %d: %s", w.Code, w.Body)
	}
}
