package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// Sessions, identities, sign-in steps and WebAuthn credentials.

const (
	qGetSession     = `SELECT ` + sqlcodec.SessionCols + ` FROM sessions WHERE hash = $1`
	qGetSessionByID = `SELECT ` + sqlcodec.SessionCols + ` FROM sessions WHERE id = $1`
	qInsertSession  = `INSERT INTO sessions (` + sqlcodec.SessionCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING`
	// A revocation sticks: revoked_at and revoked_by keep their first value.
	qUpdateSession = `UPDATE sessions SET last_used_at = $1, refreshed_at = $2, group_names = $3, refresh = $4,
		mfa_at = $5, expires_at = $6,
		revoked_by = CASE WHEN revoked_at IS NULL THEN $7 ELSE revoked_by END,
		revoked_at = COALESCE(revoked_at, $8)
		WHERE id = $9`
	qTouchSession = `UPDATE sessions SET last_used_at = $1 WHERE id = $2`
	qClaimRefresh = `UPDATE sessions SET refreshed_at = $1 WHERE id = $2 AND refreshed_at IS NOT DISTINCT FROM $3::text`
	qGetIdentity  = `SELECT group_names, source, updated_at FROM identities WHERE user_id = $1`
	qPutIdentity  = `INSERT INTO identities (user_id, group_names, source, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET group_names = EXCLUDED.group_names, source = EXCLUDED.source,
		updated_at = EXCLUDED.updated_at`
	qPutFlow    = `INSERT INTO auth_flows (kind, key_hash, data, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`
	qTakeFlow   = `DELETE FROM auth_flows WHERE kind = $1 AND key_hash = $2 RETURNING data, expires_at`
	qPurgeFlows = `DELETE FROM auth_flows WHERE expires_at <= $1`
	qPutCred    = `INSERT INTO webauthn_credentials (id, user_id, name, data, created_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`
	qListCreds = `SELECT id, user_id, name, data, created_at, last_used_at FROM webauthn_credentials
		WHERE user_id = $1 ORDER BY created_at, id`
	qUpdateCred = `UPDATE webauthn_credentials SET data = $1, last_used_at = $2 WHERE user_id = $3 AND id = $4`
	qDeleteCred = `DELETE FROM webauthn_credentials WHERE user_id = $1 AND id = $2`
)

func scanSession(row pgx.Row) (*ajar.Session, error) {
	var r sqlcodec.SessionRow
	if err := row.Scan(r.Dest()...); err != nil {
		return nil, err
	}
	return r.Session()
}

func (t *readTx) getSession(ctx context.Context, query string, arg any) (*ajar.Session, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	s, err := scanSession(t.q.QueryRow(ctx, query, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "session not found")
	} else if err != nil {
		return nil, t.fail(mapError(err, "get session"))
	}
	return s, nil
}

// GetSession implements ajar.ReadTx.
func (t *readTx) GetSession(ctx context.Context, hash []byte) (*ajar.Session, error) {
	return t.getSession(ctx, qGetSession, hash)
}

// GetSessionByID implements ajar.ReadTx.
func (t *readTx) GetSessionByID(ctx context.Context, id string) (*ajar.Session, error) {
	return t.getSession(ctx, qGetSessionByID, id)
}

// ListSessions implements ajar.ReadTx.
func (t *readTx) ListSessions(ctx context.Context, f ajar.SessionFilter) ([]*ajar.Session, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	where, args := []string{"TRUE"}, []any{}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(f.Kinds) > 0 {
		where = append(where, "kind = ANY("+arg(f.Kinds)+"::text[])")
	}
	if f.UserID != "" {
		where = append(where, "user_id = "+arg(f.UserID))
	}
	if !f.IncludeEnded {
		now, err := sqlcodec.FormatTime("now", t.Now())
		if err != nil {
			return nil, t.failed() // a View whose clock could not be read
		}
		where = append(where, "revoked_at IS NULL AND expires_at > "+arg(now))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	rows, err := t.q.Query(ctx, `SELECT `+sqlcodec.SessionCols+` FROM sessions WHERE `+
		strings.Join(where, " AND ")+` ORDER BY created_at DESC, id DESC LIMIT `+arg(limit), args...)
	if err != nil {
		return nil, t.fail(mapError(err, "list sessions"))
	}
	out, err := collect(rows, scanSession)
	if err != nil {
		return nil, t.fail(mapError(err, "list sessions"))
	}
	return out, nil
}

// exec runs a write under the head lock (see the package comment).
func (t *tx) exec(ctx context.Context, doing, query string, args ...any) (pgconn.CommandTag, error) {
	if err := t.enter(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	if err := t.lockHead(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := t.q.Exec(ctx, query, args...)
	if err != nil {
		return tag, t.fail(mapError(err, doing))
	}
	return tag, nil
}

// CreateSession implements ajar.Tx.
func (t *tx) CreateSession(ctx context.Context, s ajar.Session) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	if err := sqlcodec.CheckSession(&s); err != nil {
		return err
	}
	args, err := sqlcodec.SessionArgs(&s)
	if err != nil {
		return err
	}
	tag, err := t.exec(ctx, "create session", qInsertSession, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "session already exists")
	}
	return nil
}

// UpdateSession implements ajar.Tx.
func (t *tx) UpdateSession(ctx context.Context, s ajar.Session) error {
	if err := t.enter(ctx); err != nil {
		return err
	}
	if s.ExpiresAt.IsZero() {
		return ajar.FieldErrorf("expires_at", "is required")
	}
	args, err := sqlcodec.SessionArgs(&s)
	if err != nil {
		return err
	}
	revokedBy := ""
	if !s.RevokedAt.IsZero() {
		revokedBy = s.RevokedBy
	}
	// SessionCols order: 5 groups, 7 expires, 8 last_used, 9 refreshed, 10 refresh, 11 mfa, 12 revoked.
	tag, err := t.exec(ctx, "update session", qUpdateSession,
		args[8], args[9], args[5], args[10], args[11], args[7], revokedBy, args[12], s.ID)
	if err != nil {
		return err
	}
	return oneRow(tag, "session")
}

func oneRow(tag pgconn.CommandTag, what string) error {
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ENOTFOUND, "%s not found", what)
	}
	return nil
}

// TouchSession implements ajar.Tx.
func (t *tx) TouchSession(ctx context.Context, id string, at time.Time) error {
	atS, err := sqlcodec.FormatTime("at", at)
	if err != nil {
		return err
	}
	tag, err := t.exec(ctx, "touch session", qTouchSession, atS, id)
	if err != nil {
		return err
	}
	return oneRow(tag, "session")
}

// ClaimSessionRefresh implements ajar.Tx.
func (t *tx) ClaimSessionRefresh(ctx context.Context, id string, seen, at time.Time) (bool, error) {
	var e sqlcodec.Encoder
	seenS, atS := e.OptTime("seen", seen), e.Time("at", at)
	if e.Err != nil {
		return false, e.Err
	}
	tag, err := t.exec(ctx, "claim session refresh", qClaimRefresh, atS, id, seenS)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// GetIdentity implements ajar.ReadTx.
func (t *readTx) GetIdentity(ctx context.Context, userID string) (*ajar.Identity, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	var groups, updated string
	i := ajar.Identity{UserID: userID}
	err := t.q.QueryRow(ctx, qGetIdentity, userID).Scan(&groups, &i.Source, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "identity not found")
	} else if err != nil {
		return nil, t.fail(mapError(err, "get identity"))
	}
	var d sqlcodec.Decoder
	d.JSON(groups, &i.Groups)
	i.UpdatedAt = d.Time(updated)
	if d.Err != nil {
		return nil, t.fail(fmt.Errorf("postgres: get identity: %w", d.Err))
	}
	return &i, nil
}

// PutIdentity implements ajar.Tx.
func (t *tx) PutIdentity(ctx context.Context, i ajar.Identity) error {
	args, err := sqlcodec.IdentityArgs(&i)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, "put identity", qPutIdentity, args...)
	return err
}

// PutAuthFlow implements ajar.Tx.
func (t *tx) PutAuthFlow(ctx context.Context, f ajar.AuthFlow) error {
	args, err := sqlcodec.AuthFlowArgs(&f)
	if err != nil {
		return err
	}
	// Expired steps go as new ones come, so that flows nobody finished (and
	// unauthenticated starts such as POST /v1/auth/device) do not pile up.
	now, err := sqlcodec.FormatTime("now", t.now)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, "purge expired auth flows", qPurgeFlows, now); err != nil {
		return err
	}
	tag, err := t.exec(ctx, "put auth flow", qPutFlow, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "sign-in step already exists")
	}
	return nil
}

// TakeAuthFlow implements ajar.Tx.
func (t *tx) TakeAuthFlow(ctx context.Context, kind string, keyHash []byte) (*ajar.AuthFlow, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	if err := t.lockHead(ctx); err != nil {
		return nil, err
	}
	f := ajar.AuthFlow{Kind: kind, KeyHash: append([]byte(nil), keyHash...)}
	var expires string
	err := t.q.QueryRow(ctx, qTakeFlow, kind, keyHash).Scan(&f.Data, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "sign-in step not found")
	} else if err != nil {
		return nil, t.fail(mapError(err, "take auth flow"))
	}
	if f.ExpiresAt, err = sqlcodec.ParseTime(expires); err != nil {
		return nil, t.fail(fmt.Errorf("postgres: take auth flow: %w", err))
	}
	if !t.now.Before(f.ExpiresAt) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "sign-in step expired")
	}
	if f.Data == nil {
		f.Data = []byte{}
	}
	return &f, nil
}

func scanCred(row pgx.Row) (ajar.WebAuthnCredential, error) {
	var c ajar.WebAuthnCredential
	var created string
	var used *string
	if err := row.Scan(&c.ID, &c.UserID, &c.Name, &c.Data, &created, &used); err != nil {
		return c, err
	}
	var d sqlcodec.Decoder
	c.CreatedAt, c.LastUsedAt = d.Time(created), d.OptTime(used)
	return c, d.Err
}

// ListWebAuthnCredentials implements ajar.ReadTx.
func (t *readTx) ListWebAuthnCredentials(ctx context.Context, userID string) ([]ajar.WebAuthnCredential, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	rows, err := t.q.Query(ctx, qListCreds, userID)
	if err != nil {
		return nil, t.fail(mapError(err, "list webauthn credentials"))
	}
	out, err := collect(rows, scanCred)
	if err != nil {
		return nil, t.fail(mapError(err, "list webauthn credentials"))
	}
	return out, nil
}

// PutWebAuthnCredential implements ajar.Tx.
func (t *tx) PutWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error {
	args, err := sqlcodec.CredArgs(&c)
	if err != nil {
		return err
	}
	tag, err := t.exec(ctx, "put webauthn credential", qPutCred, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "webauthn credential already exists")
	}
	return nil
}

// UpdateWebAuthnCredential implements ajar.Tx.
func (t *tx) UpdateWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error {
	var e sqlcodec.Encoder
	used := e.OptTime("last_used_at", c.LastUsedAt)
	if e.Err != nil {
		return e.Err
	}
	data := c.Data
	if data == nil {
		data = []byte{}
	}
	tag, err := t.exec(ctx, "update webauthn credential", qUpdateCred, data, used, c.UserID, c.ID)
	if err != nil {
		return err
	}
	return oneRow(tag, "webauthn credential")
}

// DeleteWebAuthnCredential implements ajar.Tx.
func (t *tx) DeleteWebAuthnCredential(ctx context.Context, userID string, id []byte) error {
	tag, err := t.exec(ctx, "delete webauthn credential", qDeleteCred, userID, id)
	if err != nil {
		return err
	}
	return oneRow(tag, "webauthn credential")
}
