package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/credentials"
)

// dbCore is the fake core with database logins.
type dbCore struct{ *fakeCore }

func (c *dbCore) IssueDBLogin(ctx context.Context, u ajar.User, id string) (*credentials.DBLoginOutput, error) {
	if err := c.called("IssueDBLogin", u); err != nil {
		return nil, err
	}
	if id != "r1" {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no request %s", id)
	}
	return &credentials.DBLoginOutput{RequestID: id, Target: "prod-db", DBLogin: ajar.DBLogin{
		User: "ajar_r1", Password: "pw", Host: "db", Port: 5432, Database: "app", DSN: "postgres://ajar_r1@db:5432/app", ExpiresAt: testTime,
	}}, nil
}

func TestDBCredentialsRoute(t *testing.T) {
	srv, _ := newTestServer(t, &dbCore{fakeCore: newFakeCore()})
	h := srv.Handler()

	w := call(t, h, "POST", "/v1/requests/r1/db-credentials", "alice-token", "")
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q: %s", w.Code, w.Header().Get("Cache-Control"), w.Body)
	}
	var got map[string]any
	json.Unmarshal(w.Body.Bytes(), &got)
	for k, v := range map[string]any{
		"request_id": "r1", "target": "prod-db", "user": "ajar_r1", "password": "pw", "host": "db", "port": 5432.0,
		"database": "app", "dsn": "postgres://ajar_r1@db:5432/app", "expires_at": "2026-01-02T15:04:05Z",
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	wantError(t, call(t, h, "POST", "/v1/requests/r1/db-credentials", "", ""), http.StatusUnauthorized, ajar.EUNAUTH, "")
	wantError(t, call(t, h, "POST", "/v1/requests/nope/db-credentials", "alice-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")
	wantError(t, call(t, h, "POST", "/v1/requests/r1/db-credentials", "alice-token", `{"x":1}`), http.StatusBadRequest, ajar.EINVALID, "x")

	plain, _ := newTestServer(t, newFakeCore())
	wantError(t, call(t, plain.Handler(), "POST", "/v1/requests/r1/db-credentials", "alice-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")

	hs := httptest.NewServer(h)
	defer hs.Close()
	out, err := NewClient(hs.URL, "alice-token").IssueDBLogin(t.Context(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if out.Password != "pw" || out.Port != 5432 || !out.ExpiresAt.Equal(testTime) {
		t.Fatalf("client got %+v", out)
	}
}
