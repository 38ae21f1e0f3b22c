// Package awssg is the aws-security-group provider: the firewall window. A grant
// authorizes ingress on one security group for the requester's source_ip as a /32
// (IPv6 /128) on the target's port or port range; revoking removes exactly that
// rule, by its rule id.
//
// Ownership and sharing live on the rule itself, as tags, so the provider needs no
// state of its own and a restart or another replica sees the same truth: a rule
// ajar creates carries "ajar:managed=true" and one "ajar:request:ID=REQUESTER" tag
// per request holding it. Two active requests for the same group, port and IP
// share one rule; ending one removes only its tag, and the last one removes the
// rule. A rule without ajar's tags is never taken over: a grant that finds one for
// the same IP and port fails with a clear reason and leaves it alone.
//
// One exception, for the drift check: once a request has been granted, an exact
// copy of its rule (same group, protocol, ports and /32) that no request holds is
// that grant's access coming back (someone re-added it by hand), and revoking the
// request removes it. Rules for other addresses or ports are never touched.
package awssg

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// Name is the provider type in the policy file.
const Name = "aws-security-group"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// ParamSourceIP is the request parameter naming the address to let in.
const ParamSourceIP = "source_ip"

// Tags on the rules ajar creates.
const (
	// TagManaged marks a rule ajar created.
	TagManaged = "ajar:managed"
	// TagRequestPrefix + request id marks a request holding the rule; the value is
	// the requester.
	TagRequestPrefix = "ajar:request:"
)

// Provider is the aws-security-group provider of one target. It is safe for
// concurrent use.
type Provider struct {
	target string
	cfg    Config
	ec2    *ec2.Client
}

var (
	_ ajar.Provider        = (*Provider)(nil)
	_ ajar.Verifier        = (*Provider)(nil)
	_ ajar.ParamsValidator = (*Provider)(nil)
	_ ajar.SharedAccess    = (*Provider)(nil)
)

// locks serialises this process's work on the same rules, across every target
// and config that maps to them. Across processes the broker serialises it with a
// store lease on AccessKey (ajar.SharedAccess).
var locks awsx.KeyedMutex

// handleData is Handle.Data for HandleVersion 1: the rule as granted.
type handleData struct {
	GroupID  string `json:"group_id"`
	Protocol string `json:"protocol"`
	FromPort int32  `json:"from_port"`
	ToPort   int32  `json:"to_port"`
	CIDR     string `json:"cidr"`
	RuleID   string `json:"rule_id"`
}

// New returns the provider for target. It returns the config's ajar.Problems (as
// the error) if CheckConfig finds any.
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
	return &Provider{target: target, cfg: cfg, ec2: ec2.NewFromConfig(ac)}, nil
}

// ValidateParams checks a request's parameters: source_ip is required and must be
// one host address, written as an address or as a /32 (IPv6 /128) prefix.
func (p *Provider) ValidateParams(params map[string]string) error {
	for k := range params {
		if k != ParamSourceIP {
			return ajar.FieldErrorf("params."+k, "unknown parameter: target %q (%s) accepts only %s", p.target, Name, ParamSourceIP)
		}
	}
	_, err := p.sourceCIDR(params)
	return err
}

