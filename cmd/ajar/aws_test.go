package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/credentials"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// credsCore is the fake core with credential vending.
type credsCore struct{ *fakeCore }

func (c credsCore) IssueCredentials(ctx context.Context, u ajar.User, id string) (*credentials.Output, error) {
	if err := c.called("IssueCredentials " + id); err != nil {
		return nil, err
	}
	if id != "r1" {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no request %s", id)
	}
	return &credentials.Output{RequestID: id, Target: "prod-readonly", Credentials: ajar.Credentials{
		AccessKeyID: "ASIAEXAMPLEEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		SessionToken: "FwoGZXIvYXdzEBYaDE+it's/a=token", Expiration: testTime.Add(30 * time.Minute), Region: "us-east-1",
	}}, nil
}

func goldenFile(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestCredentials(t *testing.T) {
	url := startServer(t, credsCore{newFakeCore()})

	r := runCLI(t, url, "credentials", "r1")
	r.want(t, 0)
	goldenFile(t, "credentials-env", r.stdout)
	// What the shell makes of it.
	if !strings.Contains(r.stdout, `export AWS_SESSION_TOKEN='FwoGZXIvYXdzEBYaDE+it'\''s/a=token'`) {
		t.Errorf("the session token is not quoted for sh:\n%s", r.stdout)
	}

	r = runCLI(t, url, "credentials", "r1", "--format", "credential-process")
	r.want(t, 0)
	goldenFile(t, "credentials-process", r.stdout)
	var v struct {
		Version      int
		AccessKeyID  string `json:"AccessKeyId"`
		SessionToken string
		Expiration   string
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != 1 || v.AccessKeyID != "ASIAEXAMPLEEXAMPLE" || v.SessionToken == "" || v.Expiration != "2026-01-02T15:34:05Z" {
		t.Fatalf("credential_process output %+v, %v", v, err)
	}

	runCLI(t, url, "credentials", "r1", "--format", "yaml").want(t, exitUsage, "(field: --format)")
	runCLI(t, url, "credentials", "nope").want(t, exitError, "no request nope")
	runCLI(t, url, "credentials").want(t, exitUsage, "missing argument ID")
}

func TestAWSIAMPolicy(t *testing.T) {
	r := runRaw(t, "aws", "iam-policy", "--config", "testdata/aws-policy.yaml")
	r.want(t, 0)
	goldenFile(t, "aws-iam-policy", r.stdout)
	doc, err := awsx.ParsePolicy(r.stdout)
	if err != nil {
		t.Fatal(err)
	}
	sids := map[string]bool{}
	for _, st := range doc.Statement {
		if sids[st.Sid] {
			t.Errorf("Sid %s twice", st.Sid)
		}
		sids[st.Sid] = true
		for _, res := range st.Resource {
			if res == "*" && !strings.HasPrefix(st.Action[0], "ec2:Describe") && !strings.HasPrefix(st.Action[0], "ssm:Describe") {
				t.Errorf("statement %s grants %v on every resource", st.Sid, st.Action)
			}
		}
	}
	if strings.Count(r.stdout, `"ec2:DescribeSecurityGroupRules"`) != 1 {
		t.Errorf("the shared describe statement is not merged:\n%s", r.stdout)
	}

	runRaw(t, "aws", "iam-policy").want(t, exitError, "has no AWS targets")
	runRaw(t, "aws", "iam-policy", "--config", "testdata/nope.yaml").want(t, exitError)
}

// TestDocsIAMPolicies keeps docs/aws honest: each page shows exactly the policy
// ajar aws iam-policy prints for its example target.
func TestDocsIAMPolicies(t *testing.T) {
	for _, ex := range []struct{ kind, target, config string }{
		{"aws-security-group", "bastion-22", `{"region":"us-east-1","group_id":"sg-0123456789abcdef0","protocol":"tcp","port":22}`},
		{"aws-identity-center", "prod-admin", `{"region":"us-east-1","instance_arn":"arn:aws:sso:::instance/ssoins-1234567890abcdef","identity_store_id":"d-1234567890","account_id":"111122223333","permission_set_arn":"arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"}`},
		{"aws-iam-group", "prod-admins", `{"group":"prod-admins"}`},
		{"aws-ssm-session", "prod-nodes", `{"region":"eu-west-1","account_id":"111122223333","instance_tags":{"Env":"prod"}}`},
		{"aws-sts", "prod-readonly", `{"role_arn":"arn:aws:iam::111122223333:role/prod-readonly"}`},
	} {
		doc, _, err := combinedIAMPolicy([]string{ex.target}, func(string) (string, json.RawMessage) {
			return ex.kind, json.RawMessage(ex.config)
		})
		if err != nil {
			t.Fatal(err)
		}
		page, err := os.ReadFile(filepath.Join("..", "..", "docs", "aws", ex.kind+".md"))
		if err != nil {
			t.Fatal(err)
		}
		want := "<!-- iam-policy " + ex.kind + " -->\n```json\n" + doc.Indented() + "```\n"
		if !strings.Contains(string(page), want) {
			t.Errorf("docs/aws/%s.md does not show the policy ajar prints:\n%s", ex.kind, doc.Indented())
		}
	}
}
