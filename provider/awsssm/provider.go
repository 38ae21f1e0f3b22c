// Package awsssm is the aws-ssm-session provider: node access the Systems Manager
// way. A grant puts an inline IAM policy named after the request on the IAM user
// (or role) the requester uses; it allows ssm:StartSession on the target's
// instances only, and resuming and ending the user's own sessions, all with the
// condition DateLessThan aws:CurrentTime = the grant's expiry, so it stops working
// at expiry even if ajar is down (docs/architecture.md, invariant 2). Revoking deletes the
// policy and ends the requester's open sessions on those instances (and no one
// else's, and none on instances another live ajar policy of theirs still allows).
package awsssm

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// Name is the provider type in the policy file.
const Name = "aws-ssm-session"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// PolicyPrefix starts the name of every inline policy ajar writes; the rest is the
// request id. ajar deletes only the policy named after the request it revokes.
const PolicyPrefix = "ajar-"

// Statement ids in the policies ajar writes.
const (
	sidStart = "AjarStartSession"
	sidOwn   = "AjarOwnSessions"
)

// Provider is the aws-ssm-session provider of one target. It is safe for
// concurrent use.
type Provider struct {
	target string
	cfg    Config
	iam    *iam.Client
	ssm    *ssm.Client
	ec2    *ec2.Client
	sts    *sts.Client

	mu      sync.Mutex
	account string // the account, from config or STS, once known
}

var (
	_ ajar.Provider = (*Provider)(nil)
	_ ajar.Verifier = (*Provider)(nil)
)

// handleData is Handle.Data for HandleVersion 1.
type handleData struct {
	Principal   Principal `json:"principal"`
	PolicyName  string    `json:"policy_name"`
	AccountID   string    `json:"account_id"`
	InstanceIDs []string  `json:"instance_ids"`
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
	return &Provider{
		target: target, cfg: cfg, account: cfg.AccountID,
		iam: iam.NewFromConfig(ac), ssm: ssm.NewFromConfig(ac), ec2: ec2.NewFromConfig(ac), sts: sts.NewFromConfig(ac),
	}, nil
}

// PolicyName is the name of the inline policy of a request.
func PolicyName(requestID string) string { return PolicyPrefix + requestID }

// Policy returns the policy document a grant puts on the principal: StartSession
// on the instances and documents, and resume/terminate of the principal's own
// sessions, both only until expiresAt.
func Policy(region, account string, p Principal, instances, documents []string, expiresAt time.Time) awsx.Policy {
	part := awsx.Partition(region)
	var resources []string
	for _, id := range instances {
		if strings.HasPrefix(id, "mi-") {
			resources = append(resources, fmt.Sprintf("arn:%s:ssm:%s:%s:managed-instance/%s", part, region, account, id))
		} else {
			resources = append(resources, fmt.Sprintf("arn:%s:ec2:%s:%s:instance/%s", part, region, account, id))
		}
	}
	for _, d := range documents {
		owner := account
		if strings.HasPrefix(d, "AWS-") {
			owner = "" // documents AWS owns have no account in their ARN
		}
		resources = append(resources, fmt.Sprintf("arn:%s:ssm:%s:%s:document/%s", part, region, owner, d))
	}
	// Session ids start with the IAM user name, or with the role session's
	// user id for a role.
	self := "${aws:username}"
	if p.Kind == "role" {
		self = "${aws:userid}"
	}
	until := map[string]any{"aws:CurrentTime": expiresAt.UTC().Format(time.RFC3339)}
	return awsx.NewPolicy(
		awsx.Statement{
			Sid: sidStart, Effect: "Allow", Action: []string{"ssm:StartSession"}, Resource: resources,
			Condition: map[string]map[string]any{
				"DateLessThan": until,
				"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"},
			},
		},
		awsx.Statement{
			Sid: sidOwn, Effect: "Allow", Action: []string{"ssm:ResumeSession", "ssm:TerminateSession"},
			Resource:  []string{fmt.Sprintf("arn:%s:ssm:*:*:session/%s-*", part, self)},
			Condition: map[string]map[string]any{"DateLessThan": until},
		},
	)
}

// accountID returns the instances' account: from the config, or from STS once.
func (p *Provider) accountID(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.account != "" {
		return p.account, nil
	}
	out, err := p.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("find the account (set account_id to skip this): %w", err)
	}
	p.account = aws.ToString(out.Account)
	return p.account, nil
}

