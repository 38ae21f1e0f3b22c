package sqlite

import (
	"database/sql"
	"errors"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// decoder is sqlcodec.Decoder (the encoding shared with the PostgreSQL store) with
// nullTime for the sql.NullString that database/sql scans a nullable column into.
type decoder struct{ sqlcodec.Decoder }

// nullTime decodes a nullable time column.
func (d *decoder) nullTime(s sql.NullString) *time.Time {
	if !s.Valid {
		return nil
	}
	return d.TimePtr(&s.String)
}

// isUniqueViolation reports whether err is SQLite rejecting a duplicate primary
// key or unique value. It looks at the result code only, never the message.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	}
	return false
}
