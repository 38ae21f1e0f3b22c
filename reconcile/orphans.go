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

// Orphaned grants: the policy file is read at start-up, and a user removed
// from it loses their API tokens at once (Authenticate refuses them), but
// access already granted stays until it ends. ReportOrphans lists such grants
// loudly instead of revoking them: a restart is not the moment for bulk
// revocation driven by a file diff (a bad merge or a typo would cut the
// access of people fixing an incident), the removed user can no longer
// extend, get certificates or credentials, and an admin ends each grant with
// one "ajar revoke". See docs/security.md, "Users removed from the policy".

// orphanStates are the states in which a request holds access or may still
// get it.
var orphanStates = []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateActive}

// orphanScanLimit bounds one state's scan; a server with more open requests
// than this says so in the log.
const orphanScanLimit = 1 << 20

// ReportOrphans finds the open requests (pending, approved or active) whose
// requester is no longer a user of the policy, logs a warning for each (id,
// requester, target, state, expiry and the command to end it) and sets the
// ajar_grants_orphaned gauge, which from then on counts those still open. It
// returns how many it found. Call it once at start-up; it changes nothing.
func (s *Checker) ReportOrphans(ctx context.Context) (int, error) {
	var ids []string
	for _, st := range orphanStates {
		var rs []*ajar.Request
		err := s.store.View(ctx, func(tx ajar.ReadTx) error {
			var err error
			rs, err = tx.ListRequests(ctx, ajar.RequestFilter{States: []ajar.State{st}, Limit: orphanScanLimit})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("find grants of removed users: %w", err)
		}
		if len(rs) >= orphanScanLimit {
			s.log.ErrorContext(ctx, "too many open requests to check them all for removed users", "state", st, "checked", len(rs))
		}
		for _, r := range rs {
			if _, ok := s.core.User(ctx, r.Requester); ok {
				continue
			}
			end := "ajar revoke " + r.ID
			switch r.State {
			case ajar.StatePending:
				end = "ajar deny " + r.ID
			case ajar.StateApproved:
				end = "ajar revoke " + r.ID + " once granted"
			}
			attrs := []any{"request", r.ID, "requester", r.Requester, "target", r.Target, "state", r.State, "end_with", end}
			if r.ExpiresAt != nil {
				attrs = append(attrs, "expires_at", r.ExpiresAt.UTC().Format(time.RFC3339))
			}
			s.log.WarnContext(ctx, "open request of a user no longer in the policy", attrs...)
			ids = append(ids, r.ID)
		}
	}
	if len(ids) > 0 {
		s.log.WarnContext(ctx, "requests of users no longer in the policy keep their access until they end or are revoked",
			"count", len(ids), "metric", "ajar_grants_orphaned")
	}
	s.orphans.set(ids)
	return len(ids), nil
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
		"Open requests (pending, approved or active) whose requester is no longer in the policy, as found at start-up and still open; each is named in the log.",
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
