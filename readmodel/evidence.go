package readmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
)

// Evidence is the full story of one request for an auditor: the request and
// its reason, each approval with who and when, break-glass and its review,
// extensions, the grant with the provider's handle, every certificate issued
// and every session reported, the end with the provider's confirmation that
// the access is gone, and the request's audit events with their hashes and a
// signed checkpoint of the log that covers them. It is the one evidence type:
// the API serves it as JSON (GET /v1/requests/{id}/evidence), Markdown renders
// it for ajar evidence, and the web's evidence page renders it too.
type Evidence struct {
	GeneratedAt time.Time     `json:"generated_at"`
	GeneratedBy string        `json:"generated_by"`
	Request     *ajar.Request `json:"request"`
	// Breakglass is the review task of a break-glass request (nil otherwise).
	Breakglass   *ajar.ReviewTask  `json:"breakglass,omitempty"`
	Extensions   []ajar.Extension  `json:"extensions"`
	Grant        *EvidenceGrant    `json:"grant,omitempty"`
	Certificates []ajar.SSHCert    `json:"certificates"`
	Sessions     []ajar.AuditEvent `json:"sessions"` // logins and session ends reported by host agents
	End          *EvidenceEnd      `json:"end,omitempty"`
	Events       []ajar.AuditEvent `json:"events"` // every audit event about the request, in order
	Integrity    EvidenceIntegrity `json:"integrity"`
}

// EvidenceGrant is what the provider was asked to create and what it reported.
type EvidenceGrant struct {
	Provider      string          `json:"provider"`
	HandleVersion int             `json:"handle_version"`
	Handle        json.RawMessage `json:"handle,omitempty"` // the provider's revoke handle
	Config        json.RawMessage `json:"config,omitempty"` // the target's config at grant time
	IntentAt      *time.Time      `json:"intent_at,omitempty"`
	GrantedAt     *time.Time      `json:"granted_at,omitempty"`
	ExpiresAt     *time.Time      `json:"expires_at,omitempty"`
}

// EvidenceEnd is how the request ended and the proof the access is gone.
type EvidenceEnd struct {
	State     ajar.State     `json:"state"`
	Reason    ajar.EndReason `json:"end_reason,omitempty"`
	At        *time.Time     `json:"at,omitempty"`
	Confirmed bool           `json:"confirmed"` // the provider confirmed removal (event Seq)
	Seq       int64          `json:"seq,omitempty"`
	Detail    string         `json:"detail"`
	// Check is the provider's answer now, for providers that can tell
	// (ajar.Verifier); nil otherwise.
	Check *EvidenceCheck `json:"check,omitempty"`
}

// EvidenceCheck is a provider's answer to "is the access there right now?".
type EvidenceCheck struct {
	At      time.Time `json:"at"`
	Present bool      `json:"present"`
	Error   string    `json:"error,omitempty"`
}

// EvidenceIntegrity ties the events to the tamper-evident log.
type EvidenceIntegrity struct {
	// HashesOK is true when every event's hash recomputes from its fields.
	HashesOK bool   `json:"hashes_ok"`
	Problem  string `json:"problem,omitempty"`
	// Checkpoint is a signed note of the log's size and head hash (admins
	// only); it covers the events when its size is at least the last event's
	// Seq. `ajar audit verify --checkpoint FILE` checks the whole chain up to
	// it.
	Checkpoint     string `json:"checkpoint,omitempty"`
	CheckpointSize int64  `json:"checkpoint_size,omitempty"`
	Covers         bool   `json:"covers"`
	VerifierKey    string `json:"verifier_key,omitempty"`
	// Chain is the outcome of verifying the whole audit log's hash chain, for
	// an admin on the web's evidence page (see Reader.Evidence); nil otherwise,
	// and always in the API's report, where `ajar audit verify` does that.
	Chain *ChainStatus `json:"chain,omitempty"`
}

