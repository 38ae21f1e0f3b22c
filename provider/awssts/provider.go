// Package awssts is the aws-sts provider: credential vending. While a request is
// active its requester gets temporary credentials for the target's IAM role
// (ajar credentials ID), each from an AssumeRole call with DurationSeconds equal
// to the remaining window (clamped to STS's 15-minute minimum and the role's
// maximum), a session name naming the request ("ajar-REQUEST_ID") and
// SourceIdentity set to the requester, which CloudTrail records on every call
// made with them. Credentials are returned once and never stored.
//
// Grant proves that ajar can assume the role for the request (the credentials of
// that call are dropped at once). Revoke attaches an inline deny policy to the
// role that denies everything to sessions named after the request whose token
// was issued before the revocation (aws:TokenIssueTime): the documented way to
// revoke issued role sessions. It does so whenever credentials of the request may
// still be valid, that is until 15 minutes after the window: a window that ends
// less than 15 minutes after its last credentials were issued would otherwise
// outlive them. The deny policies name the time after which no credentials they
// cover can be valid, and Revoke deletes the stale ones it finds on the role.
package awssts

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// Name is the provider type in the policy file.
const Name = "aws-sts"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// Session lifetimes STS allows for AssumeRole.
const (
	MinSession = 15 * time.Minute
	MaxSession = 12 * time.Hour
)

// skew is added to every time ajar reasons about on AWS's clock.
const skew = time.Minute

// Config is the config of one aws-sts target, for example
//
//	{"role_arn": "arn:aws:iam::111122223333:role/prod-readonly", "max_session_duration": "1h"}
type Config struct {
	RoleARN string
	// Region is the STS endpoint's region (default us-east-1), also handed to
	// the requester with the credentials.
	Region string
	// MaxSessionDuration caps the credentials' lifetime; zero means the role's
	// own maximum, read with iam:GetRole at grant time.
	MaxSessionDuration time.Duration

	roleName string
}

// CheckConfig returns every problem with an aws-sts target config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, "role_arn", "region", "max_session_duration")
	cfg := Config{
		RoleARN:            f.String("role_arn", true),
		Region:             f.Region("region", false),
		MaxSessionDuration: f.Duration("max_session_duration"),
	}
	if cfg.RoleARN != "" {
		var ok bool
		if _, _, cfg.roleName, ok = awsx.ParseRoleARN(cfg.RoleARN); !ok {
			f.Add("role_arn", "%q is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", cfg.RoleARN)
		}
	}
	if d := cfg.MaxSessionDuration; d != 0 && (d < MinSession || d > MaxSession) {
		f.Add("max_session_duration", "must be from 15m to 12h (what STS allows), not %s", d)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return cfg, f.Problems()
}

// IAMPolicy returns the IAM statements ajar needs for the target: assume the role
// with a source identity, read its maximum session, and manage only its own
// revocation policies on it.
func IAMPolicy(target string, raw json.RawMessage) ([]awsx.Statement, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	st := []awsx.Statement{
		{Effect: "Allow", Action: []string{"sts:AssumeRole", "sts:SetSourceIdentity"}, Resource: []string{cfg.RoleARN}},
		{
			Effect:   "Allow",
			Action:   []string{"iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:PutRolePolicy"},
			Resource: []string{cfg.RoleARN},
		},
	}
	if cfg.MaxSessionDuration == 0 {
		st = append(st, awsx.Statement{Effect: "Allow", Action: []string{"iam:GetRole"}, Resource: []string{cfg.RoleARN}})
	}
	return st, nil
}

// Provider is the aws-sts provider of one target. It is safe for concurrent use.
type Provider struct {
	target string
	cfg    Config
	iam    *iam.Client
	sts    *sts.Client
	now    func() time.Time
}

var (
	_ ajar.Provider         = (*Provider)(nil)
	_ ajar.Verifier         = (*Provider)(nil)
	_ ajar.CredentialIssuer = (*Provider)(nil)
)

