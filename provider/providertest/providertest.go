// Package providertest is the conformance suite every provider runs against the
// real system it manages (moto for the AWS providers): grant, verify present, grant
// again without a duplicate, revoke, verify gone, revoke again, revoke an intent,
// and revoke what was never granted without touching anything else
// (docs/architecture.md, invariants 2 and 3).
package providertest

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// Subject is one provider under test and the hooks the suite needs.
type Subject struct {
	// Provider is the provider of one target. It must be an ajar.Verifier.
	Provider ajar.Provider
	// Kind is the provider name the broker writes in handles ("aws-iam-group").
	Kind string
	// Request returns the grant request the broker would send for request id.
	// Different ids must map to different access (another source IP, another
	// user...), so the suite can see that revoking one leaves the others alone.
	// The suite's cases run in parallel, so Request and Count are called
	// concurrently.
	Request func(t testing.TB, id string) ajar.GrantRequest
	// Count, if set, returns how many copies of req's access exist on the target
	// right now, read directly from the target. A correct provider keeps it at 0 or
	// 1; it shows duplicates that Verify cannot.
	Count func(t testing.TB, req ajar.GrantRequest) int
}

// NewRequestID returns a fresh id in the broker's format.
func NewRequestID() string {
	var b [10]byte
	rand.Read(b[:])
	return "req_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Intent returns the handle the broker commits before it calls Grant: the
// outcome is unknown, so Revoke must remove whatever the request may have created.
func Intent(kind string, req ajar.GrantRequest) ajar.Handle {
	return ajar.Handle{Provider: kind, Version: 1, Grant: req}
}

// Run runs the suite.
func Run(t *testing.T, s Subject) {
	v, ok := s.Provider.(ajar.Verifier)
	if !ok {
		t.Fatalf("%s provider is not an ajar.Verifier", s.Kind)
	}
	c := &checker{s: s, v: v}

	t.Run("Lifecycle", func(t *testing.T) {
		t.Parallel()
		req := s.Request(t, NewRequestID())
		h := c.grant(t, req)
		if len(h.Data) == 0 {
			t.Fatalf("Grant returned a handle without Data: a granted handle must say what was created")
		}
		if h.Provider != s.Kind || h.Grant.RequestID != req.RequestID {
			t.Fatalf("handle = %s/%s, want %s/%s", h.Provider, h.Grant.RequestID, s.Kind, req.RequestID)
		}
		c.wantPresent(t, h, true)
		c.wantCount(t, req, 1)

		h2 := c.grant(t, req)
		c.wantPresent(t, h2, true)
		c.wantCount(t, req, 1) // granting twice gives one access

		c.revoke(t, h2)
		c.wantPresent(t, h, false)
		c.wantPresent(t, h2, false)
		c.wantCount(t, req, 0)
		c.revoke(t, h) // already gone: success
		c.revoke(t, h2)
		c.wantPresent(t, h, false)
	})

	t.Run("RevokeIntent", func(t *testing.T) {
		t.Parallel()
		// A crash between Grant and saving its handle leaves only the intent:
		// revoking it must remove what the grant created.
		req := s.Request(t, NewRequestID())
		h := c.grant(t, req)
		c.revoke(t, Intent(s.Kind, req))
		c.wantPresent(t, h, false)
		c.wantCount(t, req, 0)
		c.revoke(t, Intent(s.Kind, req))
	})

	t.Run("RevokeNeverGranted", func(t *testing.T) {
		t.Parallel()
		bystander := s.Request(t, NewRequestID())
		hb := c.grant(t, bystander)

		never := s.Request(t, NewRequestID())
		c.revoke(t, Intent(s.Kind, never))
		c.wantCount(t, never, 0)

		// Nothing else was touched.
		c.wantPresent(t, hb, true)
		c.wantCount(t, bystander, 1)
		c.revoke(t, hb)
		c.wantPresent(t, hb, false)
	})

	t.Run("ConcurrentGrants", func(t *testing.T) {
		t.Parallel()
		// The scheduler and a retry can race on one request: still one access.
		req := s.Request(t, NewRequestID())
		var wg sync.WaitGroup
		hs := make([]ajar.Handle, 3)
		errs := make([]error, 3)
		for i := range hs {
			wg.Go(func() { hs[i], errs[i] = s.Provider.Grant(ctx(t), req) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Grant %d: %v", i, err)
			}
		}
		c.wantCount(t, req, 1)
		c.revoke(t, hs[0])
		for _, h := range hs {
			c.wantPresent(t, h, false)
		}
		c.wantCount(t, req, 0)
	})
}

type checker struct {
	s Subject
	v ajar.Verifier
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func (c *checker) grant(t testing.TB, req ajar.GrantRequest) ajar.Handle {
	t.Helper()
	h, err := c.s.Provider.Grant(ctx(t), req)
	if err != nil {
		t.Fatalf("Grant %s: %v", req.RequestID, err)
	}
	return h
}

func (c *checker) revoke(t testing.TB, h ajar.Handle) {
	t.Helper()
	if err := c.s.Provider.Revoke(ctx(t), h); err != nil {
		t.Fatalf("Revoke %s (data %s): %v", h.Grant.RequestID, h.Data, err)
	}
}

func (c *checker) wantPresent(t testing.TB, h ajar.Handle, want bool) {
	t.Helper()
	got, err := c.v.Verify(ctx(t), h)
	if err != nil {
		t.Fatalf("Verify %s: %v", h.Grant.RequestID, err)
	}
	if got != want {
		t.Fatalf("Verify %s = %v, want %v", h.Grant.RequestID, got, want)
	}
}

func (c *checker) wantCount(t testing.TB, req ajar.GrantRequest, want int) {
	t.Helper()
	if c.s.Count == nil {
		return
	}
	if got := c.s.Count(t, req); got != want {
		t.Fatalf("%d copies of %s's access on the target, want %d", got, req.RequestID, want)
	}
}