// sourceCIDR returns the source_ip parameter as a canonical host prefix.
func (p *Provider) sourceCIDR(params map[string]string) (netip.Prefix, error) {
	const want = "must be one IP address, like 203.0.113.7 (or 203.0.113.7/32, 2001:db8::7/128)"
	field := "params." + ParamSourceIP
	v, ok := params[ParamSourceIP]
	if !ok {
		return netip.Prefix{}, ajar.FieldErrorf(field,
			"is required: target %q opens %s only for the address you connect from; pass it, for example --param %s=203.0.113.7",
			p.target, p.cfg.ports(), ParamSourceIP)
	}
	if v == "" {
		return netip.Prefix{}, ajar.FieldErrorf(field, "must not be empty: %s", want)
	}
	q := quoteShort(v)
	var ip netip.Addr
	if strings.Contains(v, "/") {
		pfx, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, ajar.FieldErrorf(field, "%s is not an address or prefix; %s", q, want)
		}
		if pfx.Bits() != pfx.Addr().BitLen() {
			return netip.Prefix{}, ajar.FieldErrorf(field, "%s is a network of more than one address; ajar opens single addresses only: %s", q, want)
		}
		ip = pfx.Addr()
	} else {
		var err error
		if ip, err = netip.ParseAddr(v); err != nil {
			if _, perr := netip.ParseAddrPort(v); perr == nil {
				return netip.Prefix{}, ajar.FieldErrorf(field, "%s has a port; %s", q, want)
			}
			return netip.Prefix{}, ajar.FieldErrorf(field, "%s is not an IP address (host names are not accepted); %s", q, want)
		}
	}
	if ip.Zone() != "" {
		return netip.Prefix{}, ajar.FieldErrorf(field, "%s has a zone; %s", q, want)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() {
		return netip.Prefix{}, ajar.FieldErrorf(field, "%s is not a host address; %s", q, want)
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

func quoteShort(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

func holderKey(requestID string) string { return TagRequestPrefix + requestID }

// ruleKey names the one rule a cidr maps to on this target's group and ports.
func (p *Provider) ruleKey(cidr netip.Prefix) string {
	return fmt.Sprintf("%s|%s|%d-%d|%s", p.cfg.GroupID, p.cfg.Protocol, p.cfg.FromPort, p.cfg.ToPort, cidr)
}

// AccessKey names the one rule a request's source_ip maps to (region, group,
// protocol, ports and address): requests with the same key share that rule. It
// is "" for a request without a valid source_ip, which Grant refuses.
func (p *Provider) AccessKey(req ajar.GrantRequest) string {
	cidr, err := p.sourceCIDR(req.Params)
	if err != nil {
		return ""
	}
	return p.cfg.Region + "|" + p.ruleKey(cidr)
}

// Grant opens the target's ports to the request's source_ip. When an ajar rule for
// the same address already exists (another request holds it), Grant adds this
// request's tag to it instead of creating a second one. It returns EINVALID for a
// bad source_ip, a missing security group, or a rule for the same address that
// ajar did not create.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if req.RequestID == "" {
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	}
	cidr, err := p.sourceCIDR(req.Params)
	if err != nil {
		return ajar.Handle{}, err
	}
	defer locks.Lock(p.ruleKey(cidr))()

	for range 3 {
		rule, err := p.find(ctx, cidr)
		if err != nil {
			return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
		}
		if rule != nil {
			holders := holdersOf(rule)
			switch {
			case slices.Contains(holders, req.RequestID):
			case hasTag(rule, TagManaged, "true") || len(holders) > 0:
				_, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{
					Resources: []string{aws.ToString(rule.SecurityGroupRuleId)},
					Tags:      []types.Tag{{Key: aws.String(holderKey(req.RequestID)), Value: aws.String(req.Requester)}},
				})
				if err != nil {
					return ajar.Handle{}, fmt.Errorf("grant %s: tag rule %s in %s: %w", req.RequestID, aws.ToString(rule.SecurityGroupRuleId), p.cfg.GroupID, err)
				}
			default:
				return ajar.Handle{}, ajar.Errorf(ajar.EINVALID,
					"%s in %s is already open to %s by rule %s, which ajar did not create; ajar does not take over standing access (remove that rule to use ajar for this address)",
					p.cfg.ports(), p.cfg.GroupID, cidr, aws.ToString(rule.SecurityGroupRuleId))
			}
			return p.handle(req, cidr, aws.ToString(rule.SecurityGroupRuleId))
		}

		in := &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId:       aws.String(p.cfg.GroupID),
			IpPermissions: []types.IpPermission{p.permission(cidr, description(req))},
			TagSpecifications: []types.TagSpecification{{
				ResourceType: types.ResourceTypeSecurityGroupRule,
				Tags: []types.Tag{
					{Key: aws.String(TagManaged), Value: aws.String("true")},
					{Key: aws.String(holderKey(req.RequestID)), Value: aws.String(req.Requester)},
				},
			}},
		}
		out, err := p.ec2.AuthorizeSecurityGroupIngress(ctx, in)
		switch code := awsx.ErrorCode(err); {
		case err == nil:
			if len(out.SecurityGroupRules) != 1 {
				return ajar.Handle{}, fmt.Errorf("grant %s: AuthorizeSecurityGroupIngress returned %d rules, want 1", req.RequestID, len(out.SecurityGroupRules))
			}
			return p.handle(req, cidr, aws.ToString(out.SecurityGroupRules[0].SecurityGroupRuleId))
		case code == "InvalidPermission.Duplicate":
			continue // created meanwhile (another replica, or by hand): look again
		case code == "InvalidGroup.NotFound" || code == "InvalidGroupId.Malformed" || code == "InvalidGroupId.NotFound":
			return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "security group %s does not exist in %s", p.cfg.GroupID, p.cfg.Region)
		default:
			return ajar.Handle{}, fmt.Errorf("grant %s: authorize %s from %s in %s: %w", req.RequestID, p.cfg.ports(), cidr, p.cfg.GroupID, err)
		}
	}
	return ajar.Handle{}, fmt.Errorf("grant %s: the rule for %s in %s keeps appearing and disappearing; retrying later", req.RequestID, cidr, p.cfg.GroupID)
}

