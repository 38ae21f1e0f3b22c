package sqlcodec

import (
	"time"

	"github.com/ajar-dev/ajar"
)

// SessionCols are the sessions table's columns in the order of SessionArgs and
// ScanSession.
const SessionCols = `id, hash, kind, user_id, name, group_names, created_at, expires_at,
	last_used_at, refreshed_at, refresh, mfa_at, revoked_at, revoked_by, parent`

// CheckSession checks a session to create.
func CheckSession(s *ajar.Session) error {
	switch {
	case s.ID == "" || len(s.ID) > 64:
		return ajar.FieldErrorf("id", "session id is required (at most 64 bytes)")
	case len(s.Hash) == 0:
		return ajar.FieldErrorf("hash", "session hash is required")
	case s.Kind == "":
		return ajar.FieldErrorf("kind", "session kind is required")
	case s.UserID == "":
		return ajar.FieldErrorf("user_id", "session user is required")
	case s.CreatedAt.IsZero():
		return ajar.FieldErrorf("created_at", "is required")
	case s.ExpiresAt.IsZero():
		return ajar.FieldErrorf("expires_at", "is required")
	}
	return nil
}

// OptTime encodes t like Encoder.Time, and a zero t as NULL.
func (e *Encoder) OptTime(field string, t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return e.Time(field, t)
}

// OptTime decodes a nullable time column (nil: the zero time).
func (d *Decoder) OptTime(s *string) time.Time {
	if s == nil {
		return time.Time{}
	}
	return d.Time(*s)
}

// SessionArgs encodes every column of s in SessionCols order.
func SessionArgs(s *ajar.Session) ([]any, error) {
	var e Encoder
	var groups any
	if s.Groups != nil {
		groups = e.JSON("groups", s.Groups)
	}
	var refresh any
	if s.Refresh != nil {
		refresh = s.Refresh
	}
	args := []any{s.ID, s.Hash, s.Kind, s.UserID, s.Name, groups,
		e.Time("created_at", s.CreatedAt), e.Time("expires_at", s.ExpiresAt),
		e.OptTime("last_used_at", s.LastUsedAt), e.OptTime("refreshed_at", s.RefreshedAt),
		refresh, e.OptTime("mfa_at", s.MFAAt), e.OptTime("revoked_at", s.RevokedAt), s.RevokedBy, s.Parent}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}

// SessionRow is a sessions row as scanned; Session decodes it.
type SessionRow struct {
	S                                 ajar.Session
	Groups                            *string
	Created, Expires                  string
	LastUsed, Refreshed, MFA, Revoked *string
}

// Dest returns the scan destinations in SessionCols order.
func (r *SessionRow) Dest() []any {
	return []any{&r.S.ID, &r.S.Hash, &r.S.Kind, &r.S.UserID, &r.S.Name, &r.Groups, &r.Created, &r.Expires,
		&r.LastUsed, &r.Refreshed, &r.S.Refresh, &r.MFA, &r.Revoked, &r.S.RevokedBy, &r.S.Parent}
}

// Session decodes the scanned row.
func (r *SessionRow) Session() (*ajar.Session, error) {
	var d Decoder
	s := r.S
	if r.Groups != nil {
		d.JSON(*r.Groups, &s.Groups)
	}
	s.CreatedAt, s.ExpiresAt = d.Time(r.Created), d.Time(r.Expires)
	s.LastUsedAt, s.RefreshedAt = d.OptTime(r.LastUsed), d.OptTime(r.Refreshed)
	s.MFAAt, s.RevokedAt = d.OptTime(r.MFA), d.OptTime(r.Revoked)
	if len(s.Refresh) == 0 {
		s.Refresh = nil
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return &s, nil
}

// IdentityArgs checks i and encodes user_id, group_names, source, updated_at.
func IdentityArgs(i *ajar.Identity) ([]any, error) {
	if i.UserID == "" {
		return nil, ajar.FieldErrorf("user_id", "is required")
	}
	groups := i.Groups
	if groups == nil {
		groups = []string{}
	}
	var e Encoder
	args := []any{i.UserID, e.JSON("groups", groups), i.Source, e.Time("updated_at", i.UpdatedAt)}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}

// AuthFlowArgs checks f and encodes kind, key_hash, data, expires_at.
func AuthFlowArgs(f *ajar.AuthFlow) ([]any, error) {
	if f.Kind == "" {
		return nil, ajar.FieldErrorf("kind", "is required")
	}
	if len(f.KeyHash) == 0 {
		return nil, ajar.FieldErrorf("key_hash", "is required")
	}
	data := f.Data
	if data == nil {
		data = []byte{}
	}
	var e Encoder
	args := []any{f.Kind, f.KeyHash, data, e.Time("expires_at", f.ExpiresAt)}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}

// CredArgs checks c and encodes id, user_id, name, data, created_at, last_used_at.
func CredArgs(c *ajar.WebAuthnCredential) ([]any, error) {
	if c.UserID == "" {
		return nil, ajar.FieldErrorf("user_id", "is required")
	}
	if len(c.ID) == 0 {
		return nil, ajar.FieldErrorf("id", "is required")
	}
	data := c.Data
	if data == nil {
		data = []byte{}
	}
	var e Encoder
	args := []any{c.ID, c.UserID, c.Name, data, e.Time("created_at", c.CreatedAt), e.OptTime("last_used_at", c.LastUsedAt)}
	if e.Err != nil {
		return nil, e.Err
	}
	return args, nil
}
