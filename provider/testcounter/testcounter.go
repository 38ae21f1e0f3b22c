// Package testcounter is the testonly-counter provider: it exists so that ajar's
// own multi-replica tests can count what providers saw from outside the processes
// that called them, including processes killed with SIGKILL. It grants nothing on
// any real system.
//
// A grant is a marker file, DIR/active/REQUEST_ID, created with O_EXCL. Revoke
// renames it to DIR/revoked/REQUEST_ID@UNIXNANO@PID: rename is atomic, so of any
// number of concurrent Revoke calls for one grant, from any number of processes,
// exactly one moves the marker (an effective revoke) and the others find it gone
// (a no-op, which is success, as every provider's Revoke must be idempotent). The
// files themselves are the count, so it survives the death of the process that
// made them. Every call is also appended to DIR/calls.log for diagnosis.
//
// Why this is safe to ship: New refuses to build the provider unless
// Deps.TestOnly is set, which ajar serve does only in dev mode with
// AJAR_TESTONLY_PROVIDERS=1 in its environment; a production policy naming it does
// not start. Even when enabled it only creates, renames and appends to files under
// the directory the operator configured, named by server-made request ids that it
// checks again (no path from a requester).
package testcounter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/ajar-dev/ajar"
)

// Name is the provider type in the policy file. Loud on purpose.
const Name = "testonly-counter"

// Config is a testonly-counter target's config: {"dir": "/abs/path"}.
type Config struct {
	// Dir is an absolute directory; active/ and revoked/ are created in it.
	Dir string `json:"dir"`
	// RevokeDelay (a Go duration, at most 10s) makes Revoke wait before it acts,
	// as a slow real system would, so tests can catch a process mid-call.
	RevokeDelay string `json:"revoke_delay,omitempty"`
}

// idRE is what request ids look like; anything else never reaches a path.
var idRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// CheckConfig returns every problem with a testonly-counter target config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decode(raw)
	return probs
}

func decode(raw json.RawMessage) (Config, ajar.Problems) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, ajar.Problems{{Message: fmt.Sprintf("invalid %s config: %v", Name, err)}}
	}
	var probs ajar.Problems
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		probs = append(probs, ajar.Problem{Field: "dir", Message: "must be an absolute directory path"})
	}
	if c.RevokeDelay != "" {
		if d, err := time.ParseDuration(c.RevokeDelay); err != nil || d < 0 || d > 10*time.Second {
			probs = append(probs, ajar.Problem{Field: "revoke_delay", Message: "must be a duration from 0s to 10s"})
		}
	}
	return c, probs
}

// Provider is the testonly-counter provider of one target.
type Provider struct {
	dir         string
	revokeDelay time.Duration
}

var (
	_ ajar.Provider = (*Provider)(nil)
	_ ajar.Verifier = (*Provider)(nil)
)

// New builds the provider. It fails unless testOnly is set (see the package
// comment) or the config has problems.
func New(config json.RawMessage, testOnly bool) (*Provider, error) {
	if !testOnly {
		return nil, fmt.Errorf("provider %s exists only for ajar's own tests: it runs only in dev mode with AJAR_TESTONLY_PROVIDERS=1", Name)
	}
	c, probs := decode(config)
	if len(probs) > 0 {
		return nil, probs
	}
	for _, d := range []string{"active", "revoked"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
	}
	delay, _ := time.ParseDuration(c.RevokeDelay) // checked by decode; "" is 0
	return &Provider{dir: c.Dir, revokeDelay: delay}, nil
}

func (p *Provider) marker(id string) (string, error) {
	if !idRE.MatchString(id) {
		return "", ajar.FieldErrorf("request_id", "%s: unexpected request id %q", Name, id)
	}
	return filepath.Join(p.dir, "active", id), nil
}

// Grant creates the marker; a marker that exists already is the same grant.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	path, err := p.marker(req.RequestID)
	if err != nil {
		return ajar.Handle{}, err
	}
	outcome := "created"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	switch {
	case err == nil:
		f.Close()
	case errors.Is(err, fs.ErrExist):
		outcome = "exists"
	default:
		return ajar.Handle{}, fmt.Errorf("%s: grant %s: %w", Name, req.RequestID, err)
	}
	p.log("grant", req.RequestID, outcome)
	return ajar.Handle{Provider: Name, Version: 1, Grant: req, Data: json.RawMessage(`{}`)}, nil
}

// Revoke moves the marker to revoked/; a missing marker is a no-op.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	path, err := p.marker(h.Grant.RequestID)
	if err != nil {
		return err
	}
	if p.revokeDelay > 0 {
		select {
		case <-time.After(p.revokeDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	dst := filepath.Join(p.dir, "revoked", fmt.Sprintf("%s@%d@%d", h.Grant.RequestID, time.Now().UnixNano(), os.Getpid()))
	outcome := "effective"
	if err := os.Rename(path, dst); errors.Is(err, fs.ErrNotExist) {
		outcome = "noop"
	} else if err != nil {
		return fmt.Errorf("%s: revoke %s: %w", Name, h.Grant.RequestID, err)
	}
	p.log("revoke", h.Grant.RequestID, outcome)
	return nil
}

// Verify reports whether the marker exists.
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	path, err := p.marker(h.Grant.RequestID)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// log appends one line to calls.log in a single write (O_APPEND keeps lines from
// several processes whole). It is for people reading a failed test; the counts
// come from the marker files.
func (p *Provider) log(op, id, outcome string) {
	f, err := os.OpenFile(filepath.Join(p.dir, "calls.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s %s %s pid=%d\n", time.Now().UTC().Format(time.RFC3339Nano), op, id, outcome, os.Getpid())
}
