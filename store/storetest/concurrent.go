package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ajar-dev/ajar"
)

// testConcurrentMixedFailures runs 32 writers at once whose functions end in
// every way a function can, so that a store that shares one transaction among
// concurrent Update calls (group commit) has failures next to successes in the
// same transaction: success; an error after writing; ECONFLICT handled, then
// more writes and success; a context cancelled half way; a panic. Exactly the
// successful ones are stored and in the audit chain, which stays linear.
func testConcurrentMixedFailures(t *testing.T, h *harness) {
	const writers, each = 32, 5
	h.create(t, simpleRequest("dup", "bob", "web", ajar.StatePending, t0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wantOK []string
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("x%02d-%d", w, i)
				kind := (w + i) % 5
				ctx, cancel := context.WithCancel(t.Context())
				write := func(tx ajar.Tx) error {
					if err := tx.CreateRequest(ctx, simpleRequest(id, "alice", "web", ajar.StatePending, t0)); err != nil {
						return err
					}
					_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "request.created", Subject: id})
					return err
				}
				var panicked any
				err := func() (err error) {
					defer func() { panicked = recover() }()
					return h.s.Update(ctx, func(tx ajar.Tx) error {
						switch kind {
						case 1:
							if err := write(tx); err != nil {
								return err
							}
							return errBoom
						case 2:
							err := tx.CreateRequest(ctx, simpleRequest("dup", "alice", "web", ajar.StatePending, t0))
							if ajar.ErrorCode(err) != ajar.ECONFLICT {
								return fmt.Errorf("duplicate CreateRequest: %v, want %s", err, ajar.ECONFLICT)
							}
						case 3:
							if err := write(tx); err != nil {
								return err
							}
							cancel()
							_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "x", Subject: id})
							if err == nil {
								return errors.New("AppendAudit succeeded with a cancelled context")
							}
							return err
						case 4:
							if err := write(tx); err != nil {
								return err
							}
							panic(errBoom)
						}
						return write(tx)
					})
				}()
				cancel()
				switch kind {
				case 0, 2:
					if err != nil || panicked != nil {
						errs <- fmt.Errorf("%s: Update: %v (panic %v)", id, err, panicked)
						continue
					}
					mu.Lock()
					wantOK = append(wantOK, id)
					mu.Unlock()
				case 1:
					if err != errBoom {
						errs <- fmt.Errorf("%s: Update returned %v, want fn's error unchanged", id, err)
					}
				case 3:
					if !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("%s: Update returned %v, want context.Canceled", id, err)
					}
				case 4:
					if panicked != errBoom {
						errs <- fmt.Errorf("%s: recovered %v (Update returned %v), want fn's panic", id, panicked, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(wantOK)
	wantOnlySuccessful(t, h, wantOK, len(wantOK)+1) // and "dup"
}
