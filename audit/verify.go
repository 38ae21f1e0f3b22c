package audit

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/ajar-dev/ajar"
)

// Result is what a successful Verify saw: the number of events in the log and the
// hash of the last one (nil for an empty log).
type Result struct {
	Events int64
	Head   []byte
}

// BadEventError reports the first event at which the chain breaks: it was
// edited, deleted, moved or repeated. Seq names the event (for a deleted one,
// the missing number); Reason says what is wrong and what likely happened.
type BadEventError struct {
	Seq    int64
	Reason string
}

func (e *BadEventError) Error() string { return fmt.Sprintf("event %d: %s", e.Seq, e.Reason) }

// TruncatedError reports a log that holds fewer events than a checkpoint covers:
// events were removed from its end.
type TruncatedError struct {
	Checkpoint int64 // the checkpoint's size
	Events     int64 // the events in the log
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("log truncated: checkpoint covers %d events, log has %d", e.Checkpoint, e.Events)
}

// RewrittenError reports a log whose event Seq, the last one a checkpoint covers,
// does not have the checkpoint's hash, although the chain up to it is intact:
// the history was rewritten and rehashed after the checkpoint was signed.
type RewrittenError struct {
	Seq int64
}

func (e *RewrittenError) Error() string {
	return fmt.Sprintf("checkpoint mismatch at event %d: history rewritten", e.Seq)
}

// Verify reads a whole log from next, a page at a time in Seq order until next
// returns an empty page, and checks that it is one unbroken chain: Seq runs from
// 1 without gaps, each event's PrevHash is the previous event's Hash (nil for
// the first), and each Hash is what ComputeHash gives. Each checkpoint must be
// covered by the log and match it. It stops at the first problem and returns a
// *BadEventError, *TruncatedError or *RewrittenError, or next's error wrapped.
// It keeps no event past its page, so memory does not grow with the log.
//
// Verify trusts nothing in the events; what it cannot see is a log cut or
// rewritten after its last checkpoint, so keep checkpoints recent.
func Verify(ctx context.Context, next func(context.Context) ([]ajar.AuditEvent, error), cps ...*Checkpoint) (Result, error) {
	c := newChain(cps)
	for {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("verify audit log: %w", err)
		}
		page, err := next(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("verify audit log: read events after %d: %w", c.n, err)
		}
		if len(page) == 0 {
			return c.finish()
		}
		for i := range page {
			if err := c.add(&page[i]); err != nil {
				return Result{}, err
			}
		}
	}
}

// StorePages returns a next function for Verify that reads st's audit log in
// pages of pageSize events (0 for the store's default), each page in its own
// read transaction so a long verification never holds one open.
func StorePages(st ajar.Store, pageSize int) func(context.Context) ([]ajar.AuditEvent, error) {
	var after int64
	return func(ctx context.Context) ([]ajar.AuditEvent, error) {
		var page []ajar.AuditEvent
		err := st.View(ctx, func(tx ajar.ReadTx) (err error) {
			page, err = tx.ListAudit(ctx, ajar.AuditFilter{AfterSeq: after, Limit: pageSize})
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(page) > 0 {
			after = page[len(page)-1].Seq
		}
		return page, nil
	}
}

// chain is Verify's state: the events seen so far and the last one's hash.
type chain struct {
	n    int64
	head []byte
	cps  []*Checkpoint // by Size; cps[0] is the next one to reach
}

func newChain(cps []*Checkpoint) *chain {
	cps = slices.DeleteFunc(slices.Clone(cps), func(cp *Checkpoint) bool { return cp == nil })
	slices.SortFunc(cps, func(a, b *Checkpoint) int { return cmp.Compare(a.Size, b.Size) })
	return &chain{cps: cps, head: make([]byte, 0, 32)}
}

// add checks that ev extends the chain and makes it the new head.
func (c *chain) add(ev *ajar.AuditEvent) error {
	if err := c.checkSeq(ev.Seq); err != nil {
		return err
	}
	return c.link(ev.Seq, ev.PrevHash, ev.Hash, bytes.Equal(ev.Hash, ev.ComputeHash()))
}

// checkSeq checks that seq is the next event's.
func (c *chain) checkSeq(seq int64) error {
	want := c.n + 1
	switch {
	case seq > want:
		return &BadEventError{Seq: want, Reason: fmt.Sprintf("missing (deleted?) — found %d", seq)}
	case seq < want:
		return &BadEventError{Seq: seq, Reason: fmt.Sprintf("out of order or repeated: found after event %d", c.n)}
	}
	return nil
}

// link makes the event seq (checked by checkSeq) the new head: hashOK says
// whether its hash is what its fields hash to, and prev must be the head's
// hash. hash is copied.
func (c *chain) link(seq int64, prev, hash []byte, hashOK bool) error {
	prevOK := bytes.Equal(prev, c.head) // c.head is empty before the first event
	switch {
	case !hashOK && !prevOK && c.n == 0:
		return &BadEventError{Seq: seq, Reason: "hash mismatch and a prev_hash although it is the first event (moved or replaced?)"}
	case !hashOK && !prevOK:
		return &BadEventError{Seq: seq, Reason: fmt.Sprintf("hash mismatch and prev_hash does not match event %d (reordered or replaced?)", c.n)}
	case !hashOK:
		return &BadEventError{Seq: seq, Reason: "hash mismatch (edited?)"}
	case !prevOK && c.n == 0:
		return &BadEventError{Seq: seq, Reason: "has a prev_hash although it is the first event (events before it deleted and the rest rehashed?)"}
	case !prevOK:
		return &BadEventError{Seq: seq, Reason: fmt.Sprintf("prev_hash does not match event %d (reordered, or event %d edited and rehashed?)", c.n, c.n)}
	}

	c.n = seq
	c.head = append(c.head[:0], hash...)
	for len(c.cps) > 0 && c.cps[0].Size == c.n {
		if !bytes.Equal(c.cps[0].Head, c.head) {
			return &RewrittenError{Seq: c.n}
		}
		c.cps = c.cps[1:]
	}
	return nil
}

// finish checks the checkpoints the log did not reach.
func (c *chain) finish() (Result, error) {
	if len(c.cps) > 0 {
		return Result{}, &TruncatedError{Checkpoint: c.cps[len(c.cps)-1].Size, Events: c.n}
	}
	r := Result{Events: c.n}
	if c.n > 0 {
		r.Head = bytes.Clone(c.head)
	}
	return r, nil
}
