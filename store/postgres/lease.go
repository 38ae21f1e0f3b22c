package postgres

import (
	"context"
	"time"

	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

const (
	qAcquireLease = `INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
		WHERE leases.until <= $4 OR leases.owner = EXCLUDED.owner`
	qReleaseLease = `DELETE FROM leases WHERE name = $1 AND owner = $2`
)

// AcquireLease implements ajar.Tx. Like every write it takes the audit head
// lock first (see the package comment), so writers keep one lock order; two
// replicas acquiring the same lease at once are serialised by it, and the
// upsert's condition is checked against the committed row either way.
func (t *tx) AcquireLease(ctx context.Context, name, owner string, until time.Time) (bool, error) {
	if err := t.enter(ctx); err != nil {
		return false, err
	}
	untilS, nowS, err := sqlcodec.LeaseArgs(name, owner, until, t.now)
	if err != nil {
		return false, err
	}
	if err := t.lockHead(ctx); err != nil {
		return false, err
	}
	tag, err := t.q.Exec(ctx, qAcquireLease, name, owner, untilS, nowS)
	if err != nil {
		return false, t.fail(mapError(err, "acquire lease "+name))
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease implements ajar.Tx.
func (t *tx) ReleaseLease(ctx context.Context, name, owner string) (bool, error) {
	if err := t.enter(ctx); err != nil {
		return false, err
	}
	if err := t.lockHead(ctx); err != nil {
		return false, err
	}
	tag, err := t.q.Exec(ctx, qReleaseLease, name, owner)
	if err != nil {
		return false, t.fail(mapError(err, "release lease "+name))
	}
	return tag.RowsAffected() == 1, nil
}
