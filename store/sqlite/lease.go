package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

const (
	qAcquireLease = `INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE leases.until <= ? OR leases.owner = excluded.owner`
	qReleaseLease = `DELETE FROM leases WHERE name = ? AND owner = ?`
)

// AcquireLease implements ajar.Tx.
func (t *tx) AcquireLease(ctx context.Context, name, owner string, until time.Time) (bool, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return false, err
	}
	untilS, nowS, err := sqlcodec.LeaseArgs(name, owner, until, t.now)
	if err != nil {
		return false, err
	}
	st, err := t.prepared(ctx, qAcquireLease)
	if err != nil {
		return false, err
	}
	res, err := st.ExecContext(ctx, name, owner, untilS, nowS)
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: acquire lease %s: %w", name, err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: acquire lease %s: %w", name, err))
	}
	return n == 1, nil
}

// ReleaseLease implements ajar.Tx.
func (t *tx) ReleaseLease(ctx context.Context, name, owner string) (bool, error) {
	ctx, err := t.enter(ctx)
	if err != nil {
		return false, err
	}
	st, err := t.prepared(ctx, qReleaseLease)
	if err != nil {
		return false, err
	}
	res, err := st.ExecContext(ctx, name, owner)
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: release lease %s: %w", name, err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, t.fail(fmt.Errorf("sqlite: release lease %s: %w", name, err))
	}
	return n == 1, nil
}
