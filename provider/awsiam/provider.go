// Package awsiam is the aws-iam-group provider: temporary membership in a
// privileged IAM group. A grant adds the requester's IAM user (mapped from the
// ajar user by a template or an explicit list) to the target's group; revoking
// removes it.
//
// Ownership lives on the IAM user as tags, written before the user is added, so a
// crash in between leaves a tag that the revocation finds: "ajar:request:ID" with
// the group's name as value, one per request holding the membership. Two requests
// of the same user for the same group share the membership; the last one to end
// removes it. A membership ajar did not create (the user was already in the group
// with no ajar request holding it) is never taken over: the grant fails with a
// clear reason and the membership is left alone.
package awsiam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// Name is the provider type in the policy file.
const Name = "aws-iam-group"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// TagRequestPrefix + request id is the tag ajar puts on the IAM user for each
// request holding a group membership; its value names the group.
const TagRequestPrefix = "ajar:request:"

// Config is the config of one aws-iam-group target, for example
//
//	{"group": "prod-admins", "user_name_template": "{local}", "user_names": {"bob@example.com": "robert"}}
type Config struct {
	// Group is the IAM group name.
	Group string `json:"group"`
	// Users maps ajar users to IAM user names: user_names for exceptions,
	// user_name_template ({user}, {local}, {domain}; default "{local}") for everyone else.
	Users awsx.UserMap `json:"-"`
	// Region only selects the IAM endpoint's partition (default us-east-1).
	Region string `json:"region"`
}

// CheckConfig returns every problem with an aws-iam-group target config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, "group", "user_name_template", "user_names", "region")
	cfg := Config{Group: f.String("group", true), Region: f.Region("region", false)}
	if cfg.Group != "" && !awsx.ValidIAMGroupName(cfg.Group) {
		f.Add("group", "%q is not an IAM group name (letters, digits and +=,.@_-, at most 128)", cfg.Group)
	}
	cfg.Users = f.UserMap("user_name_template", "user_names", "{local}")
	for k, v := range cfg.Users.Names {
		if v != "" && !awsx.ValidIAMName(v) {
			f.Add("user_names."+k, "%q is not an IAM user name (letters, digits and +=,.@_-, at most 64)", v)
		}
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return cfg, f.Problems()
}

// IAMPolicy returns the IAM statements ajar needs for the target: add to and
// remove from this one group, read users' groups, and write only its own tags.
func IAMPolicy(target string, raw json.RawMessage) ([]awsx.Statement, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	part := awsx.Partition(cfg.Region)
	users := fmt.Sprintf("arn:%s:iam::*:user/*", part)
	return []awsx.Statement{
		{
			Effect: "Allow", Action: []string{"iam:AddUserToGroup", "iam:RemoveUserFromGroup"},
			Resource: []string{fmt.Sprintf("arn:%s:iam::*:group/%s", part, cfg.Group)},
		},
		{Effect: "Allow", Action: []string{"iam:ListGroupsForUser", "iam:ListUserTags"}, Resource: []string{users}},
		{
			Effect: "Allow", Action: []string{"iam:TagUser", "iam:UntagUser"}, Resource: []string{users},
			Condition: map[string]map[string]any{"ForAllValues:StringLike": {"aws:TagKeys": []string{TagRequestPrefix + "*"}}},
		},
	}, nil
}

// Provider is the aws-iam-group provider of one target. It is safe for concurrent use.
type Provider struct {
	target string
	cfg    Config
	iam    *iam.Client
}

var (
	_ ajar.Provider     = (*Provider)(nil)
	_ ajar.Verifier     = (*Provider)(nil)
	_ ajar.SharedAccess = (*Provider)(nil)
)

// locks serialises this process's work on the same IAM users, across every target
// and config that maps to them. Across processes the broker serialises it with a
// store lease on AccessKey (ajar.SharedAccess).
var locks awsx.KeyedMutex

// AccessKey names the membership a request maps to (its IAM user and the
// target's group): requests with the same key share it.
func (p *Provider) AccessKey(req ajar.GrantRequest) string {
	return p.cfg.Users.Resolve(req.Requester) + "|" + p.cfg.Group
}

// handleData is Handle.Data for HandleVersion 1.
type handleData struct {
	UserName string `json:"user_name"`
	Group    string `json:"group"`
}

// New returns the provider for target.
func New(target string, raw json.RawMessage, load awsx.Loader) (*Provider, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	if load == nil {
		return nil, fmt.Errorf("%s provider needs an AWS config loader", Name)
	}
	ac, err := load(context.Background(), cfg.Region)
	if err != nil {
		return nil, err
	}
	return &Provider{target: target, cfg: cfg, iam: iam.NewFromConfig(ac)}, nil
}

// tagValue is the group as a tag value: IAM tag values do not allow ',' (which
// group names do) but allow '/' (which group names do not), so this is one to one.
func (p *Provider) tagValue() string { return strings.ReplaceAll(p.cfg.Group, ",", "/") }

// userName returns the IAM user of a grant: the one recorded in the handle, or for
// an intent the one the (grant-time) config maps the requester to.
func (p *Provider) userName(h ajar.Handle) string {
	var d handleData
	if len(h.Data) > 0 && json.Unmarshal(h.Data, &d) == nil && d.UserName != "" {
		return d.UserName
	}
	return p.cfg.Users.Resolve(h.Grant.Requester)
}

// state is what IAM says about one user and the target's group.
type state struct {
	mine    bool     // this request's tag is on the user
	holders []string // other requests holding the membership
	member  bool
}

var errNoUser = errors.New("no such IAM user")