// handleData is Handle.Data for HandleVersion 1: no secret, only what the
// credentials are issued for.
type handleData struct {
	RoleARN        string `json:"role_arn"`
	SessionName    string `json:"session_name"`
	SourceIdentity string `json:"source_identity"`
	// MaxSessionSeconds is the longest lifetime credentials of this grant get.
	MaxSessionSeconds int32 `json:"max_session_seconds"`
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
	return &Provider{target: target, cfg: cfg, iam: iam.NewFromConfig(ac), sts: sts.NewFromConfig(ac), now: time.Now}, nil
}

// SessionName is the role session name of a request's credentials.
func SessionName(requestID string) string { return "ajar-" + requestID }

var notIdentity = regexp.MustCompile(`[^\w+=,.@-]`)

// sourceIdentity is the requester as STS accepts a source identity.
func sourceIdentity(requester string) string {
	s := notIdentity.ReplaceAllString(requester, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	for len(s) < 2 {
		s += "-"
	}
	return s
}

// Grant checks that ajar can assume the role for the request and records the
// session name, source identity and longest lifetime its credentials get. It
// returns EINVALID when the role does not exist.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if req.RequestID == "" {
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	}
	longest := p.cfg.MaxSessionDuration
	if longest == 0 {
		out, err := p.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(p.cfg.roleName)})
		if awsx.ErrorCode(err) == "NoSuchEntity" {
			return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "IAM role %s does not exist", p.cfg.RoleARN)
		} else if err != nil {
			return ajar.Handle{}, fmt.Errorf("grant %s: read role %s: %w", req.RequestID, p.cfg.RoleARN, err)
		}
		longest = time.Duration(aws.ToInt32(out.Role.MaxSessionDuration)) * time.Second
		if longest < MinSession {
			longest = time.Hour // the IAM default
		}
	}
	d := handleData{
		RoleARN: p.cfg.RoleARN, SessionName: SessionName(req.RequestID),
		SourceIdentity: sourceIdentity(req.Requester), MaxSessionSeconds: int32(longest / time.Second),
	}
	// Prove the role can be assumed for this request; the credentials are dropped.
	if _, err := p.assume(ctx, d, MinSession); err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	data, err := json.Marshal(d)
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

func (p *Provider) assume(ctx context.Context, d handleData, dur time.Duration) (*sts.AssumeRoleOutput, error) {
	out, err := p.sts.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(d.RoleARN), RoleSessionName: aws.String(d.SessionName),
		SourceIdentity: aws.String(d.SourceIdentity), DurationSeconds: aws.Int32(int32(dur / time.Second)),
	})
	if err != nil {
		return nil, fmt.Errorf("assume role %s as %s: %w", d.RoleARN, d.SessionName, err)
	}
	if out.Credentials == nil {
		return nil, fmt.Errorf("assume role %s: STS returned no credentials", d.RoleARN)
	}
	return out, nil
}

func (p *Provider) check(h ajar.Handle) error {
	if h.Provider != Name || h.Version != HandleVersion {
		return ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	return nil
}

// IssueCredentials assumes the role for the grant in h, for the rest of its
// window: at least 15 minutes (STS's minimum; Revoke then cuts them off), at most
// the role's maximum. It returns ECONFLICT for an intent or an expired grant.
func (p *Provider) IssueCredentials(ctx context.Context, h ajar.Handle, now time.Time) (ajar.Credentials, error) {
	if err := p.check(h); err != nil {
		return ajar.Credentials{}, err
	}
	var d handleData
	if len(h.Data) == 0 || json.Unmarshal(h.Data, &d) != nil || d.SessionName == "" {
		return ajar.Credentials{}, ajar.Errorf(ajar.ECONFLICT, "the grant for request %s has not been made yet", h.Grant.RequestID)
	}
	left := h.Grant.Until().Sub(now) // never past the latest end the policy allows
	if left <= 0 {
		return ajar.Credentials{}, ajar.Errorf(ajar.ECONFLICT, "request %s has expired", h.Grant.RequestID)
	}
	dur := min(max(left.Round(time.Second), MinSession), time.Duration(d.MaxSessionSeconds)*time.Second)
	out, err := p.assume(ctx, d, dur)
	if err != nil {
		return ajar.Credentials{}, fmt.Errorf("credentials for %s: %w", h.Grant.RequestID, err)
	}
	c := out.Credentials
	return ajar.Credentials{
		AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken), Expiration: aws.ToTime(c.Expiration), Region: p.cfg.Region,
	}, nil
}

