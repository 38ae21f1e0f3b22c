package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/backoff"
)

// Shared access. Some access on a target is one and the same for several
// requests: an Identity Center account assignment for the same user's requests
// (ajar.Sharer: the target cannot tag it, so the broker counts its holders from
// the store), a security group rule for the same address or an IAM group
// membership of the same user (ajar.SharedAccess: the provider counts its holders
// in tags on the rule or the user). A request's revocation leaves
// such access in place while another live request holds it; the last one to end
// removes it.
//
// Counting the holders and removing the access are separate steps, and so are a
// grant's look at the access and its joining it. With several replicas they would
// interleave: a replica revoking request X finds X the only holder and removes the
// access, while another replica grants request Y onto the same access in between
// (Y's grant saw it there, so it did not create it), and Y is left active without
// access. So every Grant and Revoke of shared access, with its holder count, runs
// under one store lease per access (withShareLock): one replica at a time decides
// about one piece of shared access. See docs/aws/aws-security-group.md.

// liveStates are the states of a request that holds, or is about to hold, its
// access: active, or approved with its grant intent committed (a grant in flight).
// A revoking request is not a holder: it is letting go.
var liveStates = []ajar.State{ajar.StateActive, ajar.StateApproved}

// shareLockName names the store lease of the access h's grant maps to, or is ""
// when that access is never shared.
func shareLockName(prov ajar.Provider, h ajar.Handle) string {
	var key string
	switch p := prov.(type) {
	case ajar.Sharer:
		key = p.ShareKey(h.Grant)
	case ajar.SharedAccess:
		key = p.AccessKey(h.Grant)
	}
	if key == "" {
		return ""
	}
	return "share|" + h.Provider + "|" + key
}

// shareLockTTL is how long a shared-access lease lasts unless released: past
// the work done under it (a holder count and one provider call, bounded by
// ProviderTimeout), so that only a replica that died holding it leaves it to
// expire.
func (s *Service) shareLockTTL() time.Duration { return 2*s.sched.ProviderTimeout + 10*time.Second }

// shareLockMargin is how long before the lease's end the work under it is cut
// off, so that it never runs while another replica may hold the lease.
const shareLockMargin = 5 * time.Second

// errShareBusy means the lease of a shared access stayed with another grant or
// revocation for longer than the caller may wait; the caller retries later.
var errShareBusy = errors.New("another grant or revocation of the same shared access holds its lock; retrying shortly")

// shareLockWait is how long a worker waits for the lease of shared access: what
// its claim on the request leaves after one provider call, so that the claim
// does not run out while it waits (at least 1s).
func (s *Service) shareLockWait() time.Duration {
	return max(s.sched.Lease-s.sched.ProviderTimeout-5*time.Second, time.Second)
}

// shareBusy puts r back to be tried again shortly, without counting a failed
// attempt: its grant or revocation waited for the lock of its shared access,
// which another one held all that time (no state changes, so nothing is audited).
func (s *Service) shareBusy(ctx context.Context, r *ajar.Request) error {
	s.log.Info("shared access busy: trying again shortly", "request", r.ID, "state", r.State)
	return s.write(ctx, r, func(tx ajar.Tx, cur *ajar.Request, now time.Time) error {
		cur.NextAt = ptr(now.Add(s.sched.backoff(1)))
		return nil
	})
}

// withShareLock runs fn while holding the store lease of the access h maps to
// (no lease when it is not shared access). It waits for the lease up to
// shareLockWait (errShareBusy after that) and gives fn a context that ends
// before the lease does. A store error taking the lease is returned; one
// releasing it is logged (the lease then ends at its TTL).
func (s *Service) withShareLock(ctx context.Context, prov ajar.Provider, h ajar.Handle, fn func(context.Context) error) error {
	name := shareLockName(prov, h)
	if name == "" {
		return fn(ctx)
	}
	owner := rand.Text() // this acquisition, not this process: goroutines contend too
	ttl := s.shareLockTTL()
	giveUp := time.Now().Add(s.shareLockWait())
	pause, waited := 10*time.Millisecond, false
	var took time.Time
	for {
		took = time.Now() // the store's Now comes later, so the lease outlasts took+ttl
		var got bool
		err := s.store.Update(ctx, func(tx ajar.Tx) error {
			var err error
			got, err = tx.AcquireLease(ctx, name, owner, tx.Now().Add(ttl))
			return err
		})
		if err != nil {
			return fmt.Errorf("lock the shared access of request %s: %w", h.Grant.RequestID, err)
		}
		if got {
			break
		}
		if !waited {
			waited = true
			s.log.Info("shared access busy: waiting for its lock", "request", h.Grant.RequestID, "provider", h.Provider)
		}
		if time.Now().After(giveUp) {
			return fmt.Errorf("request %s: %w", h.Grant.RequestID, errShareBusy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff.Jitter(pause)):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
	wctx, cancel := context.WithDeadline(ctx, took.Add(ttl-shareLockMargin))
	defer cancel()
	err := fn(wctx)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if rerr := s.store.Update(rctx, func(tx ajar.Tx) error {
		_, err := tx.ReleaseLease(rctx, name, owner)
		return err
	}); rerr != nil {
		s.log.Warn("release the lock of shared access (it ends by itself)", "request", h.Grant.RequestID, "err", rerr)
	}
	return err
}

// ProviderGrant calls prov.Grant for h's grant (bounded by ProviderTimeout)
// under the lock of its access, if shared.
func (s *Service) ProviderGrant(ctx context.Context, prov ajar.Provider, h ajar.Handle) (ajar.Handle, error) {
	var out ajar.Handle
	err := s.withShareLock(ctx, prov, h, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, s.sched.ProviderTimeout)
		defer cancel()
		var err error
		out, err = prov.Grant(pctx, h.Grant)
		return err
	})
	return out, err
}

// sharedHolders returns the ids of the other live requests of r's requester whose
// grants map to the same access as r's, when r's provider is an ajar.Sharer.
// Callers hold the access's lock (withShareLock) until they have acted on it.
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

// RevokeUnlessShared, under the lock of r's access, counts the other live
// requests holding it (ajar.Sharer) and calls prov.Revoke (bounded by
// ProviderTimeout) only when there are none. It returns the holders that keep
// the access.
func (s *Service) RevokeUnlessShared(ctx context.Context, prov ajar.Provider, r *ajar.Request) ([]string, error) {
	var holders []string
	err := s.withShareLock(ctx, prov, *r.Handle, func(ctx context.Context) error {
		var err error
		if holders, err = s.sharedHolders(ctx, prov, r); err != nil || len(holders) > 0 {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, s.sched.ProviderTimeout)
		defer cancel()
		return prov.Revoke(pctx, *r.Handle)
	})
	return holders, err
}

// ProviderRevoke removes r's access (r.Handle must be set), unless other live
// requests hold the same shared access: then the access stays for them, which is
// audited, and r's part in it is over.
func (s *Service) ProviderRevoke(ctx context.Context, prov ajar.Provider, r *ajar.Request) error {
	holders, err := s.RevokeUnlessShared(ctx, prov, r)
	if err != nil || len(holders) == 0 {
		return err
	}
	return s.store.Update(ctx, func(tx ajar.Tx) error {
		return s.audit(ctx, tx, ajar.ActorSystem, "revoke.shared", r.ID, map[string]any{
			"held_by": holders, "note": "the access is shared with these live requests and stays until the last of them ends",
		})
	})
}
