// Package awsidc is the aws-identity-center provider: a permission set assigned to
// the requester on an AWS account through IAM Identity Center for the window.
//
// Grant finds the requester's user in the identity store (by email or user name),
// creates the account assignment and polls its creation status until SUCCEEDED
// or FAILED, within a deadline; an assignment that does not finish in time is
// rolled back and the grant retried by the scheduler. Revoke deletes the
// assignment and polls likewise.
//
// Identity Center cannot tag an assignment, so the requests holding one are
// counted by the broker (ajar.Sharer): the same user's requests for the same
// permission set and account share one assignment, and it is deleted only when the
// last of them ends. For the same reason ajar cannot tell an assignment it made
// from a direct user assignment an administrator made: on a target it manages, a
// direct user assignment of the target's permission set on the target's account
// ends with the requester's last request. Give standing access through groups,
// which ajar never touches.
package awsidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	"github.com/aws/aws-sdk-go-v2/service/identitystore/document"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
)

// Name is the provider type in the policy file.
const Name = "aws-identity-center"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// Provider is the aws-identity-center provider of one target. It is safe for
// concurrent use.
type Provider struct {
	target string
	cfg    Config
	sso    *ssoadmin.Client
	ids    *identitystore.Client
	// pollEvery is the first wait between status polls (doubled up to 2s).
	pollEvery time.Duration
}

var (
	_ ajar.Provider = (*Provider)(nil)
	_ ajar.Verifier = (*Provider)(nil)
	_ ajar.Sharer   = (*Provider)(nil)
)

// locks serialises this process's work on the same identity store users, across every target
// and config that maps to them.
var locks awsx.KeyedMutex

// handleData is Handle.Data for HandleVersion 1.
type handleData struct {
	PrincipalID      string `json:"principal_id"`
	User             string `json:"user"` // the email or user name it was found by
	AccountID        string `json:"account_id"`
	PermissionSetARN string `json:"permission_set_arn"`
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
		target: target, cfg: cfg,
		sso: ssoadmin.NewFromConfig(ac), ids: identitystore.NewFromConfig(ac),
		pollEvery: 250 * time.Millisecond,
	}, nil
}

// ShareKey names the assignment a request maps to: instance, account, permission
// set and the identity store user the requester is found by.
func (p *Provider) ShareKey(req ajar.GrantRequest) string {
	return fmt.Sprintf("%s|%s|%s|%s=%s", p.cfg.InstanceARN, p.cfg.AccountID, p.cfg.PermissionSetARN,
		p.cfg.Attribute, p.cfg.Users.Resolve(req.Requester))
}

var errNoUser = errors.New("no such identity store user")

// principal finds the identity store user id of an ajar user.
func (p *Provider) principal(ctx context.Context, requester string) (id, lookup string, err error) {
	lookup = p.cfg.Users.Resolve(requester)
	path := "Emails.Value"
	if p.cfg.Attribute == AttributeUserName {
		path = "UserName"
	}
	out, err := p.ids.GetUserId(ctx, &identitystore.GetUserIdInput{
		IdentityStoreId: aws.String(p.cfg.IdentityStoreID),
		AlternateIdentifier: &istypes.AlternateIdentifierMemberUniqueAttribute{Value: istypes.UniqueAttribute{
			AttributePath: aws.String(path), AttributeValue: document.NewLazyDocument(lookup),
		}},
	})
	if awsx.ErrorCode(err) == "ResourceNotFoundException" {
		return "", lookup, errNoUser
	} else if err != nil {
		return "", lookup, fmt.Errorf("find identity store user %s=%s: %w", p.cfg.Attribute, lookup, err)
	}
	return aws.ToString(out.UserId), lookup, nil
}

