package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// limitsPolicy has small per-user limits so the attacks below hit them fast.
const limitsPolicy = `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: carol@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [secops]}
admins: [group:secops]
targets:
  db: {provider: ssh-cert, config: {principals: [postgres]}}
  web: {provider: ssh-cert, config: {principals: [ubuntu]}}
policies:
  - name: db
    targets: [db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval:
      timeout: 1h
      steps: [{approvers: [group:sre], count: 1}]
  - name: web
    targets: [web]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    approval: {auto_approve: 'true'}
limits: {open_requests_per_user: 5, requests_per_minute_per_user: 8, certificates_per_request: 3}
`

func startLimitsServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte(limitsPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServer(t, dir, "--config", cfg, "--dev")
}

// apiResult is an API response with the headers httpDo leaves out.
type apiResult struct {
	status     int
	retryAfter string
	body       []byte
	err        struct{ Code, Message, Field string }
}

func (s *server) post(t *testing.T, user, path, body string) apiResult {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.tokens[user])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := apiResult{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	r.body, _ = io.ReadAll(resp.Body)
	if r.status >= 400 {
		var env struct {
			Error struct{ Code, Message, Field string }
		}
		if err := json.Unmarshal(r.body, &env); err != nil {
			t.Fatalf("error body %q: %v", r.body, err)
		}
		r.err = env.Error
	}
	return r
}

// wantTooMany checks that r is the refusal of a reached limit, naming it.
func wantTooMany(t *testing.T, r apiResult, limit string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests || r.err.Code != ajar.ETOOMANY || r.retryAfter == "" ||
		!strings.Contains(r.err.Message, "limits."+limit) {
		t.Fatalf("want 429 too_many naming limits.%s with Retry-After; got %d %+v (Retry-After %q)", limit, r.status, r.err, r.retryAfter)
	}
}