func (p *Provider) handle(req ajar.GrantRequest, cidr netip.Prefix, ruleID string) (ajar.Handle, error) {
	data, err := json.Marshal(handleData{
		GroupID: p.cfg.GroupID, Protocol: p.cfg.Protocol, FromPort: p.cfg.FromPort, ToPort: p.cfg.ToPort,
		CIDR: cidr.String(), RuleID: ruleID,
	})
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

// permission is the one ingress permission for cidr.
func (p *Provider) permission(cidr netip.Prefix, desc string) types.IpPermission {
	perm := types.IpPermission{
		IpProtocol: aws.String(p.cfg.Protocol),
		FromPort:   aws.Int32(p.cfg.FromPort),
		ToPort:     aws.Int32(p.cfg.ToPort),
	}
	if cidr.Addr().Is4() {
		perm.IpRanges = []types.IpRange{{CidrIp: aws.String(cidr.String()), Description: aws.String(desc)}}
	} else {
		perm.Ipv6Ranges = []types.Ipv6Range{{CidrIpv6: aws.String(cidr.String()), Description: aws.String(desc)}}
	}
	return perm
}

// description names the request in the rule, in the characters EC2 accepts.
func description(req ajar.GrantRequest) string {
	d := fmt.Sprintf("ajar %s %s until %s", req.RequestID, req.Requester, req.ExpiresAt.UTC().Format(time.RFC3339))
	d = strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(". _-:/()#,@[]+=&;{}!$*", r)) {
			return r
		}
		return '_'
	}, d)
	if len(d) > 255 {
		d = d[:255]
	}
	return d
}

// find returns the group's ingress rule for exactly the target's protocol, ports
// and cidr, or nil. EC2 refuses duplicate rules, so there is at most one.
func (p *Provider) find(ctx context.Context, cidr netip.Prefix) (*types.SecurityGroupRule, error) {
	pages := ec2.NewDescribeSecurityGroupRulesPaginator(p.ec2, &ec2.DescribeSecurityGroupRulesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{p.cfg.GroupID}}},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe rules of %s: %w", p.cfg.GroupID, err)
		}
		for i := range page.SecurityGroupRules {
			r := &page.SecurityGroupRules[i]
			if p.matches(r, cidr) {
				return r, nil
			}
		}
	}
	return nil, nil
}

func (p *Provider) matches(r *types.SecurityGroupRule, cidr netip.Prefix) bool {
	if aws.ToBool(r.IsEgress) || aws.ToString(r.IpProtocol) != p.cfg.Protocol ||
		aws.ToInt32(r.FromPort) != p.cfg.FromPort || aws.ToInt32(r.ToPort) != p.cfg.ToPort ||
		r.ReferencedGroupInfo != nil || r.PrefixListId != nil {
		return false
	}
	s := aws.ToString(r.CidrIpv4)
	if s == "" {
		s = aws.ToString(r.CidrIpv6)
	}
	got, err := netip.ParsePrefix(s)
	return err == nil && got.Masked() == cidr
}

