package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
)

func noCheck(string, json.RawMessage) ajar.Problems { return nil }

// TestUserIDsIgnoreCase checks that user ids are one namespace without case:
// two spellings of one id are a config error naming the field, ids are stored
// lower case, and every lookup and subject match ignores case.
func TestUserIDsIgnoreCase(t *testing.T) {
	const src = `
users:
  - {id: Alice@Example.com, groups: [engineers]}
  - {id: BOB@example.com}
admins: [bob@EXAMPLE.com]
targets: {web: {provider: fake}}
policies:
  - name: web
    targets: [web]
    requesters: [ALICE@example.com]
    default_duration: 30m
    max_duration: 1h
    approval: {steps: [{approvers: [Bob@Example.Com], count: 1}]}
`
	pol, err := Parse([]byte(src), noCheck)
	if err != nil {
		t.Fatal(err)
	}
	alice, ok := pol.User("alice@EXAMPLE.COM")
	if !ok || alice.ID != "alice@example.com" {
		t.Fatalf("User(alice@EXAMPLE.COM) = %+v, %v; want the canonical alice@example.com", alice, ok)
	}
	bob, _ := pol.User("bob@example.com")
	rule, _ := pol.Rule("web")
	if !rule.MayRequest(alice) || !rule.CanApprove(0, bob) || rule.CanApprove(0, alice) || !pol.IsAdmin(bob) {
		t.Error("subjects do not match user ids without case")
	}

	dup := strings.Replace(src, "{id: BOB@example.com}", "{id: alice@example.COM}", 1)
	_, err = Parse([]byte(dup), noCheck)
	probs := problemsOf(t, err)
	found := false
	for _, p := range probs {
		if p.Field == "users[1].id" && strings.Contains(p.Message, "without case") {
			found = true
		}
	}
	if !found {
		t.Errorf("two spellings of one user id: problems %v, want one on users[1].id", probs)
	}
}
