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
	r, err := s.core.GetRequest(ctx, u, id)
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
	pctx, cancel := context.WithTimeout(ctx, s.core.ProviderTimeout())
	creds, err := issuer.IssueCredentials(pctx, *r.Handle, now)
	cancel()
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EINTERNAL {
			s.core.CountProviderError(r.Handle.Provider, "credentials")
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
		return s.core.AppendAudit(ctx, tx, u.ID, "credentials.issued", id, map[string]any{
			"access_key_id": creds.AccessKeyID, "expiration": creds.Expiration,
		})
	})
	if err != nil {
		return nil, err
	}
	return &Output{RequestID: r.ID, Target: r.Target, Credentials: creds}, nil
}
