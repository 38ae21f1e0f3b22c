package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// runAs runs the CLI with token as AJAR_TOKEN and extra environment entries.
func (s *server) runAs(t *testing.T, token string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "AJAR_SERVER="+s.URL, "AJAR_TOKEN="+token), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ajar %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

var tokenRE = regexp.MustCompile(`^ajar_[A-Za-z0-9_-]{43}\n$`)

// TestTokensThroughTheAPI: an admin mints a token on the running server with
// "ajar token create" (only the token is printed), "ajar token list -o json"
// shows ids and never a secret, a revoked token and a logged-out one get 401
// at once, and someone who is not an admin can do none of it.
func TestTokensThroughTheAPI(t *testing.T) {
	parallel(t, costLight)
	s := startServer(t, t.TempDir())
	out := s.ok(t, "admin", "token", "create", "--user", "alice@example.com", "--name", "ci", "--ttl", "30d")
	if !tokenRE.MatchString(out) {
		t.Fatalf("token create printed %q, want only a token", out)
	}
	ci := strings.TrimSpace(out)
	if r := s.runAs(t, ci, nil, "whoami"); r.Code != 0 || !strings.Contains(r.Stdout, "alice@example.com") ||
		!strings.Contains(r.Stdout, "Session ends:") || !strings.Contains(r.Stdout, s.URL) {
		t.Fatalf("whoami with the new token: %+v", r)
	}

	list := s.ok(t, "admin", "token", "list", "-o", "json")
	if strings.Contains(list, ci) || strings.Contains(list, "ajar_") {
		t.Fatalf("token list shows a secret:\n%s", list)
	}
	var toks []map[string]any
	if err := json.Unmarshal([]byte(list), &toks); err != nil {
		t.Fatal(err)
	}
	var id string
	for _, tok := range toks {
		for _, k := range []string{"id", "user", "name", "expires_at", "last_used_at"} {
			if _, ok := tok[k]; !ok {
				t.Errorf("token %v has no %s", tok, k)
			}
		}
		if tok["name"] == "ci" {
			id, _ = tok["id"].(string)
			exp, _ := time.Parse(time.RFC3339, tok["expires_at"].(string))
			if d := time.Until(exp); d < 29*24*time.Hour || d > 31*24*time.Hour {
				t.Errorf("the 30d token expires in %s", d)
			}
		}
	}
	if !strings.HasPrefix(id, "tok_") {
		t.Fatalf("no ci token in the list:\n%s", list)
	}
	if table := s.ok(t, "admin", "token", "list"); !strings.Contains(table, "LAST USED") || !strings.Contains(table, id) || strings.Contains(table, ci) {
		t.Errorf("token list:\n%s", table)
	}

	// Not an admin (and not the token's owner): refused, and nothing is printed.
	for _, args := range [][]string{
		{"token", "create", "--user", "alice@example.com"},
		{"token", "list"},
		{"token", "revoke", id},
		{"sessions"},
	} {
		if r := s.ajar(t, "bob", args...); r.Code != 1 || r.Stdout != "" || !strings.Contains(r.Stderr, "admin") {
			t.Errorf("bob: ajar %v = %+v, want refused", args, r)
		}
	}

	// Revoked: 401 at once, and a web session signed in with it ends too.
	cookie := webSignIn(t, s.URL, ci)
	if st := pageStatus(t, s.URL, cookie, "/access"); st != http.StatusOK {
		t.Fatalf("web session of the ci token: %d", st)
	}
	s.ok(t, "admin", "token", "revoke", id)
	if st := pageStatus(t, s.URL, cookie, "/access"); st != http.StatusSeeOther {
		t.Fatalf("web session of a revoked token: %d, want a redirect to sign in", st)
	}
	if st, _ := s.httpAs(t, ci, "GET", "/v1/whoami"); st != http.StatusUnauthorized {
		t.Fatalf("a revoked token: %d, want 401", st)
	}
	if r := s.runAs(t, ci, nil, "whoami"); r.Code != 1 || !strings.Contains(r.Stderr, "not accepted") {
		t.Errorf("whoami with a revoked token: %+v", r)
	}
	if st, cookie := tryWebSignIn(t, s.URL, ci); st != http.StatusUnauthorized || cookie != "" {
		t.Errorf("web sign-in with a revoked token: %d, cookie %q", st, cookie)
	}

	// Logout ends the caller's token at once and removes stored credentials.
	bob2 := strings.TrimSpace(s.ok(t, "admin", "token", "create", "--user", "bob@example.com"))
	cfg := t.TempDir()
	creds := filepath.Join(cfg, "ajar", "credentials")
	os.MkdirAll(filepath.Dir(creds), 0o700)
	os.WriteFile(creds, []byte("server="+s.URL+"\n"), 0o600)
	if r := s.runAs(t, bob2, []string{"XDG_CONFIG_HOME=" + cfg}, "logout"); r.Code != 0 {
		t.Fatalf("logout: %+v", r)
	}
	if _, err := os.Stat(creds); !os.IsNotExist(err) {
		t.Errorf("logout left %s: %v", creds, err)
	}
	if st, _ := s.httpAs(t, bob2, "GET", "/v1/whoami"); st != http.StatusUnauthorized {
		t.Fatalf("a logged-out token: %d, want 401", st)
	}
	if st, _ := s.httpAs(t, s.tokens["bob"], "GET", "/v1/whoami"); st != http.StatusOK {
		t.Fatalf("bob's other token after his logout: %d", st)
	}

	actions := map[string]int{}
	for _, ev := range s.auditEvents(t) {
		actions[ev.Action]++
	}
	if actions["token.created"] < 2 || actions["token.revoked"] != 2 || actions["signin.refused"] != 1 || actions["signin"] != 1 {
		t.Errorf("audit actions: %v", actions)
	}
}

