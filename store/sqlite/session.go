package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// Sessions, identities, sign-in steps and WebAuthn credentials.

const (
	qGetSession     = `SELECT ` + sqlcodec.SessionCols + ` FROM sessions WHERE hash = ?`
	qGetSessionByID = `SELECT ` + sqlcodec.SessionCols + ` FROM sessions WHERE id = ?`
	qInsertSession  = `INSERT INTO sessions (` + sqlcodec.SessionCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	// A revocation sticks: revoked_at and revoked_by keep their first value.
	qUpdateSession = `UPDATE sessions SET last_used_at = ?, refreshed_at = ?, group_names = ?, refresh = ?,
		mfa_at = ?, expires_at = ?,
		revoked_by = CASE WHEN revoked_at IS NULL THEN ? ELSE revoked_by END,
		revoked_at = COALESCE(revoked_at, ?)
		WHERE id = ?`
	qTouchSession = `UPDATE sessions SET last_used_at = ? WHERE id = ?`
	qClaimRefresh = `UPDATE sessions SET refreshed_at = ? WHERE id = ? AND refreshed_at IS ?`
	qGetIdentity  = `SELECT group_names, source, updated_at FROM identities WHERE user_id = ?`
	qPutIdentity  = `INSERT INTO identities (user_id, group_names, source, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET group_names = excluded.group_names, source = excluded.source,
		updated_at = excluded.updated_at`
	qPutFlow    = `INSERT INTO auth_flows (kind, key_hash, data, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	qTakeFlow   = `DELETE FROM auth_flows WHERE kind = ? AND key_hash = ? RETURNING data, expires_at`
	qPurgeFlows = `DELETE FROM auth_flows WHERE expires_at <= ?`
	qPutCred    = `INSERT INTO webauthn_credentials (id, user_id, name, data, created_at, last_used_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	qListCreds = `SELECT id, user_id, name, data, created_at, last_used_at FROM webauthn_credentials
		WHERE user_id = ? ORDER BY created_at, id`
	qUpdateCred = `UPDATE webauthn_credentials SET data = ?, last_used_at = ? WHERE user_id = ? AND id = ?`
	qDeleteCred = `DELETE FROM webauthn_credentials WHERE user_id = ? AND id = ?`
)

func scanSession(row scanner) (*ajar.Session, error) {
	var r sqlcodec.SessionRow
	if err := row.Scan(r.Dest()...); err != nil {
		return nil, err
	}
	return r.Session()
}

func (t *readTx) getSession(ctx context.Context, query string, arg any) (*ajar.Session, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	s, err := scanSession(st.QueryRowContext(ctx, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "session not found")
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: get session: %w", err))
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
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	where, args := []string{"TRUE"}, []any{}
	if len(f.Kinds) > 0 {
		where = append(where, "kind IN (?"+strings.Repeat(", ?", len(f.Kinds)-1)+")")
		for _, k := range f.Kinds {
			args = append(args, k)
		}
	}
	if f.UserID != "" {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if !f.IncludeEnded {
		now, err := sqlcodec.FormatTime("now", t.now)
		if err != nil {
			return nil, err
		}
		where = append(where, "revoked_at IS NULL AND expires_at > ?")
		args = append(args, now)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	rows, err := t.q.QueryContext(ctx, `SELECT `+sqlcodec.SessionCols+` FROM sessions WHERE `+
		strings.Join(where, " AND ")+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list sessions: %w", err))
	}
	out, err := collect(rows, scanSession)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list sessions: %w", err))
	}
	return out, nil
}

// CreateSession implements ajar.Tx.
func (t *tx) CreateSession(ctx context.Context, s ajar.Session) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	if err := sqlcodec.CheckSession(&s); err != nil {
		return err
	}
	args, err := sqlcodec.SessionArgs(&s)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qInsertSession)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: create session: %w", err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return t.fail(fmt.Errorf("sqlite: create session: %w", err))
	} else if n == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "session already exists")
	}
	return nil
}

// UpdateSession implements ajar.Tx.
func (t *tx) UpdateSession(ctx context.Context, s ajar.Session) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	if s.ExpiresAt.IsZero() {
		return ajar.FieldErrorf("expires_at", "is required")
	}
	args, err := sqlcodec.SessionArgs(&s)
	if err != nil {
		return err
	}
	// SessionCols order: 5 groups, 7 expires, 8 last_used, 9 refreshed, 10 refresh, 11 mfa, 12 revoked, 13 revoked_by.
	var revokedBy any = ""
	if !s.RevokedAt.IsZero() {
		revokedBy = s.RevokedBy
	}
	st, err := t.prepared(ctx, qUpdateSession)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, args[8], args[9], args[5], args[10], args[11], args[7], revokedBy, args[12], s.ID)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update session: %w", err))
	}
	return t.oneRow(res, "session")
}

// oneRow maps an update that changed no row to ENOTFOUND.
func (t *tx) oneRow(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update %s: %w", what, err))
	}
	if n == 0 {
		return ajar.Errorf(ajar.ENOTFOUND, "%s not found", what)
	}
	return nil
}

