package awsiam

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/mototest"
	"github.com/ajar-dev/ajar/provider/providertest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

type env struct {
	iam   *iam.Client
	group string
	prov  *Provider
	cfg   json.RawMessage
}

func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	moto := mototest.Shared(t)
	c := iam.NewFromConfig(moto.Config(t))
	group := "admins-" + providertest.NewRequestID()
	if _, err := c.CreateGroup(t.Context(), &iam.CreateGroupInput{GroupName: aws.String(group)}); err != nil {
		t.Fatal(err)
	}
	cfg := json.RawMessage(fmt.Sprintf(`{"group":%q%s}`, group, extra))
	p, err := New("prod-admins", cfg, moto.Loader())
	if err != nil {
		t.Fatal(err)
	}
	return &env{iam: c, group: group, prov: p, cfg: cfg}
}

// user creates an IAM user and returns the ajar user id that maps to it.
func (e *env) user(t testing.TB) (ajarID, iamName string) {
	t.Helper()
	iamName = "u-" + providertest.NewRequestID()[4:]
	if _, err := e.iam.CreateUser(context.Background(), &iam.CreateUserInput{UserName: aws.String(iamName)}); err != nil {
		t.Fatal(err)
	}
	return iamName + "@example.com", iamName
}

func (e *env) request(id, requester string) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "prod-admins", Requester: requester, ExpiresAt: time.Now().Add(time.Hour), Config: e.cfg}
}

func (e *env) isMember(t testing.TB, user string) bool {
	t.Helper()
	out, err := e.iam.ListGroupsForUser(context.Background(), &iam.ListGroupsForUserInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range out.Groups {
		if aws.ToString(g.GroupName) == e.group {
			return true
		}
	}
	return false
}

func (e *env) tags(t testing.TB, user string) []string {
	t.Helper()
	out, err := e.iam.ListUserTags(context.Background(), &iam.ListUserTagsInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tg := range out.Tags {
		keys = append(keys, aws.ToString(tg.Key)+"="+aws.ToString(tg.Value))
	}
	slices.Sort(keys)
	return keys
}

func TestConformance(t *testing.T) {
	e := newEnv(t, "")
	providertest.Run(t, providertest.Subject{
		Provider: e.prov, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest {
			ajarID, _ := e.user(t)
			return e.request(id, ajarID)
		},
		Count: func(t testing.TB, req ajar.GrantRequest) int {
			if e.isMember(t, strings.TrimSuffix(req.Requester, "@example.com")) {
				return 1
			}
			return 0
		},
	})
}

func TestSameUserSharesMembership(t *testing.T) {
	e := newEnv(t, "")
	ctx := t.Context()
	who, name := e.user(t)
	h1, err := e.prov.Grant(ctx, e.request(providertest.NewRequestID(), who))
	if err != nil {
		t.Fatal(err)
	}
	h2, err := e.prov.Grant(ctx, e.request(providertest.NewRequestID(), who))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prov.Revoke(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if !e.isMember(t, name) {
		t.Fatal("ending one request removed the membership the other still holds")
	}
	if ok, _ := e.prov.Verify(ctx, h2); !ok {
		t.Fatal("Verify of the remaining request = false")
	}
	if err := e.prov.Revoke(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if e.isMember(t, name) {
		t.Fatal("still a member after both requests ended")
	}
	if tags := e.tags(t, name); len(tags) != 0 {
		t.Fatalf("tags left on the user: %v", tags)
	}
}

func TestStandingMembershipIsNotTakenOver(t *testing.T) {
	e := newEnv(t, "")
	ctx := t.Context()
	who, name := e.user(t)
	if _, err := e.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: aws.String(name), GroupName: aws.String(e.group)}); err != nil {
		t.Fatal(err)
	}
	req := e.request(providertest.NewRequestID(), who)
	_, err := e.prov.Grant(ctx, req)
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "outside ajar") {
		t.Fatalf("grant over a standing membership: %v", err)
	}
	if err := e.prov.Revoke(ctx, providertest.Intent(Name, req)); err != nil {
		t.Fatal(err)
	}
	if !e.isMember(t, name) {
		t.Fatal("the standing membership was removed")
	}
	if tags := e.tags(t, name); len(tags) != 0 {
		t.Fatalf("tags = %v", tags)
	}
}

func TestUserMapping(t *testing.T) {
	sfx := providertest.NewRequestID()[4:12]
	e := newEnv(t, fmt.Sprintf(`,"user_name_template":"ops-{local}-%s","user_names":{"boss@example.com":"the.boss.%s"}`, sfx, sfx))
	ctx := t.Context()
	carol, boss := "ops-carol-"+sfx, "the.boss."+sfx
	for _, name := range []string{carol, boss} {
		if _, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	for who, name := range map[string]string{"carol@example.com": carol, "boss@example.com": boss} {
		h, err := e.prov.Grant(ctx, e.request(providertest.NewRequestID(), who))
		if err != nil {
			t.Fatal(err)
		}
		if !e.isMember(t, name) {
			t.Errorf("%s: %s is not a member", who, name)
		}
		if !strings.Contains(string(h.Data), `"user_name":"`+name+`"`) {
			t.Errorf("handle data %s does not name %s", h.Data, name)
		}
	}
	_, err := e.prov.Grant(ctx, e.request(providertest.NewRequestID(), "nobody@example.com"))
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "ops-nobody-"+sfx+", which does not exist") {
		t.Fatalf("grant for an unmapped user: %v", err)
	}
	_, err = e.prov.Grant(ctx, e.request(providertest.NewRequestID(), "we ird@example.com"))
	if ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("grant for a user mapping to an invalid name: %v", err)
	}
}

func TestMissingGroup(t *testing.T) {
	moto := mototest.Shared(t)
	p, err := New("x", json.RawMessage(`{"group":"no-such-group"}`), moto.Loader())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{iam: iam.NewFromConfig(moto.Config(t))}
	who, name := e.user(t)
	req := ajar.GrantRequest{RequestID: providertest.NewRequestID(), Requester: who}
	_, err = p.Grant(t.Context(), req)
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("grant to a missing group: %v", err)
	}
	// The grant failed after tagging: the cleanup (an intent revoke) removes the tag.
	if err := p.Revoke(t.Context(), providertest.Intent(Name, req)); err != nil {
		t.Fatal(err)
	}
	if tags := e.tags(t, name); len(tags) != 0 {
		t.Fatalf("tags left: %v", tags)
	}
}

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		config string
		fields []string
	}{
		{`{"group":"admins"}`, nil},
		{`{"group":"admins","user_name_template":"{user}","user_names":{"a@example.com":"a"},"region":"cn-north-1"}`, nil},
		{`{}`, []string{"group"}},
		{`{"group":"bad group","user_name_template":"{login}","user_names":{"a@example.com":"bad name"},"extra":1}`,
			[]string{"extra", "group", "user_name_template", "user_names.a@example.com"}},
		{`{"group":"a","user_name_template":""}`, []string{"user_name_template"}},
	} {
		var fields []string
		for _, p := range CheckConfig(json.RawMessage(tc.config)) {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: fields %q, want %q", tc.config, fields, tc.fields)
		}
	}
}