// validUntil is when the last credentials a grant can have issued expire: each
// was issued before the window closed and lives at most the remaining window or
// STS's minimum, whichever is longer.
func validUntil(h ajar.Handle) time.Time { return h.Grant.ExpiresAt.Add(MinSession + skew) }

// denyPolicyName names the revocation policy of a request; it ends with the Unix
// time after which it covers nothing and can be deleted.
func denyPolicyName(h ajar.Handle) string {
	return fmt.Sprintf("ajar-revoke-%s-until-%d", h.Grant.RequestID, validUntil(h).Unix())
}

var denyNameRE = regexp.MustCompile(`^ajar-revoke-(.+)-until-([0-9]+)$`)

// DenyPolicy returns the revocation policy of a request's sessions: deny
// everything to role sessions named after it whose token was issued before
// issuedBefore.
func DenyPolicy(requestID string, issuedBefore time.Time) awsx.Policy {
	return awsx.NewPolicy(awsx.Statement{
		Sid: "AjarRevokeSessions", Effect: "Deny", Action: []string{"*"}, Resource: []string{"*"},
		Condition: map[string]map[string]any{
			"StringLike":   {"aws:userid": "*:" + SessionName(requestID)},
			"DateLessThan": {"aws:TokenIssueTime": issuedBefore.UTC().Format(time.RFC3339)},
		},
	})
}

// Revoke denies the request's role sessions issued until now (and a minute of
// clock skew), unless every credential it could have issued has expired
// already; it deletes revocation policies on the role that no longer cover
// anything. Revoking again rewrites the same policy.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	if err := p.check(h); err != nil {
		return err
	}
	now := p.now()
	p.prune(ctx, now)
	if !now.Before(validUntil(h)) {
		return nil
	}
	_, err := p.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(p.cfg.roleName), PolicyName: aws.String(denyPolicyName(h)),
		PolicyDocument: aws.String(DenyPolicy(h.Grant.RequestID, now.Add(skew)).JSON()),
	})
	if awsx.ErrorCode(err) == "NoSuchEntity" {
		return nil // no role, no sessions
	} else if err != nil {
		return fmt.Errorf("revoke %s: deny its sessions on role %s: %w", h.Grant.RequestID, p.cfg.RoleARN, err)
	}
	return nil
}

// prune deletes ajar's revocation policies on the role whose time has passed. It
// is best effort: a policy left over is harmless and found again next time.
func (p *Provider) prune(ctx context.Context, now time.Time) {
	pages := iam.NewListRolePoliciesPaginator(p.iam, &iam.ListRolePoliciesInput{RoleName: aws.String(p.cfg.roleName)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return
		}
		for _, name := range page.PolicyNames {
			m := denyNameRE.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			until, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil || now.Before(time.Unix(until, 0)) {
				continue
			}
			p.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(p.cfg.roleName), PolicyName: aws.String(name)})
		}
	}
}

// Verify reports whether the request's sessions can still act: some of its
// credentials may be valid (the window plus STS's minimum lifetime has not
// passed) and no revocation policy denies them.
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	if err := p.check(h); err != nil {
		return false, err
	}
	if !p.now().Before(validUntil(h)) {
		return false, nil
	}
	_, err := p.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(p.cfg.roleName), PolicyName: aws.String(denyPolicyName(h))})
	switch {
	case err == nil:
		return false, nil
	case awsx.ErrorCode(err) == "NoSuchEntity":
		return true, nil
	}
	return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
}
