package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
)

// Orphaned grants: open requests whose requester may no longer have them:
// removed from the policy file, or taken out at the identity provider of the
// group that let them request (docs/sso.md, "Groups stay fresh"). Such access
// is never ended silently. ReportOrphans lists it loudly at start-up; Orphans
// lists it for admins ("ajar requests --orphaned"); with identity.revoke_on_loss
// RunOrphans ends active ones as the system, audited. Without revoke_on_loss a
// restart is not the moment for bulk revocation driven by a file diff (a bad
// merge or a typo would cut the access of people fixing an incident): the
// requester can no longer extend, get certificates or credentials, and an
// admin ends each grant with one "ajar revoke". See docs/security.md, "Users
// removed from the policy".

// orphanStates are the states in which a request holds access or may still
// get it.
var orphanStates = []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateActive}

// orphanScanLimit bounds one state's scan; a server with more open requests
// than this says so in the log.
const orphanScanLimit = 1 << 20

// Orphan is an open request whose requester lost the right to it, and why.
type Orphan struct {
	Request *ajar.Request `json:"request"`
	Why     string        `json:"why"`
}

// Orphans returns the open requests (pending, approved or active) whose
// requester may no longer have them, by the policy and the directory now.
func (s *Checker) Orphans(ctx context.Context) ([]Orphan, error) {
	var out []Orphan
	for _, st := range orphanStates {
		var rs []*ajar.Request
		err := s.store.View(ctx, func(tx ajar.ReadTx) error {
			var err error
			rs, err = tx.ListRequests(ctx, ajar.RequestFilter{States: []ajar.State{st}, Limit: orphanScanLimit})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("find orphaned grants: %w", err)
		}
		if len(rs) >= orphanScanLimit {
			s.log.ErrorContext(ctx, "too many open requests to check them all for requesters who lost access", "state", st, "checked", len(rs))
		}
		for _, r := range rs {
			why, lost, err := s.core.LostAccess(ctx, r)
			if err != nil {
				return nil, fmt.Errorf("find orphaned grants: %w", err)
			}
			if lost {
				out = append(out, Orphan{Request: r, Why: why})
			}
		}
	}
	return out, nil
}

// ListOrphans is Orphans for an admin (EFORBIDDEN for anyone else).
func (s *Checker) ListOrphans(ctx context.Context, u ajar.User) ([]Orphan, error) {
	if !s.pol.IsAdmin(u) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can list orphaned grants")
	}
	out, err := s.Orphans(ctx)
	if out == nil {
		out = []Orphan{}
	}
	return out, err
}

// ReportOrphans finds the orphaned requests, logs a warning for each (id,
// requester, target, state, expiry, why and the command to end it) and sets
// the ajar_grants_orphaned gauge, which from then on counts those still open.
// It returns how many it found. It changes nothing.
func (s *Checker) ReportOrphans(ctx context.Context) (int, error) {
	orphans, err := s.Orphans(ctx)
	if err != nil {
		return 0, err
	}
	ids := make([]string, 0, len(orphans))
	for _, o := range orphans {
		r := o.Request
		end := "ajar revoke " + r.ID
		switch r.State {
		case ajar.StatePending:
			end = "ajar deny " + r.ID
		case ajar.StateApproved:
			end = "ajar revoke " + r.ID + " once granted"
		}
		attrs := []any{"request", r.ID, "requester", r.Requester, "target", r.Target, "state", r.State, "why", o.Why, "end_with", end}
		if r.ExpiresAt != nil {
			attrs = append(attrs, "expires_at", r.ExpiresAt.UTC().Format(time.RFC3339))
		}
		s.log.WarnContext(ctx, "open request of a requester who may no longer have it", attrs...)
		ids = append(ids, r.ID)
	}
	if len(ids) > 0 {
		s.log.WarnContext(ctx, "requests of requesters who lost the right keep their access until they end or are revoked",
			"count", len(ids), "metric", "ajar_grants_orphaned", "list", "ajar requests --orphaned")
	}
	s.orphans.set(ids)
	return len(ids), nil
}

// EndOrphans ends the active orphaned grants as the system (identity.
// revoke_on_loss), each audited with why. It returns how many it ended.
func (s *Checker) EndOrphans(ctx context.Context) (int, error) {
	orphans, err := s.Orphans(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range orphans {
		if o.Request.State != ajar.StateActive {
			continue
		}
		if _, err := s.core.RevokeLost(ctx, o.Request.ID, o.Why); err != nil {
			if ajar.ErrorCode(err) == ajar.ECONFLICT {
				continue // ended meanwhile, or the right came back
			}
			return n, fmt.Errorf("end orphaned grant %s: %w", o.Request.ID, err)
		}
		s.log.InfoContext(ctx, "orphaned grant ended (identity.revoke_on_loss)", "request", o.Request.ID, "requester", o.Request.Requester, "why", o.Why)
		n++
	}
	return n, nil
}

// RunOrphans looks for orphaned grants every interval until ctx ends: first
// refresh (the identity layer re-reading idle sessions' groups at the IdP),
// then it updates the gauge and, with revokeOnLoss, ends the active ones.
func (s *Checker) RunOrphans(ctx context.Context, interval time.Duration, revokeOnLoss bool, refresh func(context.Context) (int, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if refresh != nil {
			if _, err := refresh(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "re-read groups of idle sessions", "err", err)
			}
		}
		if revokeOnLoss {
			if _, err := s.EndOrphans(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "end orphaned grants", "err", err)
			}
		}
		orphans, err := s.Orphans(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "find orphaned grants", "err", err)
			}
			continue
		}
		ids := make([]string, 0, len(orphans))
		for _, o := range orphans {
			ids = append(ids, o.Request.ID)
		}
		s.orphans.set(ids)
	}
}

// orphanCollector is the ajar_grants_orphaned gauge: of the requests
// ReportOrphans found, those still open, read from the store at scrape time.
type orphanCollector struct {
	store ajar.Store
	desc  *prometheus.Desc
	mu    sync.Mutex
	ids   []string
}

func newOrphanCollector(st ajar.Store) *orphanCollector {
	return &orphanCollector{store: st, desc: prometheus.NewDesc("ajar_grants_orphaned",
		"Open requests (pending, approved or active) whose requester may no longer have them (removed from the policy, or out of the group at the identity provider), as last found and still open; ajar requests --orphaned lists them.",
		nil, nil)}
}

func (c *orphanCollector) set(ids []string) {
	c.mu.Lock()
	c.ids = slices.Clone(ids)
	c.mu.Unlock()
}

func (c *orphanCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *orphanCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	ids := c.ids
	c.mu.Unlock()
	n := 0
	if len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := c.store.View(ctx, func(tx ajar.ReadTx) error {
			for _, id := range ids {
				r, err := tx.GetRequest(ctx, id)
				if err != nil {
					return err
				}
				if slices.Contains(orphanStates, r.State) {
					n++
				}
			}
			return nil
		})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
