package api

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/keys"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

const sessionsPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: root@example.com, groups: [secops]}
admins: [group:secops]
targets:
  web: {provider: fake}
policies:
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      steps: [{approvers: [group:secops], count: 1}]
`

// newSessionsServer is a server whose callers are authenticated by a real
// identity.Service on SQLite; it returns the client of root (an admin) and
// alice's token.
func newSessionsServer(t *testing.T) (srv *httptest.Server, root *Client, alice string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse([]byte(sessionsPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, keys.KeySize)
	rand.Read(key)
	mk, _ := keys.NewMasterKey(key)
	ids, err := identity.New(identity.Config{Store: st, Policy: pol, Sealer: mk})
	if err != nil {
		t.Fatal(err)
	}
	rootTok, _, err := ids.CreateToken(t.Context(), ajar.User{}, "root@example.com", "admin", 0)
	if err != nil {
		t.Fatal(err)
	}
	alice, _, err = ids.CreateToken(t.Context(), ajar.User{}, "alice@example.com", "laptop", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(NewServer(newFakeCore(), ids, Options{}).Handler())
	t.Cleanup(srv.Close)
	return srv, NewClient(srv.URL, rootTok), alice
}

// TestTokensAPI: an admin mints a token through the API; lists never show a
// secret; a revoked token and a logged-out one get 401 at once; someone who
// is not an admin can neither mint nor list tokens.
func TestTokensAPI(t *testing.T) {
	srv, root, alice := newSessionsServer(t)
	ctx := t.Context()
	made, err := root.CreateToken(ctx, CreateTokenInput{User: "alice@example.com", Name: "ci", TTL: "30d"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(made.Token, "ajar_") || !strings.HasPrefix(made.ID, "tok_") || made.ExpiresAt.IsZero() {
		t.Fatalf("CreateToken = %+v", made)
	}
	ci := NewClient(srv.URL, made.Token)
	if me, err := ci.WhoAmI(ctx); err != nil || me.ID != "alice@example.com" || me.Session == nil ||
		me.Session.ID != made.ID || me.Session.Kind != ajar.SessionToken || !me.Session.ExpiresAt.Equal(made.ExpiresAt) {
		t.Fatalf("WhoAmI with the new token = %+v, %v", me, err)
	}

	// The list has ids, never a token or its hash.
	resp, err := srv.Client().Do(mustRequest(t, srv.URL+"/v1/tokens", root.Token))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Tokens []map[string]any `json:"tokens"`
	}
	json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if len(raw.Tokens) != 3 {
		t.Fatalf("listed %d tokens, want 3", len(raw.Tokens))
	}
	for _, tok := range raw.Tokens {
		b, _ := json.Marshal(tok)
		if strings.Contains(string(b), made.Token) || strings.Contains(string(b), "ajar_") || tok["hash"] != nil {
			t.Fatalf("a token list shows a secret: %s", b)
		}
		for _, k := range []string{"id", "user", "name", "created_at", "expires_at", "last_used_at"} {
			if _, ok := tok[k]; !ok {
				t.Errorf("token %s has no %s", b, k)
			}
		}
	}

	// Not an admin: 403.
	aliceC := NewClient(srv.URL, alice)
	_, err = aliceC.CreateToken(ctx, CreateTokenInput{User: "alice@example.com"})
	wantStatus(t, err, 403)
	_, err = aliceC.ListTokens(ctx, "", false)
	wantStatus(t, err, 403)
	_, err = root.CreateToken(ctx, CreateTokenInput{User: "alice@example.com", TTL: "400d"})
	wantStatus(t, err, 400)

	// Revoked: 401 at once, and it is listed as revoked only with all.
	if err := root.RevokeToken(ctx, made.ID); err != nil {
		t.Fatal(err)
	}
	_, err = ci.WhoAmI(ctx)
	wantStatus(t, err, 401)
	if list, err := root.ListTokens(ctx, "alice@example.com", false); err != nil || len(list) != 1 {
		t.Fatalf("alice's live tokens: %+v, %v", list, err)
	}
	if list, err := root.ListTokens(ctx, "alice@example.com", true); err != nil || len(list) != 2 {
		t.Fatalf("alice's tokens with all: %+v, %v", list, err)
	}

	// Alice may not revoke root's token; she may end her own by logging out.
	list, _ := root.ListTokens(ctx, "root@example.com", false)
	wantStatus(t, aliceC.RevokeToken(ctx, list[0].ID), 403)
	if err := aliceC.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = aliceC.WhoAmI(ctx)
	wantStatus(t, err, 401)
	if _, err := root.WhoAmI(ctx); err != nil {
		t.Fatalf("root after alice's logout: %v", err)
	}
	if _, err := root.ListSessions(ctx, "", false); err != nil {
		t.Fatalf("sessions: %v", err)
	}
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	se, ok := err.(*StatusError)
	if !ok || se.Status != status {
		t.Fatalf("err = %v, want status %d", err, status)
	}
}

func mustRequest(t *testing.T, url, token string) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}
