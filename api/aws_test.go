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

// credsCore is the fake core with credential vending.
type credsCore struct {
	*fakeCore
	got string
}

func (c *credsCore) IssueCredentials(ctx context.Context, u ajar.User, id string) (*credentials.Output, error) {
	if err := c.called("IssueCredentials", u); err != nil {
		return nil, err
	}
	c.got = id
	if id != "r1" {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no request %s", id)
	}
	return &credentials.Output{RequestID: id, Target: "prod-ro", Credentials: ajar.Credentials{
		AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret", SessionToken: "token", Expiration: testTime, Region: "us-east-1",
	}}, nil
}

func TestCredentialsRoute(t *testing.T) {
	core := &credsCore{fakeCore: newFakeCore()}
	srv, _ := newTestServer(t, core)
	h := srv.Handler()

	w := call(t, h, "POST", "/v1/requests/r1/credentials", "alice-token", "")
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q: %s", w.Code, w.Header().Get("Cache-Control"), w.Body)
	}
	var got map[string]any
	json.Unmarshal(w.Body.Bytes(), &got)
	for k, v := range map[string]string{
		"request_id": "r1", "target": "prod-ro", "access_key_id": "ASIAEXAMPLE", "secret_access_key": "secret",
		"session_token": "token", "expiration": "2026-01-02T15:04:05Z", "region": "us-east-1",
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	wantError(t, call(t, h, "POST", "/v1/requests/r1/credentials", "", ""), http.StatusUnauthorized, ajar.EUNAUTH, "")
	wantError(t, call(t, h, "POST", "/v1/requests/nope/credentials", "alice-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")
	wantError(t, call(t, h, "POST", "/v1/requests/r1/credentials", "alice-token", `{"x":1}`), http.StatusBadRequest, ajar.EINVALID, "x")
	wantError(t, call(t, h, "GET", "/v1/requests/r1/credentials", "alice-token", ""), http.StatusMethodNotAllowed, ajar.EINVALID, "")

	// A core without credential vending answers not_found.
	plain, _ := newTestServer(t, newFakeCore())
	wantError(t, call(t, plain.Handler(), "POST", "/v1/requests/r1/credentials", "alice-token", ""), http.StatusNotFound, ajar.ENOTFOUND, "")

	// The client.
	hs := httptest.NewServer(h)
	defer hs.Close()
	out, err := NewClient(hs.URL, "alice-token").IssueCredentials(t.Context(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if out.SecretAccessKey != "secret" || !out.Expiration.Equal(testTime) || out.Target != "prod-ro" {
		t.Fatalf("client got %+v", out)
	}
	if _, err := NewClient(hs.URL, "alice-token").IssueCredentials(t.Context(), ""); ajar.ErrorField(err) != "id" {
		t.Fatalf("empty id: %v", err)
	}
}