func hasTag(r *types.SecurityGroupRule, key, value string) bool {
	for _, t := range r.Tags {
		if aws.ToString(t.Key) == key && aws.ToString(t.Value) == value {
			return true
		}
	}
	return false
}

// holdersOf returns the ids of the requests holding r, from its tags.
func holdersOf(r *types.SecurityGroupRule) []string {
	var out []string
	for _, t := range r.Tags {
		if id, ok := strings.CutPrefix(aws.ToString(t.Key), TagRequestPrefix); ok {
			out = append(out, id)
		}
	}
	return out
}

// action is what revoking a handle does to the rule found for it.
type action int

const (
	leave     action = iota // nothing of this request's is there
	untag                   // others still hold the rule: remove only this request's tag
	removeAll               // this request alone holds the rule, or nobody does after a grant
)

// plan decides what Revoke does with rule for h. Verify reports whether it would
// do anything, so the drift check and Revoke always agree.
func plan(rule *types.SecurityGroupRule, h ajar.Handle) action {
	if rule == nil {
		return leave
	}
	holders := holdersOf(rule)
	mine := slices.Contains(holders, h.Grant.RequestID)
	switch {
	case mine && len(holders) > 1:
		return untag
	case mine:
		return removeAll
	case len(h.Data) > 0 && len(holders) == 0:
		// The grant was made (so no rule of anybody else's was there then) and an
		// exact copy of it that nobody holds is back: the grant's access, re-added.
		return removeAll
	}
	return leave
}

func (p *Provider) check(h ajar.Handle) error {
	if h.Provider != Name || h.Version != HandleVersion {
		return ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	return nil
}

// Revoke removes the request's hold on the rule for its source_ip: its tag while
// other requests hold the rule, the rule itself (by rule id) when it was the last.
// An intent handle (empty Data) removes only what carries the request's tag.
// Revoking what is already gone, or was never granted, returns nil.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	if err := p.check(h); err != nil {
		return err
	}
	cidr, err := p.sourceCIDR(h.Grant.Params)
	if err != nil {
		return nil // Grant refuses such a request before creating anything
	}
	defer locks.Lock(p.ruleKey(cidr))()
	rule, err := p.find(ctx, cidr)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	id := aws.ToString(ruleID(rule))
	switch plan(rule, h) {
	case untag:
		_, err := p.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{
			Resources: []string{id},
			Tags:      []types.Tag{{Key: aws.String(holderKey(h.Grant.RequestID))}},
		})
		if err != nil && !ruleGone(err) {
			return fmt.Errorf("revoke %s: untag rule %s in %s: %w", h.Grant.RequestID, id, p.cfg.GroupID, err)
		}
	case removeAll:
		_, err := p.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{
			GroupId: aws.String(p.cfg.GroupID), SecurityGroupRuleIds: []string{id},
		})
		if err != nil && !ruleGone(err) {
			return fmt.Errorf("revoke %s: remove rule %s from %s: %w", h.Grant.RequestID, id, p.cfg.GroupID, err)
		}
	}
	return nil
}

func ruleID(r *types.SecurityGroupRule) *string {
	if r == nil {
		return nil
	}
	return r.SecurityGroupRuleId
}

// ruleGone reports an error that means the rule (or its group) no longer exists:
// the idempotent case of a revocation.
func ruleGone(err error) bool {
	switch awsx.ErrorCode(err) {
	case "InvalidPermission.NotFound", "InvalidSecurityGroupRuleId.NotFound", "InvalidGroup.NotFound", "InvalidGroupId.NotFound":
		return true
	}
	return false
}

// Verify reports whether the request's access is there: a rule for its source_ip
// that it holds (or, after a grant, an exact copy nobody holds). It is true
// exactly when Revoke would change something.
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	if err := p.check(h); err != nil {
		return false, err
	}
	cidr, err := p.sourceCIDR(h.Grant.Params)
	if err != nil {
		return false, nil
	}
	rule, err := p.find(ctx, cidr)
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	return plan(rule, h) != leave, nil
}
