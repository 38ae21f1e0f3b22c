package awsidc

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// User attributes an ajar user can be matched on in the identity store.
const (
	AttributeEmail    = "email"
	AttributeUserName = "user_name"
)

// DefaultProvisioningTimeout bounds how long Grant and Revoke wait for Identity
// Center to finish (de)provisioning an assignment. It stays under the scheduler's
// 20s bound on one provider call.
const DefaultProvisioningTimeout = 15 * time.Second

// Config is the config of one aws-identity-center target, for example
//
//	{"region": "us-east-1", "instance_arn": "arn:aws:sso:::instance/ssoins-1234567890abcdef",
//	 "identity_store_id": "d-1234567890", "account_id": "111122223333",
//	 "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef",
//	 "user_attribute": "email"}
type Config struct {
	Region           string
	InstanceARN      string
	IdentityStoreID  string
	AccountID        string
	PermissionSetARN string
	// Attribute is how the identity store user is found: AttributeEmail (the
	// default) or AttributeUserName, matched against the ajar user mapped through
	// Users (user_template, default "{user}", and user_names).
	Attribute           string
	Users               awsx.UserMap
	ProvisioningTimeout time.Duration
}

var (
	instanceRE = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$`)
	permSetRE  = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:sso:::[A-Za-z]+/(sso)?ins-[a-zA-Z0-9-.]{16}/ps-[a-zA-Z0-9-.]{16}$`)
	storeRE    = regexp.MustCompile(`^d-[0-9a-z]{10}$|^[0-9a-f]{8}\b-[0-9a-f]{4}\b-[0-9a-f]{4}\b-[0-9a-f]{4}\b-[0-9a-f]{12}$`)
)

// CheckConfig returns every problem with an aws-identity-center target config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, "region", "instance_arn", "identity_store_id", "account_id", "permission_set_arn",
		"user_attribute", "user_template", "user_names", "provisioning_timeout")
	cfg := Config{
		Region:              f.Region("region", true),
		InstanceARN:         f.String("instance_arn", true),
		IdentityStoreID:     f.String("identity_store_id", true),
		AccountID:           f.AccountID("account_id", true),
		PermissionSetARN:    f.String("permission_set_arn", true),
		Attribute:           f.String("user_attribute", false),
		Users:               f.UserMap("user_template", "user_names", "{user}"),
		ProvisioningTimeout: f.Duration("provisioning_timeout"),
	}
	if cfg.InstanceARN != "" && !instanceRE.MatchString(cfg.InstanceARN) {
		f.Add("instance_arn", "%q is not an Identity Center instance ARN (arn:aws:sso:::instance/ssoins-...)", cfg.InstanceARN)
	}
	if cfg.PermissionSetARN != "" && !permSetRE.MatchString(cfg.PermissionSetARN) {
		f.Add("permission_set_arn", "%q is not a permission set ARN (arn:aws:sso:::permissionSet/ssoins-.../ps-...)", cfg.PermissionSetARN)
	}
	if cfg.IdentityStoreID != "" && !storeRE.MatchString(cfg.IdentityStoreID) {
		f.Add("identity_store_id", "%q is not an identity store id (d-1234567890)", cfg.IdentityStoreID)
	}
	switch cfg.Attribute {
	case "":
		cfg.Attribute = AttributeEmail
	case AttributeEmail, AttributeUserName:
	default:
		f.Add("user_attribute", "must be %s or %s, not %q", AttributeEmail, AttributeUserName, cfg.Attribute)
	}
	if cfg.ProvisioningTimeout == 0 {
		cfg.ProvisioningTimeout = DefaultProvisioningTimeout
	} else if cfg.ProvisioningTimeout > 5*time.Minute {
		f.Add("provisioning_timeout", "at most 5m (the scheduler retries a grant that takes longer)")
	}
	return cfg, f.Problems()
}

// IAMPolicy returns the IAM statements ajar needs for the target: create, delete
// and read assignments of this permission set on this account, and look users up
// in this identity store.
func IAMPolicy(target string, raw json.RawMessage) ([]awsx.Statement, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	part := awsx.Partition(cfg.Region)
	account := fmt.Sprintf("arn:%s:sso:::account/%s", part, cfg.AccountID)
	return []awsx.Statement{
		{
			Effect:   "Allow",
			Action:   []string{"sso:CreateAccountAssignment", "sso:DeleteAccountAssignment", "sso:ListAccountAssignments"},
			Resource: []string{cfg.InstanceARN, cfg.PermissionSetARN, account},
		},
		{
			Effect:   "Allow",
			Action:   []string{"sso:DescribeAccountAssignmentCreationStatus", "sso:DescribeAccountAssignmentDeletionStatus"},
			Resource: []string{cfg.InstanceARN},
		},
		{
			Effect: "Allow", Action: []string{"identitystore:GetUserId"},
			Resource: []string{
				fmt.Sprintf("arn:%s:identitystore::*:identitystore/%s", part, cfg.IdentityStoreID),
				fmt.Sprintf("arn:%s:identitystore:::user/*", part),
			},
		},
	}, nil
}
