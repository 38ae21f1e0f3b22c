package broker

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
)

// Access whose requester lost the right to it (docs/sso.md, "Groups stay
// fresh"). When the identity provider takes someone out of a group, what the
// group gave them stops at once for new requests, approvals and
// administration; grants already made are not touched silently: they are
// listed ("ajar requests --orphaned", package reconcile) and, with
// identity.revoke_on_loss, ended by the system.

// LostAccess says whether the requester of r may no longer have what r gives:
// its rule is gone or no longer covers its target, or the directory no longer
// puts the requester among the rule's requesters (or, for break-glass, among
// those allowed). why says which.
func (s *Service) LostAccess(ctx context.Context, r *ajar.Request) (why string, lost bool, err error) {
	rule, ok := s.pol.Rule(r.Policy)
	if !ok {
		return fmt.Sprintf("policy %q no longer exists", r.Policy), true, nil
	}
	if s.mayHave(r, rule, false) == nil {
		return "", false, nil // still a requester (the common case: no store read)
	}
	var bg bool
	if err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		bg, err = RequestIsBreakglass(ctx, tx, r.ID)
		return err
	}); err != nil {
		return "", false, err
	}
	if err := s.mayHave(r, rule, bg); err != nil {
		return ajar.ErrorMessage(err), true, nil
	}
	return "", false, nil
}

// RevokeLost ends request id as the system because its requester lost the
// right to it (identity.revoke_on_loss); why is audited with request.revoking.
// It checks again, in the transaction, that the request is active and that the
// right is still lost (ECONFLICT otherwise), so a person given the group back
// in the meantime keeps the access.
func (s *Service) RevokeLost(ctx context.Context, id, why string) (*ajar.Request, error) {
	return s.endEarly(ctx, id, ajar.ActorSystem, map[string]any{"reason": "requester_lost_access", "why": why}, func(tx ajar.ReadTx, r *ajar.Request) error {
		if r.State != ajar.StateActive {
			return ajar.Errorf(ajar.ECONFLICT, "request %s is %s, not active", r.ID, r.State)
		}
		rule, ok := s.pol.Rule(r.Policy)
		if !ok {
			return nil
		}
		bg, err := RequestIsBreakglass(ctx, tx, r.ID)
		if err != nil {
			return err
		}
		if s.mayHave(r, rule, bg) == nil {
			return ajar.Errorf(ajar.ECONFLICT, "the requester of %s may have it again", r.ID)
		}
		return nil
	})
}
