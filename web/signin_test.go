package web_test

import (
	"strings"
	"testing"
)

// TestSigninSpeaksToItsDeployment: the sign-in page mentions dev mode and the
// dev tokens file only on a dev-mode server, and then names the real file;
// outside dev mode it says where a token comes from, and no roadmap notes.
func TestSigninSpeaksToItsDeployment(t *testing.T) {
	prod := startServer(t)
	page := newClient(t, prod.URL).get("/signin")
	if page.Status != 200 {
		t.Fatalf("GET /signin: %d", page.Status)
	}
	low := strings.ToLower(page.Body)
	for _, bad := range []string{"dev mode", "dev-tokens", "demo user", "roadmap", "coming soon", "not yet"} {
		if strings.Contains(low, bad) {
			t.Errorf("the sign-in page of a server outside dev mode mentions %q:\n%s", bad, page.Body)
		}
	}
	if !strings.Contains(page.Body, "<code>ajar token create</code>") {
		t.Errorf("the sign-in page does not say how a token is made:\n%s", page.Body)
	}

	dev := startServerWith(t, serverConfig{DevTokens: "/srv/ajar/dev-tokens.env"})
	page = newClient(t, dev.URL).get("/signin")
	if !strings.Contains(page.Body, "dev mode") || !strings.Contains(page.Body, "<code>/srv/ajar/dev-tokens.env</code>") {
		t.Errorf("the dev-mode sign-in page does not name its tokens file:\n%s", page.Body)
	}
}
