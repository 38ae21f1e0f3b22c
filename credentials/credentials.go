// Package credentials vends short-lived cloud credentials for active
// requests on targets whose provider is an ajar.CredentialIssuer (aws-sts).
// It sits above the core: who may see a request is the broker's GetRequest,
// and the issue is audited through the broker's audit append before the
// credentials are shown (see docs/architecture.md).
package credentials

import (
	"context"
	"fmt"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
)

// Service issues credentials. Its methods are safe for concurrent use.
type Service struct {
	core      *broker.Service
	store     ajar.Store
	providers broker.Providers
	now       func() time.Time
}

// New returns a Service over the core and the store, providers and clock it
// was built with (cmd/ajar wires the same ones).
func New(core *broker.Service, st ajar.Store, provs broker.Providers, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{core: core, store: st, providers: provs, now: now}
}

// Output is short-lived cloud credentials for an active request
// (ajar.CredentialIssuer), shown to the requester once. ajar keeps no copy.
type Output struct {
	RequestID string `json:"request_id"`
	Target    string `json:"target"`
	ajar.Credentials
}

// IssueCredentials returns new short-lived credentials for u's own active request
// on a target that vends them (aws-sts). They are returned once and never stored;
// the audit log records only who got which access key id, and until when. It
// returns EFORBIDDEN for someone else's request, ECONFLICT when the request is not
// active, and EINVALID when its target does not vend credentials.
func (s *Service) IssueCredentials(ctx context.Context, u ajar.User, id string) (*Output, error) {
	r, prov, now, err := s.activeGrant(ctx, u, id, "credentials")
	if err != nil {
		return nil, err
	}
	issuer, ok := prov.(ajar.CredentialIssuer)
	if !ok {
		return nil, ajar.Errorf(ajar.EINVALID, "target %s does not vend credentials", r.Target)
	}
	pctx, cancel := context.WithTimeout(ctx, s.core.ProviderTimeout())
	creds, err := issuer.IssueCredentials(pctx, *r.Handle, now)
	cancel()
	if err != nil {
		return nil, s.providerError(r, "credentials", fmt.Errorf("credentials for request %s: %w", r.ID, err), err)
	}
	// Audit before handing them out: credentials nobody can account for are
	// never shown. If the request ended meanwhile, they are dropped (the
	// provider's revocation covers them).
	if err := s.auditIfActive(ctx, u, id, "credentials.issued", map[string]any{
		"access_key_id": creds.AccessKeyID, "expiration": creds.Expiration,
	}); err != nil {
		return nil, err
	}
	return &Output{RequestID: r.ID, Target: r.Target, Credentials: creds}, nil
}

// DBLoginOutput is a database login for an active request (ajar.LoginIssuer),
// shown to the requester once. ajar keeps no copy of the password.
type DBLoginOutput struct {
	RequestID string `json:"request_id"`
	Target    string `json:"target"`
	ajar.DBLogin
}

// IssueDBLogin sets a fresh password on the database login of u's own active
// request and returns it once; it is never stored, and the audit log records
// only who got which login, until when. Errors are IssueCredentials': EFORBIDDEN,
// ECONFLICT, and EINVALID when the target gives no database logins.
func (s *Service) IssueDBLogin(ctx context.Context, u ajar.User, id string) (*DBLoginOutput, error) {
	r, prov, now, err := s.activeGrant(ctx, u, id, "a login")
	if err != nil {
		return nil, err
	}
	issuer, ok := prov.(ajar.LoginIssuer)
	if !ok {
		return nil, ajar.Errorf(ajar.EINVALID, "target %s does not give database logins", r.Target)
	}
	pctx, cancel := context.WithTimeout(ctx, s.core.ProviderTimeout())
	login, err := issuer.IssueLogin(pctx, *r.Handle, now)
	cancel()
	if err != nil {
		return nil, s.providerError(r, "db_login", fmt.Errorf("database login for request %s: %w", r.ID, err), err)
	}
	// As for credentials: audited before it is shown. If the request ended
	// meanwhile the password is dropped (the revocation drops the login).
	if err := s.auditIfActive(ctx, u, id, "db_credentials.issued", map[string]any{
		"user": login.User, "database": login.Database, "expires_at": login.ExpiresAt,
	}); err != nil {
		return nil, err
	}
	return &DBLoginOutput{RequestID: r.ID, Target: r.Target, DBLogin: login}, nil
}

// activeGrant returns u's own active, unexpired request id with the provider
// that can act on its grant, and the time; what names what is asked for, in
// errors (EFORBIDDEN for someone else's request, ECONFLICT when not active).
func (s *Service) activeGrant(ctx context.Context, u ajar.User, id, what string) (*ajar.Request, ajar.Provider, time.Time, error) {
	r, err := s.core.GetRequest(ctx, u, id)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	if !ajar.SameUser(r.Requester, u.ID) {
		return nil, nil, time.Time{}, ajar.Errorf(ajar.EFORBIDDEN, "only the requester can get %s for request %s", what, r.ID)
	}
	if r.State != ajar.StateActive || r.Handle == nil || r.ExpiresAt == nil {
		return nil, nil, time.Time{}, ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", r.ID, r.State)
	}
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	now := s.now()
	if !now.Before(*r.ExpiresAt) {
		return nil, nil, time.Time{}, ajar.Errorf(ajar.ECONFLICT, "request %s has expired", r.ID)
	}
	return r, prov, now, nil
}

// providerError counts a provider's internal failure and returns wrapped.
func (s *Service) providerError(r *ajar.Request, op string, wrapped, err error) error {
	if ajar.ErrorCode(err) == ajar.EINTERNAL {
		s.core.CountProviderError(r.Handle.Provider, op)
	}
	return wrapped
}

// auditIfActive records action on request id in the transaction that checks
// it is still active (ECONFLICT otherwise).
func (s *Service) auditIfActive(ctx context.Context, u ajar.User, id, action string, details map[string]any) error {
	return s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		if cur.State != ajar.StateActive {
			return ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", id, cur.State)
		}
		return s.core.AppendAudit(ctx, tx, u.ID, action, id, details)
	})
}