func (s *server) httpAs(t *testing.T, token, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// webSignIn signs a browser-like client in with token and returns the
// session cookie's value.
func webSignIn(t *testing.T, base, token string) string {
	t.Helper()
	status, cookie := tryWebSignIn(t, base, token)
	if cookie == "" {
		t.Fatalf("sign-in gave no session cookie: %d", status)
	}
	return cookie
}

// tryWebSignIn posts the sign-in form with token and returns the status and
// the session cookie ("" for none).
func tryWebSignIn(t *testing.T, base, token string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the sign-in page:\n%s", body)
	}
	resp, err = c.PostForm(base+"/signin", url.Values{"csrf": {string(m[1])}, "token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "ajar_session" && ck.Value != "" {
			return resp.StatusCode, ck.Value
		}
	}
	return resp.StatusCode, ""
}

// pageStatus loads path with the session cookie, not following redirects.
func pageStatus(t *testing.T, base, cookie, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.AddCookie(&http.Cookie{Name: "ajar_session", Value: cookie})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebSessionSurvivesRestart: a web session lives in the store, so it works
// after the server restarts; "ajar sessions" lists it (never its secret) and
// "ajar sessions revoke" ends it at once.
func TestWebSessionSurvivesRestart(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	s := startServer(t, dir)
	cookie := webSignIn(t, s.URL, s.tokens["bob"])
	if st := pageStatus(t, s.URL, cookie, "/access"); st != http.StatusOK {
		t.Fatalf("signed-in page: %d", st)
	}
	s.stop()
	s = startServer(t, dir)
	if st := pageStatus(t, s.URL, cookie, "/access"); st != http.StatusOK {
		t.Fatalf("the web session after a restart: %d, want 200", st)
	}

	out := s.ok(t, "admin", "sessions", "--user", "bob@example.com", "-o", "json")
	if strings.Contains(out, cookie) {
		t.Fatalf("sessions list shows the session's secret:\n%s", out)
	}
	var list []struct {
		ID, Kind, User string
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Kind != "web" || list[0].User != "bob@example.com" {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	// Bob may list his own sessions; alice may not end his.
	s.ok(t, "bob", "sessions", "--user", "bob@example.com")
	if r := s.ajar(t, "alice", "sessions", "revoke", list[0].ID); r.Code != 1 {
		t.Fatalf("alice revoked bob's session: %+v", r)
	}
	s.ok(t, "admin", "sessions", "revoke", list[0].ID)
	if st := pageStatus(t, s.URL, cookie, "/access"); st != http.StatusSeeOther {
		t.Fatalf("a revoked web session: %d, want a redirect to sign in", st)
	}
	actions := map[string]int{}
	for _, ev := range s.auditEvents(t) {
		actions[ev.Action]++
	}
	if actions["signin"] != 1 || actions["session.ended"] != 1 {
		t.Errorf("audit actions: %v", actions)
	}
}

// TestTokenCreateOnHost: "ajar token create --data DIR" still works on the
// host without the server, with --ttl, and refuses a directory without a database.
func TestTokenCreateOnHost(t *testing.T) {
	parallel(t, costLight)
	dir := t.TempDir()
	s := startServer(t, dir)
	s.stop()
	cmd := exec.Command(bin, "token", "create", "--data", dir, "--user", "alice@example.com", "--ttl", "7d")
	out, err := cmd.Output()
	if err != nil || !tokenRE.Match(out) {
		t.Fatalf("token create on the host: %q, %v", out, err)
	}
	s = startServer(t, dir)
	if st, _ := s.httpAs(t, strings.TrimSpace(string(out)), "GET", "/v1/whoami"); st != http.StatusOK {
		t.Fatalf("the host-made token: %d", st)
	}
	empty := t.TempDir()
	b, err := exec.Command(bin, "token", "create", "--data", empty, "--user", "alice@example.com").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "no ajar database") {
		t.Fatalf("token create on an empty data dir: %s, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(empty, "ajar.db")); !os.IsNotExist(err) {
		t.Fatal("token create made a database")
	}
}

// TestWebSessionAcrossReplicas: two replicas on one PostgreSQL database; a web
// session made on one works on the other (no sticky sessions), and ending it on
// one ends it on both at once.
func TestWebSessionAcrossReplicas(t *testing.T) {
	parallel(t, costHeavy)
	pg := pgtest.StartT(t, pgtest.Options{})
	dsn, err := pg.CreateDatabase(t.Context(), "websessions")
	if err != nil {
		t.Fatal(err)
	}
	config := replicaPolicy(t, `storage: {driver: postgres, dsn: "`+dsn+`"}`, `{dir: "`+t.TempDir()+`"}`)
	env := []string{"AJAR_MASTER_KEY=" + randomMasterKey(), "AJAR_TESTONLY_PROVIDERS=1"}
	a := startReplica(t, "a", config, env...)
	b := startReplica(t, "b", config, env...)
	cookie := webSignIn(t, a.URL, a.tokens["bob"])
	if st := pageStatus(t, b.URL, cookie, "/access"); st != http.StatusOK {
		t.Fatalf("a session made on replica a, on replica b: %d, want 200", st)
	}
	out := a.ok(t, "admin", "sessions", "--user", "bob@example.com", "-o", "json")
	var list []struct{ ID string }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	a.ok(t, "admin", "sessions", "revoke", list[0].ID)
	for _, r := range []*server{a, b} {
		if st := pageStatus(t, r.URL, cookie, "/access"); st != http.StatusSeeOther {
			t.Fatalf("a revoked session on %s: %d, want a redirect to sign in", r.URL, st)
		}
	}
}
