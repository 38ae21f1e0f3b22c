package oidctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Browser is a minimal browser for flows that cross ajar, the OP and a CLI's
// loopback listener: it keeps cookies and follows every redirect.
type Browser struct {
	hc *http.Client
}

// NewBrowser returns a Browser with an empty cookie jar.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{hc: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
}

// Get loads rawURL, following redirects, and returns the final URL, status
// and (at most 64 KiB of) body.
func (b *Browser) Get(ctx context.Context, rawURL string) (final *url.URL, status int, body string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, 0, "", err
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.Request.URL, resp.StatusCode, string(data), err
}

// BrowserScript writes an executable to use as $BROWSER: given a URL as its
// only argument, it records it and exits. next waits (up to ctx) for the
// next URL recorded, in order, so a test can then load it with a Browser or
// Chromium.
func BrowserScript(t testing.TB) (path string, next func(ctx context.Context) (string, error)) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "urls")
	path = filepath.Join(dir, "browser")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$1\" >> '%s'\n", log)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	seen := 0
	next = func(ctx context.Context) (string, error) {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			data, err := os.ReadFile(log)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(data) > 0 && len(lines) > seen {
				seen++
				return lines[seen-1], nil
			}
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("oidctest: $BROWSER was not run: %w", ctx.Err())
			case <-tick.C:
			}
		}
	}
	return path, next
}
