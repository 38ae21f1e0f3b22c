package sso

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/identity/mfa"
	"github.com/ajar-dev/ajar/policy"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// sameGroups is an IdP that confirms everyone's groups unchanged.
type sameGroups struct{}

func (sameGroups) Refresh(_ context.Context, _, rt string) ([]string, string, error) {
	return []string{"sre"}, rt, nil
}

const keysPolicy = `
users:
  - {id: root@example.com, groups: [secops]}
  - {id: bob@example.com, groups: [sre]}
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
      steps: [{approvers: [group:sre], count: 1, require_mfa: true}]
`

// TestKeysFromTokenRefused: on a server with single sign-on, someone holding
// an SSO person's API token (minted for a script) cannot register a security
// key as them, neither with the token itself in a browser cookie nor through a
// web session signed in with it; the person's own SSO session can.
func TestKeysFromTokenRefused(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ajar.db"), sqlite.WithNow(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse([]byte(keysPolicy), func(string, json.RawMessage) ajar.Problems { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ids, err := identity.New(identity.Config{Store: st, Policy: pol, Now: clock, Groups: sameGroups{},
		Refresh: 10 * time.Minute, SessionTTL: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mfa.New("https://ajar.example.com", storeKeys{st: st}, identity.Flows{Store: st}, clock)
	if err != nil {
		t.Fatal(err)
	}
	keys := &Keys{Service: svc, ids: ids, sso: true, now: clock}

	const zoe = "zoe@example.com"
	own, _, err := ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: zoe, Groups: []string{"sre"}, Source: "oidc"})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pol.User("root@example.com")
	tok, _, err := ids.CreateToken(ctx, root, zoe, "ci", 0)
	if err != nil {
		t.Fatal(err)
	}
	asToken, err := ids.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	fromToken, _, err := ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: zoe, Source: "token", Parent: asToken.Session})
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string]string{"the token itself": tok, "a web session signed in with it": fromToken} {
		u, err := ids.Authenticate(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.BeginRegistration(ctx, u); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
			t.Errorf("%s: BeginRegistration = %v, want forbidden", name, err)
		}
		if _, err := keys.FinishRegistration(ctx, u, "thief", []byte(`{}`)); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
			t.Errorf("%s: FinishRegistration = %v, want forbidden", name, err)
		}
	}
	u, err := ids.Authenticate(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.BeginRegistration(ctx, u); err != nil {
		t.Errorf("zoe's own SSO session: %v", err)
	}
	// An old session (a cookie someone copied) no longer adds keys, unless
	// it just made a second factor; a new sign-in does.
	now = now.Add(6 * time.Minute)
	if u, err = ids.Authenticate(ctx, own); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.BeginRegistration(ctx, u); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
		t.Errorf("a 6-minute-old SSO session: BeginRegistration = %v, want forbidden", err)
	}
	u.MFAAt = now.Add(-time.Minute)
	if _, err := keys.BeginRegistration(ctx, u); err != nil {
		t.Errorf("an old session that just made a second factor: %v", err)
	}
	again, _, err := ids.SignIn(ctx, identity.SignIn{Kind: ajar.SessionWeb, UserID: zoe, Groups: []string{"sre"}, Source: "oidc"})
	if err != nil {
		t.Fatal(err)
	}
	if u, err = ids.Authenticate(ctx, again); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.BeginRegistration(ctx, u); err != nil {
		t.Errorf("a new SSO sign-in: %v", err)
	}
}