func (p *Provider) state(ctx context.Context, user, requestID string) (state, error) {
	var st state
	pages := iam.NewListUserTagsPaginator(p.iam, &iam.ListUserTagsInput{UserName: aws.String(user)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if awsx.ErrorCode(err) == "NoSuchEntity" {
			return st, errNoUser
		} else if err != nil {
			return st, fmt.Errorf("list tags of IAM user %s: %w", user, err)
		}
		for _, t := range page.Tags {
			id, ok := strings.CutPrefix(aws.ToString(t.Key), TagRequestPrefix)
			if !ok || aws.ToString(t.Value) != p.tagValue() {
				continue
			}
			if id == requestID {
				st.mine = true
			} else {
				st.holders = append(st.holders, id)
			}
		}
	}
	groups := iam.NewListGroupsForUserPaginator(p.iam, &iam.ListGroupsForUserInput{UserName: aws.String(user)})
	for groups.HasMorePages() {
		page, err := groups.NextPage(ctx)
		if awsx.ErrorCode(err) == "NoSuchEntity" {
			return st, errNoUser
		} else if err != nil {
			return st, fmt.Errorf("list groups of IAM user %s: %w", user, err)
		}
		for _, g := range page.Groups {
			st.member = st.member || aws.ToString(g.GroupName) == p.cfg.Group
		}
	}
	return st, nil
}

// Grant adds the requester's IAM user to the group, tagging the user first. It
// returns EINVALID when the requester maps to no (valid) IAM user, when the group
// does not exist, or when the user is already in the group outside ajar.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if req.RequestID == "" {
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	}
	user := p.cfg.Users.Resolve(req.Requester)
	if !awsx.ValidIAMName(user) {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "%s maps to %q, which is not an IAM user name; fix user_name_template or user_names of target %s", req.Requester, user, p.target)
	}
	defer locks.Lock(user)()
	st, err := p.state(ctx, user, req.RequestID)
	if errors.Is(err, errNoUser) {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "%s maps to IAM user %s, which does not exist", req.Requester, user)
	} else if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	if !st.mine {
		if st.member && len(st.holders) == 0 {
			return ajar.Handle{}, ajar.Errorf(ajar.EINVALID,
				"IAM user %s is already a member of %s outside ajar; ajar does not take over standing access (remove the membership to use ajar for it)", user, p.cfg.Group)
		}
		_, err := p.iam.TagUser(ctx, &iam.TagUserInput{
			UserName: aws.String(user),
			Tags:     []types.Tag{{Key: aws.String(TagRequestPrefix + req.RequestID), Value: aws.String(p.tagValue())}},
		})
		if err != nil {
			return ajar.Handle{}, fmt.Errorf("grant %s: tag IAM user %s: %w", req.RequestID, user, err)
		}
	}
	if !st.member {
		_, err := p.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: aws.String(user), GroupName: aws.String(p.cfg.Group)})
		if awsx.ErrorCode(err) == "NoSuchEntity" {
			return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "IAM group %s does not exist (or user %s vanished)", p.cfg.Group, user)
		} else if err != nil {
			return ajar.Handle{}, fmt.Errorf("grant %s: add IAM user %s to %s: %w", req.RequestID, user, p.cfg.Group, err)
		}
	}
	data, err := json.Marshal(handleData{UserName: user, Group: p.cfg.Group})
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

func (p *Provider) check(h ajar.Handle) error {
	if h.Provider != Name || h.Version != HandleVersion {
		return ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	return nil
}

// Revoke removes the request's hold on the membership: the user leaves the group
// when no other request holds it, then the request's tag goes. A user without the
// request's tag (never granted, already revoked, or a membership ajar did not
// create) is left alone.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	if err := p.check(h); err != nil {
		return err
	}
	user := p.userName(h)
	if !awsx.ValidIAMName(user) {
		return nil // Grant refuses such a request before creating anything
	}
	defer locks.Lock(user)()
	st, err := p.state(ctx, user, h.Grant.RequestID)
	if errors.Is(err, errNoUser) {
		return nil // the user is gone, and its memberships with it
	} else if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	if !st.mine {
		return nil
	}
	if len(st.holders) == 0 && st.member {
		_, err := p.iam.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: aws.String(user), GroupName: aws.String(p.cfg.Group)})
		if err != nil && awsx.ErrorCode(err) != "NoSuchEntity" {
			return fmt.Errorf("revoke %s: remove IAM user %s from %s: %w", h.Grant.RequestID, user, p.cfg.Group, err)
		}
	}
	_, err = p.iam.UntagUser(ctx, &iam.UntagUserInput{UserName: aws.String(user), TagKeys: []string{TagRequestPrefix + h.Grant.RequestID}})
	if err != nil && awsx.ErrorCode(err) != "NoSuchEntity" {
		return fmt.Errorf("revoke %s: untag IAM user %s: %w", h.Grant.RequestID, user, err)
	}
	if len(st.holders) == 0 {
		// Another replica may have tagged the user for a new request between our
		// read and the removal: give that request its membership back.
		after, err := p.state(ctx, user, h.Grant.RequestID)
		if err == nil && len(after.holders) > 0 && !after.member {
			p.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: aws.String(user), GroupName: aws.String(p.cfg.Group)})
		}
	}
	return nil
}

// Verify reports whether the request holds the user's membership of the group
// right now (its tag is there and the user is a member).
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	if err := p.check(h); err != nil {
		return false, err
	}
	user := p.userName(h)
	if !awsx.ValidIAMName(user) {
		return false, nil
	}
	st, err := p.state(ctx, user, h.Grant.RequestID)
	if errors.Is(err, errNoUser) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	return st.mine && st.member, nil
}