// assigned reports whether the user has a direct assignment of the permission set
// on the account.
func (p *Provider) assigned(ctx context.Context, principalID string) (bool, error) {
	pages := ssoadmin.NewListAccountAssignmentsPaginator(p.sso, &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountId: aws.String(p.cfg.AccountID),
		PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return false, fmt.Errorf("list assignments on %s: %w", p.cfg.AccountID, err)
		}
		for _, a := range page.AccountAssignments {
			if a.PrincipalType == types.PrincipalTypeUser && aws.ToString(a.PrincipalId) == principalID {
				return true, nil
			}
		}
	}
	return false, nil
}

func (p *Provider) what(lookup string) string {
	return fmt.Sprintf("permission set %s for %s on account %s", p.cfg.PermissionSetARN, lookup, p.cfg.AccountID)
}

// Grant assigns the permission set to the requester on the account and waits
// until Identity Center says it is done. It returns EINVALID when the requester
// has no identity store user; an assignment that fails or does not finish within
// the provisioning timeout is an error the scheduler retries (the unfinished one
// is rolled back first).
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if req.RequestID == "" {
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	}
	principal, lookup, err := p.principal(ctx, req.Requester)
	if errors.Is(err, errNoUser) {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "no Identity Center user with %s %q (for %s) in %s", p.cfg.Attribute, lookup, req.Requester, p.cfg.IdentityStoreID)
	} else if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	defer locks.Lock(principal)()
	handle := func() (ajar.Handle, error) {
		data, err := json.Marshal(handleData{PrincipalID: principal, User: lookup, AccountID: p.cfg.AccountID, PermissionSetARN: p.cfg.PermissionSetARN})
		return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, err
	}
	ok, err := p.assigned(ctx, principal)
	if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	if ok {
		return handle()
	}
	out, err := p.sso.CreateAccountAssignment(ctx, &ssoadmin.CreateAccountAssignmentInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
		PrincipalId: aws.String(principal), PrincipalType: types.PrincipalTypeUser,
		TargetId: aws.String(p.cfg.AccountID), TargetType: types.TargetTypeAwsAccount,
	})
	if err != nil {
		return ajar.Handle{}, fmt.Errorf("grant %s: assign %s: %w", req.RequestID, p.what(lookup), err)
	}
	st := out.AccountAssignmentCreationStatus
	status, reason, err := p.wait(ctx, st.Status, st.FailureReason, func(ctx context.Context) (types.StatusValues, *string, error) {
		o, err := p.sso.DescribeAccountAssignmentCreationStatus(ctx, &ssoadmin.DescribeAccountAssignmentCreationStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentCreationRequestId: st.RequestId,
		})
		if err != nil {
			return "", nil, err
		}
		return o.AccountAssignmentCreationStatus.Status, o.AccountAssignmentCreationStatus.FailureReason, nil
	})
	switch {
	case status == types.StatusValuesSucceeded:
		return handle()
	case status == types.StatusValuesFailed:
		return ajar.Handle{}, fmt.Errorf("assign %s: Identity Center reports FAILED: %s", p.what(lookup), aws.ToString(reason))
	}
	// Not done in time (or we lost track of it): take it back, so that a
	// half-made assignment is not left behind, and let the scheduler retry.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ProvisioningTimeout)
	defer cancel()
	rbErr := p.unassign(rctx, principal, lookup)
	msg := fmt.Sprintf("assign %s: Identity Center did not finish within %s (status %s, request %s)",
		p.what(lookup), p.cfg.ProvisioningTimeout, status, aws.ToString(st.RequestId))
	if err != nil {
		msg += fmt.Sprintf(" (%v)", err)
	}
	if rbErr != nil {
		return ajar.Handle{}, fmt.Errorf("%s; rolling it back failed too: %w", msg, rbErr)
	}
	return ajar.Handle{}, fmt.Errorf("%s; rolled back", msg)
}

