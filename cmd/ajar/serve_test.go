package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestServeDevWithConfigRefused checks that --dev on a real policy file stops
// before anything is written: no tokens, no master key, no database.
func TestServeDevWithConfigRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(cfg, []byte("users: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	runRaw(t, "serve", "--config", cfg, "--dev", "--data", data, "--listen", "127.0.0.1:0").
		want(t, exitUsage, "--unsafe-dev-config", "admins included", "(field: --dev)")
	runRaw(t, "serve", "--config", cfg, "--unsafe-dev-config", "--data", data, "--listen", "127.0.0.1:0").
		want(t, exitUsage, "only goes with both --dev and --config")
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the refused start wrote %s (%v)", data, err)
	}
}

// TestTokenCreateNeedsTheDatabase: "ajar token create" with a --data that
// holds no database refuses instead of creating an empty one and minting a
// token the running server would reject.
func TestTokenCreateNeedsTheDatabase(t *testing.T) {
	data := filepath.Join(t.TempDir(), "nowhere")
	runRaw(t, "token", "create", "--user", "alice@example.com", "--data", data).
		want(t, exitError, "no ajar database at", "(field: --data)")
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the refused token create wrote %s (%v)", data, err)
	}
}
