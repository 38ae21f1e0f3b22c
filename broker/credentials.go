package broker

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
)

// CredentialsOutput is short-lived cloud credentials for an active request
// (ajar.CredentialIssuer), shown to the requester once. ajar keeps no copy.
type CredentialsOutput struct {
	RequestID string `json:"request_id"`
	Target    string `json:"target"`
	ajar.Credentials
}

// IssueCredentials returns new short-lived credentials for u's own active request
// on a target that vends them (aws-sts). They are returned once and never stored;
// the audit log records only who got which access key id, and until when. It
// returns EFORBIDDEN for someone else's request, ECONFLICT when the request is not
// active, and EINVALID when its target does not vend credentials.
func (s *Service) IssueCredentials(ctx context.Context, u ajar.User, id string) (*CredentialsOutput, error) {
	r, err := s.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	if !ajar.SameUser(r.Requester, u.ID) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only the requester can get credentials for request %s", r.ID)
	}
	if r.State != ajar.StateActive || r.Handle == nil || r.ExpiresAt == nil {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", r.ID, r.State)
	}
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return nil, err
	}
	issuer, ok := prov.(ajar.CredentialIssuer)
	if !ok {
		return nil, ajar.Errorf(ajar.EINVALID, "target %s does not vend credentials", r.Target)
	}
	now := s.now()
	if !now.Before(*r.ExpiresAt) {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s has expired", r.ID)
	}
	pctx, cancel := context.WithTimeout(ctx, s.sched.ProviderTimeout)
	creds, err := issuer.IssueCredentials(pctx, *r.Handle, now)
	cancel()
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EINTERNAL {
			s.metrics.providerErrors.WithLabelValues(r.Handle.Provider, "credentials").Inc()
		}
		return nil, fmt.Errorf("credentials for request %s: %w", r.ID, err)
	}
	// Audit before handing them out: credentials nobody can account for are
	// never shown. If the request ended meanwhile, they are dropped (the
	// provider's revocation covers them).
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		if cur.State != ajar.StateActive {
			return ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", id, cur.State)
		}
		return s.audit(ctx, tx, u.ID, "credentials.issued", id, map[string]any{
			"access_key_id": creds.AccessKeyID, "expiration": creds.Expiration,
		})
	})
	if err != nil {
		return nil, err
	}
	return &CredentialsOutput{RequestID: r.ID, Target: r.Target, Credentials: creds}, nil
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
	r, err := s.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	if !ajar.SameUser(r.Requester, u.ID) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only the requester can get a login for request %s", r.ID)
	}
	if r.State != ajar.StateActive || r.Handle == nil || r.ExpiresAt == nil {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", r.ID, r.State)
	}
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return nil, err
	}
	issuer, ok := prov.(ajar.LoginIssuer)
	if !ok {
		return nil, ajar.Errorf(ajar.EINVALID, "target %s does not give database logins", r.Target)
	}
	now := s.now()
	if !now.Before(*r.ExpiresAt) {
		return nil, ajar.Errorf(ajar.ECONFLICT, "request %s has expired", r.ID)
	}
	pctx, cancel := context.WithTimeout(ctx, s.sched.ProviderTimeout)
	login, err := issuer.IssueLogin(pctx, *r.Handle, now)
	cancel()
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EINTERNAL {
			s.metrics.providerErrors.WithLabelValues(r.Handle.Provider, "db_login").Inc()
		}
		return nil, fmt.Errorf("database login for request %s: %w", r.ID, err)
	}
	// As for credentials: audited before it is shown. If the request ended
	// meanwhile the password is dropped (the revocation drops the login).
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		if cur.State != ajar.StateActive {
			return ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", id, cur.State)
		}
		return s.audit(ctx, tx, u.ID, "db_credentials.issued", id, map[string]any{
			"user": login.User, "database": login.Database, "expires_at": login.ExpiresAt,
		})
	})
	if err != nil {
		return nil, err
	}
	return &DBLoginOutput{RequestID: r.ID, Target: r.Target, DBLogin: login}, nil
}
