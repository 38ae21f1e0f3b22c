package oidctest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// authURL is an authorization request as a client would make it.
func authURL(op *OP, redirect, method string) string {
	q := url.Values{
		"client_id": {op.ClientID()}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid email"}, "state": {"st"}, "nonce": {"n"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {method},
	}
	return op.Issuer() + "/authorize?" + q.Encode()
}

func TestDiscovery(t *testing.T) {
	op := Start(t)
	resp, err := http.Get(op.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer  string   `json:"issuer"`
		Scopes  []string `json:"scopes_supported"`
		Methods []string `json:"code_challenge_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != op.Issuer() || !strings.HasPrefix(d.Issuer, "http://127.0.0.1:") {
		t.Errorf("issuer %q, want %q on loopback", d.Issuer, op.Issuer())
	}
	if !strings.Contains(strings.Join(d.Scopes, " "), "offline_access") || !strings.Contains(strings.Join(d.Methods, " "), "S256") {
		t.Errorf("scopes %v, PKCE methods %v", d.Scopes, d.Methods)
	}
}

// TestPKCERequired: an authorization request without an S256 challenge is
// refused with an error sent back to the client.
func TestPKCERequired(t *testing.T) {
	op := Start(t)
	const redirect = "http://127.0.0.1:9/cb"
	op.AllowRedirect(redirect)
	op.SetUser(User{Email: "a@example.com", EmailVerified: true})
	op.LoginAs("a@example.com")
	back, err := op.Browse(authURL(op, redirect, "plain"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("error") != "invalid_request" || back.Query().Get("code") != "" {
		t.Fatalf("plain PKCE: redirected to %s; want error=invalid_request and no code", back)
	}
	back, err = op.Browse(authURL(op, redirect, "S256"))
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("S256: %v, %v; want a code", back, err)
	}
}

// TestUnregisteredRedirect: the OP never sends a code to a redirect URI that
// was not registered.
func TestUnregisteredRedirect(t *testing.T) {
	op := Start(t)
	op.SetUser(User{Email: "a@example.com", EmailVerified: true})
	op.LoginAs("a@example.com")
	if back, err := op.Browse(authURL(op, "http://127.0.0.1:9/evil", "S256")); err == nil {
		t.Fatalf("redirected to %s", back)
	}
}

// TestLoginForm: without LoginAs the login step is a form; posting an email
// signs that user in.
func TestLoginForm(t *testing.T) {
	op := Start(t)
	const redirect = "http://127.0.0.1:9/cb"
	op.AllowRedirect(redirect)
	op.SetUser(User{Email: "a@example.com", EmailVerified: true})
	if _, err := op.Browse(authURL(op, redirect, "S256")); err == nil || !strings.Contains(err.Error(), `name="email"`) {
		t.Fatalf("Browse without LoginAs: %v; want the login form", err)
	}
	b := NewBrowser()
	final, status, body, err := b.Get(context.Background(), authURL(op, redirect, "S256"))
	if err != nil || status != http.StatusOK || !strings.Contains(body, `name="authRequestID"`) {
		t.Fatalf("form: %v %d %v", final, status, err)
	}
	id := body[strings.Index(body, `name="authRequestID" value="`)+len(`name="authRequestID" value="`):]
	id = id[:strings.Index(id, `"`)]
	hc := &http.Client{CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	for who, wantCode := range map[string]bool{"nobody@example.com": false, "A@example.com": true} {
		resp, err := hc.PostForm(op.Issuer()+"/login", url.Values{"authRequestID": {id}, "email": {who}})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc, _ := resp.Location()
		if gotCode := loc != nil && loc.Query().Get("code") != ""; gotCode != wantCode {
			t.Errorf("%s: status %d location %v; want a code: %v", who, resp.StatusCode, loc, wantCode)
		}
	}
}

func TestBrowserScript(t *testing.T) {
	path, next := BrowserScript(t)
	for _, u := range []string{"http://127.0.0.1:1/a?x=1&y=2", "http://127.0.0.1:1/b"} {
		if out, err := exec.Command(path, u).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, want := range []string{"http://127.0.0.1:1/a?x=1&y=2", "http://127.0.0.1:1/b"} {
		if got, err := next(ctx); err != nil || got != want {
			t.Fatalf("next = %q, %v; want %q", got, err, want)
		}
	}
}
