package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/ajar-dev/ajar/audit"
)

// qAuditRows reads a range of the log for the audit stream. audit_events.time
// is the RFC 3339 text that was hashed (migration 0001), sent as it is.
const qAuditRows = `SELECT seq, time, actor, action, subject, details, prev_hash, hash
	FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq`

// ReadAuditRows calls fn with each audit event whose Seq is in (after, upTo],
// in Seq order, as the database holds it (GET /v1/audit/stream sends them so,
// and the reader checks every field). The range is read in one statement,
// so as of one moment; a deleted event is left for the verifier to see. The
// event passed to fn is valid only during the call. It returns fn's error,
// or the database's, or one for a row whose columns hold values of the
// wrong kind.
//
// The rows are read from the driver directly, not through database/sql's
// conversions: a million of them are what `ajar audit verify` waits for.
func (s *Store) ReadAuditRows(ctx context.Context, after, upTo int64, fn func(*audit.RawEvent) error) error {
	conn, err := s.readDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: read audit events: %w", err)
	}
	defer conn.Close()
	var fnErr error
	err = conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return errors.New("the driver cannot query")
		}
		rows, err := q.QueryContext(ctx, qAuditRows, []driver.NamedValue{{Ordinal: 1, Value: after}, {Ordinal: 2, Value: upTo}})
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			v [8]driver.Value
			e audit.RawEvent
		)
		for {
			if err := rows.Next(v[:]); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			if err := rawEvent(&e, &v); err != nil {
				return err
			}
			if fnErr = fn(&e); fnErr != nil {
				return fnErr
			}
		}
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("sqlite: read audit events after %d: %w", after, err)
	}
	return nil
}

// rawEvent sets e from a row of qAuditRows.
func rawEvent(e *audit.RawEvent, v *[8]driver.Value) error {
	seq, ok := v[0].(int64)
	if !ok {
		return fmt.Errorf("audit event after %d: seq is %T", e.Seq, v[0])
	}
	e.Seq = seq
	var ok1, ok2, ok3, ok4, ok5, ok6, ok7 bool
	e.Time, ok1 = rawText(v[1])
	e.Actor, ok2 = rawText(v[2])
	e.Action, ok3 = rawText(v[3])
	e.Subject, ok4 = rawText(v[4])
	e.Details, ok5 = rawBlob(v[5])
	e.PrevHash, ok6 = rawBlob(v[6])
	e.Hash, ok7 = rawBlob(v[7])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return fmt.Errorf("audit event %d: a column of the wrong kind: %T %T %T %T %T %T %T", seq, v[1], v[2], v[3], v[4], v[5], v[6], v[7])
	}
	return nil
}

// rawText returns a text column's value; false if it is neither text nor a
// blob.
func rawText(v driver.Value) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

// rawBlob returns a blob column's value, nil for NULL; false if it is
// neither a blob, text nor NULL.
func rawBlob(v driver.Value) ([]byte, bool) {
	switch v := v.(type) {
	case []byte:
		return v, true
	case nil:
		return nil, true
	case string:
		return []byte(v), true
	}
	return nil, false
}
