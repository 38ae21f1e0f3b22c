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

// TestConditionUserIDCase: requester.id is lower case, so a condition naming
// a user id with capitals would never hold (a deny that never denies); it is
// a config error.
func TestConditionUserIDCase(t *testing.T) {
	const src = `
users: [{id: alice@example.com}]
targets: {web: {provider: fake}}
policies:
  - name: web
    targets: [web]
    requesters: [alice@example.com]
    default_duration: 30m
    max_duration: 1h
    deny:
      - {expr: 'requester.id == "Mallory@Example.com"', message: not mallory}
    approval: {auto_approve: 'requester.id == "alice@example.com"'}
`
	_, err := Parse([]byte(src), noCheck)
	probs := problemsOf(t, err)
	if len(probs) != 1 || probs[0].Field != "policies[0].deny[0].expr" || !strings.Contains(probs[0].Message, `"mallory@example.com"`) {
		t.Errorf("problems %v, want one on policies[0].deny[0].expr", probs)
	}
}
