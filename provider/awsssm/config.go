package awsssm

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// DefaultDocument is the Session Manager document a plain "aws ssm start-session"
// uses.
const DefaultDocument = "SSM-SessionManagerRunShell"

// Config is the config of one aws-ssm-session target, for example
//
//	{"region": "us-east-1", "account_id": "111122223333",
//	 "instance_ids": ["i-0123456789abcdef0"], "user_name_template": "{local}"}
//
// or "instance_tags": {"Env": "prod"} instead of instance_ids, and "role_name"
// instead of a user mapping when requesters start sessions through a role.
type Config struct {
	Region string
	// AccountID is the instances' account; when empty ajar asks STS which account
	// its own credentials are in (sts:GetCallerIdentity needs no permission).
	AccountID    string
	InstanceIDs  []string
	InstanceTags map[string]string
	// RoleName, when set, is the IAM role (a template like the user one) whose
	// inline policy grants the sessions; otherwise Users maps each requester to
	// an IAM user.
	RoleName  string
	Users     awsx.UserMap
	Documents []string
}

var (
	instanceRE = regexp.MustCompile(`^(i-([0-9a-f]{8}|[0-9a-f]{17})|mi-[0-9a-f]{17})$`)
	documentRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,128}$`)
)

// CheckConfig returns every problem with an aws-ssm-session target config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, "region", "account_id", "instance_ids", "instance_tags", "role_name",
		"user_name_template", "user_names", "documents")
	cfg := Config{
		Region:       f.Region("region", true),
		AccountID:    f.AccountID("account_id", false),
		InstanceIDs:  f.Strings("instance_ids"),
		InstanceTags: f.StringMap("instance_tags"),
		RoleName:     f.String("role_name", false),
		Documents:    f.Strings("documents"),
	}
	switch {
	case f.Has("instance_ids") && f.Has("instance_tags"):
		f.Add("instance_ids", "give either instance_ids or instance_tags, not both")
	case f.Has("instance_ids"):
		if len(cfg.InstanceIDs) == 0 {
			f.Add("instance_ids", "must name at least one instance")
		}
		for i, id := range cfg.InstanceIDs {
			switch {
			case !instanceRE.MatchString(id):
				f.Add(fmt.Sprintf("instance_ids[%d]", i), "%q is not an instance id (i-... or mi-...)", id)
			case slices.Contains(cfg.InstanceIDs[:i], id):
				f.Add(fmt.Sprintf("instance_ids[%d]", i), "%q is listed twice", id)
			}
		}
	case f.Has("instance_tags"):
		if len(cfg.InstanceTags) == 0 && f.Problems() == nil {
			f.Add("instance_tags", "must name at least one tag")
		}
		for _, k := range slices.Sorted(maps.Keys(cfg.InstanceTags)) {
			if strings.TrimSpace(k) == "" || cfg.InstanceTags[k] == "" {
				f.Add("instance_tags."+k, "tag names and values must not be empty")
			}
		}
	default:
		f.Add("instance_ids", "required: the instances sessions may be started on (or instance_tags to select them by tag)")
	}

	if f.Has("role_name") && (f.Has("user_name_template") || f.Has("user_names")) {
		f.Add("role_name", "give either role_name or user_name_template/user_names, not both")
	}
	if f.Has("role_name") {
		cfg.RoleName = f.UserMap("role_name", "", "").Template
		if strings.TrimSpace(cfg.RoleName) == "" {
			cfg.RoleName = ""
		}
	}
	if cfg.RoleName == "" {
		cfg.Users = f.UserMap("user_name_template", "user_names", "{local}")
	}
	for i, d := range cfg.Documents {
		if !documentRE.MatchString(d) {
			f.Add(fmt.Sprintf("documents[%d]", i), "%q is not a document name", d)
		}
	}
	if !f.Has("documents") {
		cfg.Documents = []string{DefaultDocument}
	} else if len(cfg.Documents) == 0 {
		f.Add("documents", "must name at least one Session Manager document (the default is %s)", DefaultDocument)
	}
	return cfg, f.Problems()
}

// Principal is the IAM role or user that gets the inline policy.
type Principal struct {
	Kind string `json:"kind"` // "role" or "user"
	Name string `json:"name"`
}

func (c Config) principalOf(requester string) Principal {
	if c.RoleName != "" {
		return Principal{"role", awsx.UserMap{Template: c.RoleName}.Resolve(requester)}
	}
	return Principal{"user", c.Users.Resolve(requester)}
}

// IAMPolicy returns the IAM statements ajar needs for the target: put, read and
// delete inline policies on the requesters' users (or the role), list and end
// sessions, and, with a tag selector, list instances.
func IAMPolicy(target string, raw json.RawMessage) ([]awsx.Statement, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	part := awsx.Partition(cfg.Region)
	account := cfg.AccountID
	if account == "" {
		account = "*"
	}
	principals := fmt.Sprintf("arn:%s:iam::%s:user/*", part, account)
	actions := []string{"iam:DeleteUserPolicy", "iam:GetUserPolicy", "iam:ListUserPolicies", "iam:PutUserPolicy"}
	if cfg.RoleName != "" {
		name := cfg.RoleName
		if strings.Contains(name, "{") {
			name = "*"
		}
		principals = fmt.Sprintf("arn:%s:iam::%s:role/%s", part, account, name)
		actions = []string{"iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:PutRolePolicy"}
	}
	st := []awsx.Statement{
		{Effect: "Allow", Action: actions, Resource: []string{principals}},
		{Effect: "Allow", Action: []string{"ssm:DescribeSessions"}, Resource: []string{"*"}},
		{
			Effect: "Allow", Action: []string{"ssm:TerminateSession"},
			Resource: []string{fmt.Sprintf("arn:%s:ssm:%s:%s:session/*", part, cfg.Region, account)},
		},
	}
	if len(cfg.InstanceTags) > 0 {
		st = append(st, awsx.Statement{Effect: "Allow", Action: []string{"ec2:DescribeInstances"}, Resource: []string{"*"}})
	}
	return st, nil
}