// wait polls a creation or deletion status until it is final, the provisioning
// timeout passes or ctx ends; it returns the last status seen.
func (p *Provider) wait(ctx context.Context, status types.StatusValues, reason *string,
	poll func(context.Context) (types.StatusValues, *string, error)) (types.StatusValues, *string, error) {
	deadline := time.Now().Add(p.cfg.ProvisioningTimeout)
	if d, ok := ctx.Deadline(); ok && d.Add(-time.Second).Before(deadline) {
		deadline = d.Add(-time.Second) // leave a moment to roll back
	}
	every := p.pollEvery
	for status == types.StatusValuesInProgress || status == "" {
		if time.Until(deadline) <= 0 {
			return status, reason, nil
		}
		select {
		case <-ctx.Done():
			return status, reason, ctx.Err()
		case <-time.After(min(every, time.Until(deadline))):
		}
		every = min(every*2, 2*time.Second)
		s, r, err := poll(ctx)
		if err != nil {
			return status, reason, err
		}
		status, reason = s, r
	}
	return status, reason, nil
}

// unassign deletes the user's assignment if it exists and waits until it is gone.
func (p *Provider) unassign(ctx context.Context, principal, lookup string) error {
	ok, err := p.assigned(ctx, principal)
	if err != nil || !ok {
		return err
	}
	out, err := p.sso.DeleteAccountAssignment(ctx, &ssoadmin.DeleteAccountAssignmentInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), PermissionSetArn: aws.String(p.cfg.PermissionSetARN),
		PrincipalId: aws.String(principal), PrincipalType: types.PrincipalTypeUser,
		TargetId: aws.String(p.cfg.AccountID), TargetType: types.TargetTypeAwsAccount,
	})
	if awsx.ErrorCode(err) == "ResourceNotFoundException" {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove %s: %w", p.what(lookup), err)
	}
	st := out.AccountAssignmentDeletionStatus
	status, reason, err := p.wait(ctx, st.Status, st.FailureReason, func(ctx context.Context) (types.StatusValues, *string, error) {
		o, err := p.sso.DescribeAccountAssignmentDeletionStatus(ctx, &ssoadmin.DescribeAccountAssignmentDeletionStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentDeletionRequestId: st.RequestId,
		})
		if err != nil {
			return "", nil, err
		}
		return o.AccountAssignmentDeletionStatus.Status, o.AccountAssignmentDeletionStatus.FailureReason, nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("remove %s: %w", p.what(lookup), err)
	case status == types.StatusValuesSucceeded:
		return nil
	case status == types.StatusValuesFailed:
		return fmt.Errorf("remove %s: Identity Center reports FAILED: %s", p.what(lookup), aws.ToString(reason))
	}
	return fmt.Errorf("remove %s: Identity Center did not finish within %s (status %s, request %s)", p.what(lookup), p.cfg.ProvisioningTimeout, status, aws.ToString(st.RequestId))
}

func (p *Provider) check(h ajar.Handle) error {
	if h.Provider != Name || h.Version != HandleVersion {
		return ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	return nil
}

// principalOf returns the user of a grant: from the handle, or for an intent by
// looking the requester up again. found is false when there is no such user (so
// nothing can be assigned to it).
func (p *Provider) principalOf(ctx context.Context, h ajar.Handle) (id, lookup string, found bool, err error) {
	var d handleData
	if len(h.Data) > 0 && json.Unmarshal(h.Data, &d) == nil && d.PrincipalID != "" {
		return d.PrincipalID, d.User, true, nil
	}
	id, lookup, err = p.principal(ctx, h.Grant.Requester)
	if errors.Is(err, errNoUser) {
		return "", lookup, false, nil
	}
	return id, lookup, err == nil, err
}

// Revoke deletes the assignment and waits until Identity Center confirms. The
// broker does not call it while another request of the same user holds the
// assignment (ShareKey). Nothing to delete is success.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	if err := p.check(h); err != nil {
		return err
	}
	principal, lookup, found, err := p.principalOf(ctx, h)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	if !found {
		return nil
	}
	defer locks.Lock(principal)()
	if err := p.unassign(ctx, principal, lookup); err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	return nil
}

// Verify reports whether the user has the assignment right now.
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	if err := p.check(h); err != nil {
		return false, err
	}
	principal, _, found, err := p.principalOf(ctx, h)
	if err != nil || !found {
		return false, err
	}
	return p.assigned(ctx, principal)
}
