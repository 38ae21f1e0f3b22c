package testcounter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider/providertest"
)

func TestNewNeedsTestOnly(t *testing.T) {
	cfg := json.RawMessage(`{"dir": "` + t.TempDir() + `"}`)
	if p, err := New(cfg, false); err == nil || p != nil {
		t.Fatalf("New without testOnly = %v, %v; want an error", p, err)
	}
	for _, bad := range []string{`{}`, `{"dir": "relative"}`, `{"dir": "/x", "revoke_delay": "1h"}`, `{"dir": "/x", "extra": 1}`} {
		if probs := CheckConfig(json.RawMessage(bad)); len(probs) == 0 {
			t.Errorf("CheckConfig(%s): no problems", bad)
		}
	}
}

func TestGrantRevokeCounts(t *testing.T) {
	dir := t.TempDir()
	p, err := New(json.RawMessage(`{"dir": "`+dir+`"}`), true)
	if err != nil {
		t.Fatal(err)
	}
	req := ajar.GrantRequest{RequestID: "req_abc"}
	h, err := p.Grant(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Grant(t.Context(), req); err != nil { // idempotent
		t.Fatal(err)
	}
	if ok, err := p.Verify(t.Context(), h); !ok || err != nil {
		t.Fatalf("Verify after grant = %v, %v", ok, err)
	}
	// Many revokes at once: exactly one moves the marker, the others are no-ops.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if err := p.Revoke(t.Context(), h); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok, err := p.Verify(t.Context(), h); ok || err != nil {
		t.Fatalf("Verify after revoke = %v, %v", ok, err)
	}
	moved, err := os.ReadDir(filepath.Join(dir, "revoked"))
	if err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 {
		t.Fatalf("%d effective revokes, want 1", len(moved))
	}
	if _, err := p.Grant(t.Context(), ajar.GrantRequest{RequestID: "../etc"}); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("Grant with a path in the id: %v, want EINVALID", err)
	}
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	p, err := New(json.RawMessage(`{"dir": "`+dir+`"}`), true)
	if err != nil {
		t.Fatal(err)
	}
	providertest.Run(t, providertest.Subject{
		Provider: p,
		Kind:     Name,
		Request: func(t testing.TB, id string) ajar.GrantRequest {
			return ajar.GrantRequest{RequestID: id, Target: "counted"}
		},
		Count: func(t testing.TB, req ajar.GrantRequest) int {
			if _, err := os.Stat(filepath.Join(dir, "active", req.RequestID)); err == nil {
				return 1
			}
			return 0
		},
	})
}