// instances returns the target's instances: the configured ids, or those whose
// tags match now, sorted.
func (p *Provider) instances(ctx context.Context) ([]string, error) {
	if len(p.cfg.InstanceIDs) > 0 {
		return slices.Sorted(slices.Values(p.cfg.InstanceIDs)), nil
	}
	filters := []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}}}
	for k, v := range p.cfg.InstanceTags {
		filters = append(filters, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
	}
	var ids []string
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("find instances by tag: %w", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				ids = append(ids, aws.ToString(i.InstanceId))
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// Grant puts the request's policy on the requester's IAM user (or the role). It
// returns EINVALID when the principal does not exist or no instance matches the
// tag selector.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if req.RequestID == "" {
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	}
	if req.ExpiresAt.IsZero() {
		return ajar.Handle{}, ajar.FieldErrorf("expires_at", "is required: the policy must expire")
	}
	pr := p.cfg.principalOf(req.Requester)
	if !awsx.ValidIAMName(pr.Name) {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "%s maps to IAM %s %q, which is not a valid name; fix the config of target %s", req.Requester, pr.Kind, pr.Name, p.target)
	}
	account, err := p.accountID(ctx)
	if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	ids, err := p.instances(ctx)
	if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	if len(ids) == 0 {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "no instance in %s has the tags %v of target %s", p.cfg.Region, p.cfg.InstanceTags, p.target)
	}
	doc := Policy(p.cfg.Region, account, pr, ids, p.cfg.Documents, req.Until()).JSON()
	name := PolicyName(req.RequestID)
	if pr.Kind == "role" {
		_, err = p.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(pr.Name), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
	} else {
		_, err = p.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(pr.Name), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
	}
	if awsx.ErrorCode(err) == "NoSuchEntity" {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "%s maps to IAM %s %s, which does not exist", req.Requester, pr.Kind, pr.Name)
	} else if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: put policy %s on IAM %s %s: %w", req.RequestID, name, pr.Kind, pr.Name, err)
	}
	data, err := json.Marshal(handleData{Principal: pr, PolicyName: name, AccountID: account, InstanceIDs: ids})
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

// grantOf returns what a handle says was granted; for an intent, what the
// (grant-time) config says would have been, with the instances looked up now.
func (p *Provider) grantOf(ctx context.Context, h ajar.Handle) (handleData, error) {
	var d handleData
	if len(h.Data) > 0 && json.Unmarshal(h.Data, &d) == nil && d.Principal.Name != "" {
		return d, nil
	}
	d = handleData{Principal: p.cfg.principalOf(h.Grant.Requester), PolicyName: PolicyName(h.Grant.RequestID)}
	ids, err := p.instances(ctx)
	if err != nil {
		return d, err
	}
	d.InstanceIDs = ids
	d.AccountID, err = p.accountID(ctx)
	return d, err
}

// getPolicy returns the document of the principal's inline policy name, or "" if there is none.
func (p *Provider) getPolicy(ctx context.Context, pr Principal, name string) (string, error) {
	var doc *string
	var err error
	if pr.Kind == "role" {
		var out *iam.GetRolePolicyOutput
		if out, err = p.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(pr.Name), PolicyName: aws.String(name)}); err == nil {
			doc = out.PolicyDocument
		}
	} else {
		var out *iam.GetUserPolicyOutput
		if out, err = p.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(pr.Name), PolicyName: aws.String(name)}); err == nil {
			doc = out.PolicyDocument
		}
	}
	if awsx.ErrorCode(err) == "NoSuchEntity" {
		return "", nil
	}
	return aws.ToString(doc), err
}

// Revoke deletes the request's policy, then ends the requester's open sessions on
// the instances it allowed, except on instances another unexpired ajar policy
// of the requester still allows. Nothing to delete is success.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	if err := p.check(h); err != nil {
		return err
	}
	d, err := p.grantOf(ctx, h)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	if !awsx.ValidIAMName(d.Principal.Name) {
		return nil
	}
	if d.Principal.Kind == "role" {
		_, err = p.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(d.Principal.Name), PolicyName: aws.String(d.PolicyName)})
	} else {
		_, err = p.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String(d.Principal.Name), PolicyName: aws.String(d.PolicyName)})
	}
	if err != nil && awsx.ErrorCode(err) != "NoSuchEntity" {
		return fmt.Errorf("revoke %s: delete policy %s of IAM %s %s: %w", h.Grant.RequestID, d.PolicyName, d.Principal.Kind, d.Principal.Name, err)
	}
	covered, err := p.stillAllowed(ctx, d.Principal, d.PolicyName)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	for _, id := range d.InstanceIDs {
		if covered[id] {
			continue
		}
		if err := p.endSessions(ctx, d.Principal, d.AccountID, id); err != nil {
			return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
		}
	}
	return nil
}

