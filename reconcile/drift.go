package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ajar-dev/ajar"
)

// The drift check. The store says which access should exist; a provider that is
// an ajar.Verifier can say which does. Every reconcile.interval the checker asks
// about each active grant and each grant that ended within reconcile.lookback:
//
//   - access missing for an active request (a rule deleted by hand) is granted
//     again and the new handle stored: audited as drift.regranted;
//   - access present for an ended request (a rule re-added by hand) is removed
//     again: audited as drift.revoked.
//
// Both count in ajar_drift_total{target}. A repair that fails is audited as
// drift.repair_failed and tried again at the next check. Access another live
// request shares (ajar.Sharer) is not drift.

// Run runs the drift check every reconcile.interval until ctx ends.
func (s *Checker) Run(ctx context.Context) {
	every := time.Duration(s.pol.Reconcile().Interval)
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Reconcile(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("drift check", "err", err)
		case res.Regranted+res.Revoked+res.Errors > 0:
			s.log.Warn("drift check found drift", "checked", res.Checked, "regranted", res.Regranted, "revoked", res.Revoked, "errors", res.Errors)
		}
	}
}

// Result counts what one drift check did.
type Result struct {
	Checked   int // grants the providers were asked about
	Regranted int // access missing for an active request, granted again
	Revoked   int // access present for an ended request, removed again
	Errors    int // checks or repairs that failed; the next check tries again
}

// driftEndedStates are the final states whose access must be gone.
var driftEndedStates = []ajar.State{ajar.StateExpired, ajar.StateRevoked, ajar.StateGrantFailed}

// Reconcile runs one drift check now (Run does it every reconcile.interval). It
// returns an error only when the store cannot be read; provider failures are
// counted, logged and audited.
func (s *Checker) Reconcile(ctx context.Context) (Result, error) {
	var res Result
	lookback := time.Duration(s.pol.Reconcile().Lookback)
	for _, name := range s.pol.TargetNames() {
		prov, err := s.providers.ForTarget(name)
		if err != nil {
			continue
		}
		if _, ok := prov.(ajar.Verifier); !ok {
			continue
		}
		var active, ended []*ajar.Request
		var now time.Time
		err = s.store.View(ctx, func(tx ajar.ReadTx) error {
			now = tx.Now()
			var err error
			if active, err = tx.ListRequests(ctx, ajar.RequestFilter{Target: name, States: []ajar.State{ajar.StateActive}, Limit: 1 << 20}); err != nil {
				return err
			}
			ended, err = tx.ListRequests(ctx, ajar.RequestFilter{Target: name, States: driftEndedStates, Limit: 1 << 16})
			return err
		})
		if err != nil {
			return res, fmt.Errorf("drift check of %s: %w", name, err)
		}
		// A grant about to expire is the scheduler's: re-granting it could race
		// its revocation.
		margin := 2*s.timeout + time.Second
		for _, r := range active {
			if r.Handle == nil || len(r.Handle.Data) == 0 || r.ExpiresAt == nil || !now.Add(margin).Before(*r.ExpiresAt) {
				continue
			}
			s.checkActive(ctx, r, &res)
		}
		for _, r := range ended {
			if r.Handle == nil || r.EndedAt == nil || r.EndedAt.Before(now.Add(-lookback)) {
				continue
			}
			s.checkEnded(ctx, r, &res)
		}
	}
	return res, nil
}

// verify asks r's provider whether r's access exists.
func (s *Checker) verify(ctx context.Context, r *ajar.Request) (ajar.Provider, bool, error) {
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return nil, false, err
	}
	v, ok := prov.(ajar.Verifier)
	if !ok {
		return prov, false, errNotVerifier
	}
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	present, err := v.Verify(pctx, *r.Handle)
	if err != nil {
		s.core.CountProviderError(r.Handle.Provider, "verify")
	}
	return prov, present, err
}