// TouchSession implements ajar.Tx.
func (t *tx) TouchSession(ctx context.Context, id string, at time.Time) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	atS, err := sqlcodec.FormatTime("at", at)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qTouchSession)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, atS, id)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: touch session: %w", err))
	}
	return t.oneRow(res, "session")
}

// ClaimSessionRefresh implements ajar.Tx.
func (t *tx) ClaimSessionRefresh(ctx context.Context, id string, seen, at time.Time) (bool, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return false, err
	}
	var e sqlcodec.Encoder
	seenS, atS := e.OptTime("seen", seen), e.Time("at", at)
	if e.Err != nil {
		return false, e.Err
	}
	st, err := t.prepared(ctx, qClaimRefresh)
	if err != nil {
		return false, err
	}
	res, err := st.ExecContext(ctx, atS, id, seenS)
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: claim session refresh: %w", err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: claim session refresh: %w", err))
	}
	return n == 1, nil
}

// GetIdentity implements ajar.ReadTx.
func (t *readTx) GetIdentity(ctx context.Context, userID string) (*ajar.Identity, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, qGetIdentity)
	if err != nil {
		return nil, err
	}
	var groups, updated string
	i := ajar.Identity{UserID: userID}
	err = st.QueryRowContext(ctx, userID).Scan(&groups, &i.Source, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "identity not found")
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: get identity: %w", err))
	}
	var d sqlcodec.Decoder
	d.JSON(groups, &i.Groups)
	i.UpdatedAt = d.Time(updated)
	if d.Err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: get identity: %w", d.Err))
	}
	return &i, nil
}

// PutIdentity implements ajar.Tx.
func (t *tx) PutIdentity(ctx context.Context, i ajar.Identity) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	args, err := sqlcodec.IdentityArgs(&i)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qPutIdentity)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, args...); err != nil {
		return t.fail(fmt.Errorf("sqlite: put identity: %w", err))
	}
	return nil
}

// PutAuthFlow implements ajar.Tx.
func (t *tx) PutAuthFlow(ctx context.Context, f ajar.AuthFlow) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
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
	purge, err := t.prepared(ctx, qPurgeFlows)
	if err != nil {
		return err
	}
	if _, err := purge.ExecContext(ctx, now); err != nil {
		return t.fail(fmt.Errorf("sqlite: purge expired auth flows: %w", err))
	}
	st, err := t.prepared(ctx, qPutFlow)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: put auth flow: %w", err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return t.fail(fmt.Errorf("sqlite: put auth flow: %w", err))
	} else if n == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "sign-in step already exists")
	}
	return nil
}

// TakeAuthFlow implements ajar.Tx.
func (t *tx) TakeAuthFlow(ctx context.Context, kind string, keyHash []byte) (*ajar.AuthFlow, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, qTakeFlow)
	if err != nil {
		return nil, err
	}
	f := ajar.AuthFlow{Kind: kind, KeyHash: append([]byte(nil), keyHash...)}
	var expires string
	err = st.QueryRowContext(ctx, kind, keyHash).Scan(&f.Data, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "sign-in step not found")
	} else if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: take auth flow: %w", err))
	}
	if f.ExpiresAt, err = sqlcodec.ParseTime(expires); err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: take auth flow: %w", err))
	}
	if !t.now.Before(f.ExpiresAt) {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "sign-in step expired")
	}
	return &f, nil
}

func scanCred(row scanner) (ajar.WebAuthnCredential, error) {
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
	ctx, err := t.enter(ctx)
	if err != nil {
		return nil, err
	}
	st, err := t.prepared(ctx, qListCreds)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, userID)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list webauthn credentials: %w", err))
	}
	out, err := collect(rows, scanCred)
	if err != nil {
		return nil, t.fail(fmt.Errorf("sqlite: list webauthn credentials: %w", err))
	}
	return out, nil
}

// PutWebAuthnCredential implements ajar.Tx.
func (t *tx) PutWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	args, err := sqlcodec.CredArgs(&c)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qPutCred)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: put webauthn credential: %w", err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return t.fail(fmt.Errorf("sqlite: put webauthn credential: %w", err))
	} else if n == 0 {
		return ajar.Errorf(ajar.ECONFLICT, "webauthn credential already exists")
	}
	return nil
}

// UpdateWebAuthnCredential implements ajar.Tx.
func (t *tx) UpdateWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	var e sqlcodec.Encoder
	used := e.OptTime("last_used_at", c.LastUsedAt)
	if e.Err != nil {
		return e.Err
	}
	st, err := t.prepared(ctx, qUpdateCred)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, c.Data, used, c.UserID, c.ID)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: update webauthn credential: %w", err))
	}
	return t.oneRow(res, "webauthn credential")
}

// DeleteWebAuthnCredential implements ajar.Tx.
func (t *tx) DeleteWebAuthnCredential(ctx context.Context, userID string, id []byte) error {
	ctx, err := t.enter(ctx)
	if err != nil {
		return err
	}
	st, err := t.prepared(ctx, qDeleteCred)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, userID, id)
	if err != nil {
		return t.fail(fmt.Errorf("sqlite: delete webauthn credential: %w", err))
	}
	return t.oneRow(res, "webauthn credential")
}
