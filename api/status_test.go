package api

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
)

// TestHTTPStatus pins the error-code-to-status mapping the API, the web pages
// and the client share, and checks the client's reverse mapping is its exact
// inverse.
func TestHTTPStatus(t *testing.T) {
	want := map[string]int{
		ajar.EINVALID:   http.StatusBadRequest,
		ajar.EUNAUTH:    http.StatusUnauthorized,
		ajar.EFORBIDDEN: http.StatusForbidden,
		ajar.ENOTFOUND:  http.StatusNotFound,
		ajar.ECONFLICT:  http.StatusConflict,
		ajar.EINTERNAL:  http.StatusInternalServerError,
		"":              http.StatusInternalServerError,
		"no_such_code":  http.StatusInternalServerError,
	}
	for code, status := range want {
		if got := HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, status)
		}
	}
	seen := map[int]string{}
	for code, status := range codeStatus {
		if other, dup := seen[status]; dup {
			t.Errorf("codes %q and %q both map to %d: the client cannot tell them apart", code, other, status)
		}
		seen[status] = code
		if status == http.StatusInternalServerError || status < 400 || status > 599 {
			t.Errorf("code %q maps to %d, want a 4xx or 5xx other than 500 (500 is EINTERNAL's)", code, status)
		}
		if got := codeOf(status); got != code {
			t.Errorf("codeOf(%d) = %q, want %q", status, got, code)
		}
	}
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusTeapot, http.StatusOK} {
		if got := codeOf(status); got != ajar.EINTERNAL {
			t.Errorf("codeOf(%d) = %q, want %q", status, got, ajar.EINTERNAL)
		}
	}
}

// TestResponseWithoutEnvelope: a proxy's error page gets the code its status
// implies, through the same table.
func TestResponseWithoutEnvelope(t *testing.T) {
	for code, status := range codeStatus {
		resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(strings.NewReader("<html>proxy</html>"))}
		err := responseError(resp)
		if got := ajar.ErrorCode(err); got != code {
			t.Errorf("status %d without an envelope: code %q, want %q", status, got, code)
		}
	}
}
