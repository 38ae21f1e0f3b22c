package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar/internal/oidctest"
)

// Attacks on single sign-on, sessions and tokens through the real binary
// (the web's Chromium ones, and unit-level ones, live beside their code).

// TestAttackSSOTokenOfDroppedPerson: an admin minted an API token for an SSO
// person (for a CI job, say). The IdP then drops that person: their sessions
// are signed out at the next refresh, and the token must stop working too. It
// used to go on with their last IdP groups for as long as it lived (up to a
// year), since the directory kept what the IdP last said.
func TestAttackSSOTokenOfDroppedPerson(t *testing.T) {
	parallel(t, costLight)
	op := oidctest.Start(t)
	op.SetUser(oidctest.User{Email: "bob@example.com", EmailVerified: true, Groups: []string{"sre"}})
	s := ssoServer(t, op, "2s", "")

	bob := newCLIUser(t, s)
	bob.login(t, op, "bob@example.com") // the IdP vouches for bob: he is in the directory
	tok := strings.TrimSpace(s.ok(t, "admin", "token", "create", "--user", "bob@example.com", "--name", "ci"))
	if st, body := s.httpAs(t, tok, http.MethodGet, "/v1/whoami"); st != http.StatusOK || !strings.Contains(string(body), "sre") {
		t.Fatalf("bob's token before: %d %s", st, body)
	}

	// The IdP forgets bob. He does not use ajar; the server re-reads idle
	// sessions every identity.refresh and learns it.
	op.RemoveUser("bob@example.com")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, body := s.httpAs(t, tok, http.MethodGet, "/v1/whoami")
		if st == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token of a person the IdP dropped still works: %d %s", st, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if r := bob.run(t, "whoami"); r.Code == 0 {
		t.Errorf("bob's CLI session after the IdP dropped him: %+v", r)
	}
}
