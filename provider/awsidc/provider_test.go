package awsidc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/mototest"
	"github.com/ajar-dev/ajar/provider/providertest"
)

func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }

const account = "111122223333"

// env is a fresh permission set in moto's Identity Center instance.
type env struct {
	sso      *ssoadmin.Client
	ids      *identitystore.Client
	instance string
	store    string
	permSet  string
	cfg      json.RawMessage
	prov     *Provider
}

func newEnv(t *testing.T, load awsx.Loader, extra string) *env {
	t.Helper()
	moto := mototest.Shared(t)
	ac := moto.Config(t)
	e := &env{sso: ssoadmin.NewFromConfig(ac), ids: identitystore.NewFromConfig(ac)}
	inst, err := e.sso.ListInstances(t.Context(), &ssoadmin.ListInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	e.instance, e.store = *inst.Instances[0].InstanceArn, *inst.Instances[0].IdentityStoreId
	ps, err := e.sso.CreatePermissionSet(t.Context(), &ssoadmin.CreatePermissionSetInput{
		InstanceArn: aws.String(e.instance), Name: aws.String("Admin" + providertest.NewRequestID()[4:12]), SessionDuration: aws.String("PT1H"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.permSet = *ps.PermissionSet.PermissionSetArn
	if load == nil {
		load = moto.Loader()
	}
	e.cfg = json.RawMessage(fmt.Sprintf(`{"region":%q,"instance_arn":%q,"identity_store_id":%q,"account_id":%q,"permission_set_arn":%q%s}`,
		mototest.Region, e.instance, e.store, account, e.permSet, extra))
	e.prov, err = New("prod-admin", e.cfg, load)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// user creates an identity store user and returns its email (the ajar user id).
func (e *env) user(t testing.TB) (email, id string) {
	t.Helper()
	name := "u" + providertest.NewRequestID()[4:]
	email = name + "@example.com"
	out, err := e.ids.CreateUser(context.Background(), &identitystore.CreateUserInput{
		IdentityStoreId: aws.String(e.store), UserName: aws.String(name), DisplayName: aws.String(name),
		Name:   &istypes.Name{GivenName: aws.String("Test"), FamilyName: aws.String(name)},
		Emails: []istypes.Email{{Value: aws.String(email), Primary: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return email, *out.UserId
}

func (e *env) request(id, requester string) ajar.GrantRequest {
	return ajar.GrantRequest{RequestID: id, Target: "prod-admin", Requester: requester, ExpiresAt: time.Now().Add(time.Hour), Config: e.cfg}
}

// assignments counts the user's assignments of the permission set (moto keeps
// duplicates, so this sees a second create).
func (e *env) assignments(t testing.TB, principal string) int {
	t.Helper()
	out, err := e.sso.ListAccountAssignments(context.Background(), &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(e.instance), AccountId: aws.String(account), PermissionSetArn: aws.String(e.permSet),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range out.AccountAssignments {
		if aws.ToString(a.PrincipalId) == principal {
			n++
		}
	}
	return n
}

func TestConformance(t *testing.T) {
	e := newEnv(t, nil, "")
	var principals sync.Map // email to identity store user id
	providertest.Run(t, providertest.Subject{
		Provider: e.prov, Kind: Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest {
			email, pid := e.user(t)
			principals.Store(email, pid)
			return e.request(id, email)
		},
		Count: func(t testing.TB, req ajar.GrantRequest) int {
			pid, _ := principals.Load(req.Requester)
			return e.assignments(t, pid.(string))
		},
	})
}

func TestShareKey(t *testing.T) {
	e := newEnv(t, nil, `,"user_attribute":"user_name","user_template":"{local}"`)
	a1 := e.prov.ShareKey(e.request("req_1", "alice@example.com"))
	a2 := e.prov.ShareKey(e.request("req_2", "alice@example.com"))
	b := e.prov.ShareKey(e.request("req_3", "bob@example.com"))
	if a1 != a2 || a1 == b || !strings.HasSuffix(a1, "|user_name=alice") {
		t.Fatalf("share keys %q %q %q", a1, a2, b)
	}
}

func TestUnknownUserIsPermanent(t *testing.T) {
	e := newEnv(t, nil, "")
	req := e.request(providertest.NewRequestID(), "ghost@example.com")
	_, err := e.prov.Grant(t.Context(), req)
	if ajar.ErrorCode(err) != ajar.EINVALID || !strings.Contains(err.Error(), `no Identity Center user with email "ghost@example.com"`) {
		t.Fatalf("grant for an unknown user: %v", err)
	}
	if err := e.prov.Revoke(t.Context(), providertest.Intent(Name, req)); err != nil {
		t.Fatal(err)
	}
}

// stuck makes every creation of an assignment stay IN_PROGRESS: moto creates it,
// the proxy reports it as never finishing.
func stuck(proxy *mototest.Proxy) {
	inProgress := func(w http.ResponseWriter, c *mototest.Call, key string) {
		rec := proxy.Record(c)
		var body map[string]map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body[key] == nil {
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		body[key]["Status"] = "IN_PROGRESS"
		mototest.WriteJSON(w, body)
	}
	proxy.Handle("CreateAccountAssignment", func(w http.ResponseWriter, c *mototest.Call) bool {
		inProgress(w, c, "AccountAssignmentCreationStatus")
		return true
	})
	proxy.Handle("DescribeAccountAssignmentCreationStatus", func(w http.ResponseWriter, c *mototest.Call) bool {
		inProgress(w, c, "AccountAssignmentCreationStatus")
		return true
	})
}

// TestStuckInProgressRollsBack: a creation that never finishes ends in a
// retryable error naming the status, after the assignment is rolled back.
func TestStuckInProgressRollsBack(t *testing.T) {
	proxy := mototest.NewProxy(t, mototest.Shared(t))
	e := newEnv(t, proxy.Loader(), `,"provisioning_timeout":"1s"`)
	stuck(proxy)
	email, pid := e.user(t)
	start := time.Now()
	_, err := e.prov.Grant(t.Context(), e.request(providertest.NewRequestID(), email))
	if err == nil || ajar.ErrorCode(err) == ajar.EINVALID {
		t.Fatalf("grant stuck IN_PROGRESS: %v, want a retryable error", err)
	}
	for _, want := range []string{"Identity Center did not finish within 1s", "status IN_PROGRESS", "rolled back"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took := time.Since(start); took < time.Second || took > 5*time.Second {
		t.Errorf("grant took %s, want about the 1s timeout", took)
	}
	if n := proxy.Calls("DescribeAccountAssignmentCreationStatus"); n < 2 {
		t.Errorf("status polled %d times", n)
	}
	if n := e.assignments(t, pid); n != 0 {
		t.Fatalf("%d assignments left after the rollback", n)
	}
}

func TestFailedCreation(t *testing.T) {
	proxy := mototest.NewProxy(t, mototest.Shared(t))
	e := newEnv(t, proxy.Loader(), "")
	proxy.Handle("CreateAccountAssignment", func(w http.ResponseWriter, c *mototest.Call) bool {
		mototest.WriteJSON(w, map[string]any{"AccountAssignmentCreationStatus": map[string]any{
			"Status": "FAILED", "FailureReason": "Received a 404 status error: Not supported account", "RequestId": "r-1",
		}})
		return true
	})
	email, _ := e.user(t)
	_, err := e.prov.Grant(t.Context(), e.request(providertest.NewRequestID(), email))
	if err == nil || !strings.Contains(err.Error(), "Not supported account") {
		t.Fatalf("grant of a failed creation: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	good := `"region":"us-east-1","instance_arn":"arn:aws:sso:::instance/ssoins-1234567890abcdef","identity_store_id":"d-1234567890","account_id":"111122223333","permission_set_arn":"arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"`
	for _, tc := range []struct {
		config string
		fields []string
	}{
		{`{` + good + `}`, nil},
		{`{` + good + `,"user_attribute":"user_name","user_template":"{local}","provisioning_timeout":"40s"}`, nil},
		{`{}`, []string{"region", "instance_arn", "identity_store_id", "account_id", "permission_set_arn"}},
		{`{"region":"us-east-1","instance_arn":"ssoins-1","identity_store_id":"x","account_id":111122223333,"permission_set_arn":"ps-1"}`,
			[]string{"account_id", "instance_arn", "permission_set_arn", "identity_store_id"}},
		{`{` + good + `,"user_attribute":"phone","provisioning_timeout":"forever"}`, []string{"provisioning_timeout", "user_attribute"}},
		{`{` + good + `,"account_id":"1234"}`, []string{"account_id"}},
	} {
		var fields []string
		for _, p := range CheckConfig(json.RawMessage(tc.config)) {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: fields %q, want %q (%v)", tc.config, fields, tc.fields, CheckConfig(json.RawMessage(tc.config)))
		}
	}
	_ = types.StatusValuesFailed
}