// stillAllowed returns the instances that the principal's other ajar policies
// allow sessions on until a time still in the future.
func (p *Provider) stillAllowed(ctx context.Context, pr Principal, except string) (map[string]bool, error) {
	var names []string
	var err error
	if pr.Kind == "role" {
		pages := iam.NewListRolePoliciesPaginator(p.iam, &iam.ListRolePoliciesInput{RoleName: aws.String(pr.Name)})
		for pages.HasMorePages() && err == nil {
			var page *iam.ListRolePoliciesOutput
			if page, err = pages.NextPage(ctx); err == nil {
				names = append(names, page.PolicyNames...)
			}
		}
	} else {
		pages := iam.NewListUserPoliciesPaginator(p.iam, &iam.ListUserPoliciesInput{UserName: aws.String(pr.Name)})
		for pages.HasMorePages() && err == nil {
			var page *iam.ListUserPoliciesOutput
			if page, err = pages.NextPage(ctx); err == nil {
				names = append(names, page.PolicyNames...)
			}
		}
	}
	if awsx.ErrorCode(err) == "NoSuchEntity" {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list policies of IAM %s %s: %w", pr.Kind, pr.Name, err)
	}
	covered := map[string]bool{}
	now := time.Now()
	for _, n := range names {
		if !strings.HasPrefix(n, PolicyPrefix) || n == except {
			continue
		}
		doc, err := p.getPolicy(ctx, pr, n)
		if err != nil {
			return nil, fmt.Errorf("read policy %s of IAM %s %s: %w", n, pr.Kind, pr.Name, err)
		}
		pol, err := awsx.ParsePolicy(doc)
		if err != nil {
			continue // not one of ours
		}
		for _, st := range pol.Statement {
			until, _ := st.Condition["DateLessThan"]["aws:CurrentTime"].(string)
			exp, err := time.Parse(time.RFC3339, until)
			if st.Sid != sidStart || err != nil || !now.Before(exp) {
				continue
			}
			for _, r := range st.Resource {
				if i := strings.LastIndex(r, "/"); i >= 0 && (strings.Contains(r, ":instance/") || strings.Contains(r, ":managed-instance/")) {
					covered[r[i+1:]] = true
				}
			}
		}
	}
	return covered, nil
}

// owns reports whether a session's owner ARN is the principal.
func owns(pr Principal, account, owner string) bool {
	if pr.Kind == "role" {
		return strings.Contains(owner, ":"+account+":assumed-role/"+pr.Name+"/")
	}
	return strings.Contains(owner, ":"+account+":user/") && strings.HasSuffix(owner, "/"+pr.Name)
}

// endSessions terminates the principal's active sessions on one instance.
func (p *Provider) endSessions(ctx context.Context, pr Principal, account, instance string) error {
	pages := ssm.NewDescribeSessionsPaginator(p.ssm, &ssm.DescribeSessionsInput{
		State:   ssmtypes.SessionStateActive,
		Filters: []ssmtypes.SessionFilter{{Key: ssmtypes.SessionFilterKeyTargetId, Value: aws.String(instance)}},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list sessions on %s: %w", instance, err)
		}
		for _, s := range page.Sessions {
			if aws.ToString(s.Target) != instance || !owns(pr, account, aws.ToString(s.Owner)) {
				continue
			}
			_, err := p.ssm.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: s.SessionId})
			if err != nil && awsx.ErrorCode(err) != "DoesNotExistException" {
				return fmt.Errorf("end session %s on %s: %w", aws.ToString(s.SessionId), instance, err)
			}
		}
	}
	return nil
}

// Verify reports whether the request's policy is on the principal.
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	if err := p.check(h); err != nil {
		return false, err
	}
	var d handleData
	if len(h.Data) == 0 || json.Unmarshal(h.Data, &d) != nil || d.Principal.Name == "" {
		d = handleData{Principal: p.cfg.principalOf(h.Grant.Requester), PolicyName: PolicyName(h.Grant.RequestID)}
	}
	if !awsx.ValidIAMName(d.Principal.Name) {
		return false, nil
	}
	doc, err := p.getPolicy(ctx, d.Principal, d.PolicyName)
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	return doc != "", nil
}