// TestAttackRequestFlood (issue 10, item 5): a requester who creates requests as
// fast as she can is stopped by the open-request limit and then by the rate
// limit, with a clear error; nothing of the refused requests is stored; and
// another user's pending request still reaches the approver's listing, and her
// active grant her own, through the CLI's cursor paging.
func TestAttackRequestFlood(t *testing.T) {
	parallel(t, costLight)
	s := startLimitsServer(t)
	victimPending := s.request(t, "carol", "request", "db", "--reason", "migration")
	victimGrant := s.request(t, "carol", "request", "web", "--reason", "deploy")
	if victimGrant.State != ajar.StateActive {
		t.Fatalf("carol's web grant is %s", victimGrant.State)
	}

	// The flood: without limits, 1,200 of these pushed every other request out
	// of the lists. Now the sixth open request is refused.
	var mine []string
	var refused apiResult
	for i := range 50 {
		r := s.post(t, "alice", "/v1/requests", `{"target":"db","reason":"flood"}`)
		if r.status != http.StatusCreated {
			refused = r
			break
		}
		var req ajar.Request
		if err := json.Unmarshal(r.body, &req); err != nil {
			t.Fatal(err)
		}
		mine = append(mine, req.ID)
		if i == 49 {
			t.Fatal("50 requests created: no open-request limit")
		}
	}
	wantTooMany(t, refused, "open_requests_per_user")
	if len(mine) != 5 {
		t.Fatalf("refused after %d requests, want 5", len(mine))
	}
	// The CLI shows the refusal as it is.
	if r := s.ajar(t, "alice", "request", "db", "--reason", "flood"); r.Code == 0 || !strings.Contains(r.Stderr, "limits.open_requests_per_user") {
		t.Fatalf("ajar request over the limit: exit %d\n%s", r.Code, r.Stderr)
	}

	// Cancelling makes room, but not faster than the rate limit: 8 a minute,
	// refused ones not counted (they are not stored). Straight to the API, so
	// that these few calls take seconds even on a loaded machine.
	for _, id := range mine {
		if r := s.post(t, "alice", "/v1/requests/"+id+"/cancel", `{}`); r.status != http.StatusOK {
			t.Fatalf("cancel %s: %d %+v", id, r.status, r.err)
		}
	}
	for range 3 {
		if r := s.post(t, "alice", "/v1/requests", `{"target":"db","reason":"flood"}`); r.status != http.StatusCreated {
			t.Fatalf("request after cancelling: %d %+v", r.status, r.err)
		}
	}
	wantTooMany(t, s.post(t, "alice", "/v1/requests", `{"target":"db","reason":"flood"}`), "requests_per_minute_per_user")

	// Nothing of the refused requests was stored or audited.
	var all []*ajar.Request
	if err := json.Unmarshal([]byte(s.ok(t, "bob", "requests", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if n := len(slices.DeleteFunc(all, func(r *ajar.Request) bool { return r.Requester != "alice@example.com" })); n != 8 {
		t.Fatalf("alice has %d requests stored, want 8", n)
	}
	created := 0
	for _, e := range s.auditEvents(t) {
		if e.Action == "request.created" {
			created++
		}
	}
	if created != 10 { // alice's 8 and carol's 2
		t.Fatalf("%d request.created events, want 10", created)
	}

	// The approver pages through the pending requests and finds carol's.
	more := regexp.MustCompile(`--cursor (\S+)`)
	found, cursor := false, ""
	for pages := 0; !found; pages++ {
		args := []string{"requests", "--state", "pending", "--limit", "2", "-o", "json"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		r := s.ajar(t, "bob", args...)
		if r.Code != 0 {
			t.Fatalf("ajar %v: exit %d\n%s", args, r.Code, r.Stderr)
		}
		var page []*ajar.Request
		if err := json.Unmarshal([]byte(r.Stdout), &page); err != nil || len(page) > 2 {
			t.Fatalf("page %d: %v\n%s", pages, err, r.Stdout)
		}
		found = slices.ContainsFunc(page, func(r *ajar.Request) bool { return r.ID == victimPending.ID })
		m := more.FindStringSubmatch(r.Stderr)
		if m == nil {
			break
		}
		cursor = m[1]
	}
	if !found {
		t.Fatalf("carol's pending request %s is not in bob's listing", victimPending.ID)
	}
	var active []*ajar.Request
	if err := json.Unmarshal([]byte(s.ok(t, "carol", "requests", "--mine", "--state", "active", "-o", "json")), &active); err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0].ID != victimGrant.ID {
		t.Fatalf("carol's active grants: %v", active)
	}
	// A cursor the server did not make is refused, naming the field.
	if r := s.ajar(t, "bob", "requests", "--limit", "2", "--cursor", "r1.garbage"); r.Code == 0 || !strings.Contains(r.Stderr, "cursor") {
		t.Fatalf("garbage cursor: exit %d\n%s", r.Code, r.Stderr)
	}
}

// TestAttackCertificateFlood (issue 10, item 13): one active request gets at
// most certificates_per_request certificates through POST
// /v1/requests/ID/ssh-cert; the next is refused and not recorded.
func TestAttackCertificateFlood(t *testing.T) {
	parallel(t, costLight)
	s := startLimitsServer(t)
	r := s.request(t, "alice", "request", "web", "--reason", "deploy")
	if r.State != ajar.StateActive {
		t.Fatalf("web request is %s", r.State)
	}
	certify := func(id string) apiResult {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]string{"public_key": string(ssh.MarshalAuthorizedKey(k))})
		return s.post(t, "alice", "/v1/requests/"+id+"/ssh-cert", string(body))
	}
	var res apiResult
	issued := 0
	for range 50 {
		if res = certify(r.ID); res.status != http.StatusOK {
			break
		}
		issued++
	}
	wantTooMany(t, res, "certificates_per_request")
	if issued != 3 {
		t.Fatalf("%d certificates issued before the refusal, want 3", issued)
	}
	n := 0
	for _, e := range s.auditEvents(t) {
		if e.Action == "ssh_cert.issued" && e.Subject == r.ID {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d ssh_cert.issued events for %s, want 3", n, r.ID)
	}
	// The limit is per request: a new request gets its own.
	r2 := s.request(t, "alice", "request", "web", "--reason", "deploy again")
	if res := certify(r2.ID); res.status != http.StatusOK {
		t.Fatalf("first certificate of a new request: %d %+v", res.status, res.err)
	}
}
