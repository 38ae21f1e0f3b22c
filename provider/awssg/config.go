package awssg

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// Config is the config of one aws-security-group target, for example
//
//	{"region": "us-east-1", "group_id": "sg-0123456789abcdef0", "protocol": "tcp", "port": 22}
//
// or, for a range, "from_port": 8000, "to_port": 8100 instead of "port".
type Config struct {
	Region  string `json:"region"`
	GroupID string `json:"group_id"`
	// Protocol is "tcp" (the default) or "udp".
	Protocol string `json:"protocol"`
	FromPort int32  `json:"from_port"`
	ToPort   int32  `json:"to_port"`
}

var groupIDRE = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)

// CheckConfig returns every problem with an aws-security-group target config, with
// field paths relative to the config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, "region", "group_id", "protocol", "port", "from_port", "to_port")
	cfg := Config{
		Region:   f.Region("region", true),
		GroupID:  f.String("group_id", true),
		Protocol: f.String("protocol", false),
	}
	if cfg.GroupID != "" && !groupIDRE.MatchString(cfg.GroupID) {
		f.Add("group_id", "%q is not a security group id (sg- and 8 or 17 hex digits)", cfg.GroupID)
	}
	switch cfg.Protocol {
	case "":
		cfg.Protocol = "tcp"
	case "tcp", "udp":
	default:
		f.Add("protocol", "must be tcp or udp, not %q", cfg.Protocol)
	}

	port, hasPort := f.Int("port")
	from, hasFrom := f.Int("from_port")
	to, hasTo := f.Int("to_port")
	checkPort := func(field string, n int) {
		if n < 1 || n > 65535 {
			f.Add(field, "must be a port from 1 to 65535, not %d", n)
		}
	}
	switch {
	case f.Has("port") && (f.Has("from_port") || f.Has("to_port")):
		f.Add("port", "give either port or from_port and to_port, not both")
	case f.Has("port"):
		if hasPort {
			checkPort("port", port)
			from, to = port, port
		}
	case f.Has("from_port") || f.Has("to_port"):
		if !f.Has("from_port") {
			f.Add("from_port", "required with to_port")
		}
		if !f.Has("to_port") {
			f.Add("to_port", "required with from_port")
		}
		if hasFrom {
			checkPort("from_port", from)
		}
		if hasTo {
			checkPort("to_port", to)
		}
		if hasFrom && hasTo && from > to {
			f.Add("to_port", "%d is below from_port %d", to, from)
		}
	default:
		f.Add("port", "required: the port to open (or from_port and to_port for a range)")
	}
	cfg.FromPort, cfg.ToPort = int32(from), int32(to)
	return cfg, f.Problems()
}

// ports renders the port range for messages: "22/tcp", "8000-8100/tcp".
func (c Config) ports() string {
	if c.FromPort == c.ToPort {
		return fmt.Sprintf("%d/%s", c.FromPort, c.Protocol)
	}
	return fmt.Sprintf("%d-%d/%s", c.FromPort, c.ToPort, c.Protocol)
}

// IAMPolicy returns the IAM statements ajar needs for the target: authorize and
// revoke ingress on this one group, tag only the rules it creates (or has
// created), and describe rules (which IAM cannot scope to a resource).
func IAMPolicy(target string, raw json.RawMessage) ([]awsx.Statement, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	part := awsx.Partition(cfg.Region)
	group := fmt.Sprintf("arn:%s:ec2:%s:*:security-group/%s", part, cfg.Region, cfg.GroupID)
	rules := fmt.Sprintf("arn:%s:ec2:%s:*:security-group-rule/*", part, cfg.Region)
	ajarKeys := map[string]any{"aws:TagKeys": []string{"ajar:*"}}
	return []awsx.Statement{
		{
			Effect: "Allow", Action: []string{"ec2:DescribeSecurityGroupRules"}, Resource: []string{"*"},
		},
		{
			Effect:   "Allow",
			Action:   []string{"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"},
			Resource: []string{group, rules},
		},
		{
			// Tags written with the rule, as it is created.
			Effect: "Allow", Action: []string{"ec2:CreateTags"}, Resource: []string{rules},
			Condition: map[string]map[string]any{
				"StringEquals":            {"ec2:CreateAction": "AuthorizeSecurityGroupIngress"},
				"ForAllValues:StringLike": ajarKeys,
			},
		},
		{
			// Holder tags added to and removed from rules ajar created.
			Effect: "Allow", Action: []string{"ec2:CreateTags", "ec2:DeleteTags"}, Resource: []string{rules},
			Condition: map[string]map[string]any{
				"StringEquals":            {"aws:ResourceTag/" + TagManaged: "true"},
				"ForAllValues:StringLike": ajarKeys,
			},
		},
	}, nil
}