var errNotVerifier = errors.New("provider cannot verify")

// checkActive re-grants an active request's access if it is missing.
func (s *Checker) checkActive(ctx context.Context, r *ajar.Request, res *Result) {
	prov, present, err := s.verify(ctx, r)
	if errors.Is(err, errNotVerifier) {
		return
	}
	res.Checked++
	if err != nil {
		res.Errors++
		s.log.Warn("drift check: verify", "request", r.ID, "target", r.Target, "err", err)
		return
	}
	if present {
		return
	}
	s.drift.WithLabelValues(r.Target).Inc()
	h, gerr := s.core.ProviderGrant(ctx, prov, *r.Handle) // under the lock of shared access
	if gerr != nil {
		res.Errors++
		s.core.CountProviderError(r.Handle.Provider, "grant")
		s.auditDrift(ctx, r.ID, "drift.repair_failed", map[string]any{
			"target": r.Target, "drift": "access missing for an active request", "repair": "grant", "error": ajar.SafeMessage(gerr),
		})
		return
	}
	res.Regranted++
	var late *ajar.Request
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetRequest(ctx, r.ID)
		if err != nil {
			return err
		}
		details := map[string]any{
			"target": r.Target, "drift": "access missing for an active request", "repair": "granted again", "handle": h.Data,
		}
		switch {
		case cur.State == ajar.StateActive && cur.Version == r.Version:
			cur.Handle = &h
			if err := tx.UpdateRequest(ctx, cur); err != nil {
				return err
			}
		case cur.State == ajar.StateActive:
			// The scheduler holds it (a revocation may be under way): its
			// revocation removes the request's access, whichever handle it has.
		default:
			// It ended meanwhile: take back what the re-grant made.
			late = cur
			details["ended"] = cur.State
		}
		return s.core.AppendAudit(ctx, tx, ajar.ActorSystem, "drift.regranted", r.ID, details)
	})
	if err != nil {
		s.log.Error("drift check: record re-grant", "request", r.ID, "err", err)
	}
	if late != nil {
		late.Handle = &h
		if err := s.core.ProviderRevoke(ctx, prov, late); err != nil {
			s.log.Error("drift check: revoke a re-grant that ended meanwhile", "request", r.ID, "err", err)
		}
	}
}

// checkEnded removes access that is back for a request that ended.
func (s *Checker) checkEnded(ctx context.Context, r *ajar.Request, res *Result) {
	prov, present, err := s.verify(ctx, r)
	if errors.Is(err, errNotVerifier) {
		return
	}
	res.Checked++
	if err != nil {
		res.Errors++
		s.log.Warn("drift check: verify", "request", r.ID, "target", r.Target, "err", err)
		return
	}
	if !present {
		return
	}
	// The holder count and the revoke under the lock of shared access.
	holders, rerr := s.core.RevokeUnlessShared(ctx, prov, r)
	if rerr == nil && len(holders) > 0 {
		return // another live request's access, not drift
	}
	s.drift.WithLabelValues(r.Target).Inc()
	details := map[string]any{"target": r.Target, "drift": "access present after the request ended", "state": r.State, "ended_at": r.EndedAt}
	if rerr != nil {
		res.Errors++
		s.core.CountProviderError(r.Handle.Provider, "revoke")
		details["repair"], details["error"] = "revoke", ajar.SafeMessage(rerr)
		s.auditDrift(ctx, r.ID, "drift.repair_failed", details)
		return
	}
	res.Revoked++
	details["repair"] = "revoked again"
	s.auditDrift(ctx, r.ID, "drift.revoked", details)
}

func (s *Checker) auditDrift(ctx context.Context, id, action string, details map[string]any) {
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		return s.core.AppendAudit(ctx, tx, ajar.ActorSystem, action, id, details)
	})
	if err != nil {
		s.log.Error("drift check: audit", "request", id, "action", action, "err", err)
	}
}
