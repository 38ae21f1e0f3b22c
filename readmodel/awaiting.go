package readmodel

import (
	"context"
	"fmt"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/broker"
)

// Awaiting counts what waits for u's decision: the pending requests, and the
// pending extensions of active ones, that u may approve or deny now and did not
// make (the inbox's entries less u's own). The pages show it in the navigation
// on every page, so it is cheap: without a store read for a user who approves
// no step of any policy rule, else in one read transaction that lists the
// open requests once and the pending extensions once (an index read), then
// checks break-glass only of the active requests with one whose rule u
// approves. Errors are the store's.
func (s *Reader) Awaiting(ctx context.Context, u ajar.User) (int, error) {
	rules := map[string]bool{} // the rules u approves some step of
	for _, rule := range s.pol.Rules() {
		for i := range rule.Approval.Steps {
			if rule.CanApprove(i, u) {
				rules[rule.Name] = true
				break
			}
		}
	}
	if len(rules) == 0 {
		return 0, nil
	}
	n, now := 0, s.now()
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var rs []*ajar.Request
		err := eachRequest(ctx, tx, ajar.RequestFilter{States: []ajar.State{ajar.StatePending, ajar.StateActive}}, func(r *ajar.Request) {
			if rules[r.Policy] && !ajar.SameUser(r.Requester, u.ID) {
				rs = append(rs, r)
			}
		})
		if err != nil {
			return err
		}
		var pending map[string]*ajar.Extension
		for _, r := range rs {
			var ext *ajar.Extension
			bg := false
			if r.State == ajar.StateActive {
				if pending == nil {
					if pending, err = pendingExtensions(ctx, tx); err != nil {
						return err
					}
				}
				if ext = pending[r.ID]; ext == nil {
					continue
				}
				if bg, err = broker.RequestIsBreakglass(ctx, tx, r.ID); err != nil {
					return err
				}
			}
			if rv, _ := s.review(u, r, ext, bg, now); !rv.Own && (rv.CanApprove || rv.CanDeny) {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("awaiting: %w", err)
	}
	return n, nil
}
