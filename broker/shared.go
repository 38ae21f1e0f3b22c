package broker

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
)

// Shared access (ajar.Sharer): some targets cannot tag the access ajar creates
// with the requests holding it (an Identity Center account assignment), so the
// broker counts the holders from the store. A request's revocation leaves such
// access in place while another live request of the same requester maps to the
// same access; the last one to end removes it. Providers that can tag (security
// group rules, IAM users) count their holders themselves and need none of this.

// liveStates are the states of a request that holds, or is about to hold, its
// access: active, or approved with its grant intent committed (a grant in flight).
// A revoking request is not a holder: it is letting go.
var liveStates = []ajar.State{ajar.StateActive, ajar.StateApproved}

// sharedHolders returns the ids of the other live requests of r's requester whose
// grants map to the same access as r's, when r's provider is an ajar.Sharer.
func (s *Service) sharedHolders(ctx context.Context, prov ajar.Provider, r *ajar.Request) ([]string, error) {
	sh, ok := prov.(ajar.Sharer)
	if !ok || r.Handle == nil {
		return nil, nil
	}
	key := sh.ShareKey(r.Handle.Grant)
	if key == "" {
		return nil, nil
	}
	var others []*ajar.Request
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		others, err = tx.ListRequests(ctx, ajar.RequestFilter{Requester: r.Requester, States: liveStates, Limit: 10000})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("find other holders of request %s's access: %w", r.ID, err)
	}
	var ids []string
	for _, o := range others {
		if o.ID == r.ID || o.Handle == nil || o.Handle.Provider != r.Handle.Provider {
			continue
		}
		p, err := s.providers.ForHandle(*o.Handle)
		if err != nil {
			return nil, err
		}
		if osh, ok := p.(ajar.Sharer); ok && osh.ShareKey(o.Handle.Grant) == key {
			ids = append(ids, o.ID)
		}
	}
	return ids, nil
}

// providerRevoke calls prov.Revoke for r's handle, unless other live requests
// hold the same shared access: then the access stays for them, which is audited,
// and r's part in it is over.
func (s *Service) providerRevoke(ctx context.Context, prov ajar.Provider, r *ajar.Request) error {
	holders, err := s.sharedHolders(ctx, prov, r)
	if err != nil {
		return err
	}
	if len(holders) == 0 {
		return prov.Revoke(ctx, *r.Handle)
	}
	return s.store.Update(ctx, func(tx ajar.Tx) error {
		return s.audit(ctx, tx, ajar.ActorSystem, "revoke.shared", r.ID, map[string]any{
			"held_by": holders, "note": "the access is shared with these live requests and stays until the last of them ends",
		})
	})
}