// ChainStatus is the outcome of verifying the whole audit log's hash chain
// (audit.Verify: every event's hash, and each one linking to the one before,
// from the first), which also shows a deleted or reordered event.
type ChainStatus struct {
	OK      bool   `json:"ok"`
	Events  int64  `json:"events"`            // events checked
	Head    []byte `json:"head,omitempty"`    // the log's head hash
	Problem string `json:"problem,omitempty"` // the first problem, when not OK
}

// sessionEvent reports whether an audit action is a session a host reported.
func sessionEvent(action string) bool {
	return strings.HasPrefix(action, "ssh.session.") || strings.HasPrefix(action, "session.")
}

// EvidenceReport gathers the evidence for a request u may see (ENOTFOUND
// otherwise). The signed checkpoint is included for admins, who may read the
// whole log.
func (s *Reader) EvidenceReport(ctx context.Context, u ajar.User, id string) (*Evidence, error) {
	r, err := s.core.GetRequest(ctx, u, id)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{GeneratedBy: u.ID, Request: r, Extensions: []ajar.Extension{}, Certificates: []ajar.SSHCert{},
		Sessions: []ajar.AuditEvent{}, Events: []ajar.AuditEvent{}}
	var head int64
	err = s.store.View(ctx, func(tx ajar.ReadTx) error {
		ev.GeneratedAt = tx.Now()
		f := ajar.AuditFilter{Subject: id, Limit: 1000}
		for {
			page, err := tx.ListAudit(ctx, f)
			if err != nil {
				return err
			}
			ev.Events = append(ev.Events, page...)
			if len(page) < f.Limit {
				break
			}
			f.AfterSeq = page[len(page)-1].Seq
		}
		certs, err := tx.ListSSHCerts(ctx, id)
		if err != nil {
			return err
		}
		ev.Certificates = append(ev.Certificates, certs...)
		exts, err := tx.ListExtensions(ctx, id)
		if err != nil {
			return err
		}
		ev.Extensions = append(ev.Extensions, exts...)
		rv, err := tx.GetReview(ctx, id)
		switch {
		case err == nil:
			ev.Breakglass = rv
		case ajar.ErrorCode(err) != ajar.ENOTFOUND:
			return err
		}
		head, _, err = tx.AuditHead(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("evidence for %s: %w", id, err)
	}
	for _, e := range ev.Events {
		if sessionEvent(e.Action) {
			ev.Sessions = append(ev.Sessions, e)
		}
	}
	ev.Grant = evidenceGrant(r, ev.Events)
	ev.End = s.evidenceEnd(ctx, r, ev.Events, ev.GeneratedAt)

	ev.Integrity.HashesOK = true
	for _, e := range ev.Events {
		if !bytes.Equal(e.Hash, e.ComputeHash()) {
			ev.Integrity.HashesOK = false
			ev.Integrity.Problem = fmt.Sprintf("event %d: its hash does not match its fields (edited?)", e.Seq)
			break
		}
	}
	if s.pol.IsAdmin(u) && s.signer != nil && head > 0 {
		cp, err := s.Checkpoint(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("evidence for %s: checkpoint: %w", id, err)
		}
		ev.Integrity.Checkpoint = string(cp)
		ev.Integrity.CheckpointSize = checkpointSize(cp, head)
		ev.Integrity.VerifierKey = s.AuditKey()
		last := int64(0)
		if n := len(ev.Events); n > 0 {
			last = ev.Events[n-1].Seq
		}
		ev.Integrity.Covers = ev.Integrity.CheckpointSize >= last
	}
	return ev, nil
}

// checkpointSize reads the tree size from a checkpoint note (its second
// line); fallback is the head read just before, which the note cannot be
// smaller than.
func checkpointSize(note []byte, fallback int64) int64 {
	lines := strings.SplitN(string(note), "\n", 3)
	if len(lines) >= 2 {
		var n int64
		if _, err := fmt.Sscanf(lines[1], "%d", &n); err == nil && n > 0 {
			return n
		}
	}
	return fallback
}

func evidenceGrant(r *ajar.Request, events []ajar.AuditEvent) *EvidenceGrant {
	if r.Handle == nil {
		return nil
	}
	g := &EvidenceGrant{Provider: r.Handle.Provider, HandleVersion: r.Handle.Version, Handle: r.Handle.Data,
		Config: r.Handle.Grant.Config, ExpiresAt: r.ExpiresAt}
	for _, e := range events {
		switch e.Action {
		case "grant.started":
			if g.IntentAt == nil {
				g.IntentAt = ptr(e.Time)
			}
		case "request.activated":
			g.GrantedAt = ptr(e.Time)
		}
	}
	return g
}

// evidenceEnd finds the event that recorded the end and, where the provider
// can tell, asks it whether the access is there now.
func (s *Reader) evidenceEnd(ctx context.Context, r *ajar.Request, events []ajar.AuditEvent, now time.Time) *EvidenceEnd {
	end := &EvidenceEnd{State: r.State, Reason: r.EndReason, At: r.EndedAt}
	switch r.State {
	case ajar.StateExpired, ajar.StateRevoked, ajar.StateGrantFailed:
		for _, e := range events {
			if e.Action == "request."+string(r.State) {
				var d struct {
					Attempts int `json:"attempts"`
				}
				_ = json.Unmarshal(e.Details, &d)
				end.Confirmed, end.Seq = true, e.Seq
				end.Detail = fmt.Sprintf("the provider confirmed the access is gone (event %d, %s, after %d revoke attempt(s))", e.Seq, e.Action, d.Attempts)
			}
		}
		if !end.Confirmed {
			end.Detail = "no confirmation event found"
		}
	case ajar.StateDenied, ajar.StateCancelled, ajar.StateTimedOut:
		end.Confirmed = true
		end.Detail = "no access was ever granted"
	case ajar.StateRevokeFailed:
		end.Detail = fmt.Sprintf("removal keeps failing (%d attempts): %s", r.Attempts, r.LastError)
	default:
		end.Detail = "the request has not ended"
		if r.State != ajar.StateActive && r.State != ajar.StateRevoking {
			return nil
		}
	}
	if r.Handle != nil && len(r.Handle.Data) > 0 {
		if prov, err := s.providers.ForHandle(*r.Handle); err == nil {
			if v, ok := prov.(ajar.Verifier); ok {
				vctx, cancel := context.WithTimeout(ctx, s.core.ProviderTimeout())
				present, err := v.Verify(vctx, *r.Handle)
				cancel()
				end.Check = &EvidenceCheck{At: now, Present: present}
				if err != nil {
					end.Check.Error = ajar.SafeMessage(err)
				}
			}
		}
	}
	return end
}

// Evidence is EvidenceReport for the web's evidence page: for an admin, who may
// read the whole log, it also verifies the whole audit chain
// (Integrity.Chain), since that means reading every event.
func (s *Reader) Evidence(ctx context.Context, u ajar.User, id string) (*Evidence, error) {
	ev, err := s.EvidenceReport(ctx, u, id)
	if err != nil || !s.pol.IsAdmin(u) {
		return ev, err
	}
	res, err := audit.Verify(ctx, audit.StorePages(s.store, 0))
	var bad *audit.BadEventError
	var trunc *audit.TruncatedError
	var rewritten *audit.RewrittenError
	switch {
	case errors.As(err, &bad), errors.As(err, &trunc), errors.As(err, &rewritten):
		ev.Integrity.Chain = &ChainStatus{Problem: err.Error()}
	case err != nil:
		return nil, fmt.Errorf("evidence for %s: %w", id, err)
	default:
		ev.Integrity.Chain = &ChainStatus{OK: true, Events: res.Events, Head: res.Head}
	}
	return ev, nil
}

func ptr[T any](v T) *T { return &v }
