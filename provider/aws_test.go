package provider

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ajar-dev/ajar"
)

// awsConfigs are valid configs of every AWS provider.
var awsConfigs = map[string]string{
	"aws-security-group":  `{"region":"us-east-1","group_id":"sg-0123456789abcdef0","port":22}`,
	"aws-identity-center": `{"region":"us-east-1","instance_arn":"arn:aws:sso:::instance/ssoins-1234567890abcdef","identity_store_id":"d-1234567890","account_id":"111122223333","permission_set_arn":"arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"}`,
	"aws-iam-group":       `{"group":"admins"}`,
	"aws-ssm-session":     `{"region":"us-east-1","instance_ids":["i-0123456789abcdef0"]}`,
	"aws-sts":             `{"role_arn":"arn:aws:iam::111122223333:role/ro"}`,
}

func TestAWSKinds(t *testing.T) {
	var regions []string
	load := func(ctx context.Context, region string) (aws.Config, error) {
		regions = append(regions, region)
		return aws.Config{Region: region}, nil
	}
	for name, config := range awsConfigs {
		k, ok := Kinds[name]
		if !ok {
			t.Fatalf("%s is not registered", name)
		}
		if probs := CheckTarget(name, json.RawMessage(config)); probs != nil {
			t.Errorf("%s: valid config: %v", name, probs)
		}
		if k.IAMPolicy == nil {
			t.Errorf("%s has no IAMPolicy", name)
		} else if st, err := k.IAMPolicy("t", json.RawMessage(config)); err != nil || len(st) == 0 {
			t.Errorf("%s IAMPolicy = %v, %v", name, st, err)
		}
		if p, err := k.New("t", json.RawMessage(config), Deps{}); err == nil || p != nil || !strings.Contains(err.Error(), "Deps.AWS") {
			t.Errorf("%s without Deps.AWS = (%v, %v), want an error", name, p, err)
		}
		p, err := k.New("t", json.RawMessage(config), Deps{AWS: load})
		if err != nil || p == nil {
			t.Fatalf("%s: New = (%v, %v)", name, p, err)
		}
		if _, ok := p.(ajar.Verifier); !ok {
			t.Errorf("%s is not a Verifier", name)
		}
		if p, err := k.New("t", json.RawMessage(`{"nope":1}`), Deps{AWS: load}); err == nil || p != nil {
			t.Errorf("%s with a bad config = (%v, %v)", name, p, err)
		}
	}
	if len(regions) != len(awsConfigs) {
		t.Errorf("loader called for %v", regions)
	}
	// Problems carry field paths relative to the config.
	probs := CheckTarget("aws-security-group", json.RawMessage(`{"region":"us-east-1","group_id":"sg-1","port":70000}`))
	if len(probs) != 2 || probs[0].Field != "group_id" || probs[1].Field != "port" {
		t.Fatalf("problems = %v", probs)
	}
}
