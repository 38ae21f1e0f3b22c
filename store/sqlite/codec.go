package sqlite

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/ajar-dev/ajar"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// timeLayout is how times are stored outside the audit log: UTC, fixed width, so
// that text order is time order, and with every nanosecond.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// formatTime returns t in timeLayout, or an EINVALID error naming field if t's year
// cannot be written in four digits.
func formatTime(field string, t time.Time) (string, error) {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return "", ajar.FieldErrorf(field, "year %d is out of range", y)
	}
	return t.Format(timeLayout), nil
}

func parseTime(s string) (time.Time, error) {
	return time.Parse(timeLayout, s)
}

// encoder turns values into column arguments, keeping the first error.
type encoder struct{ err error }

func (e *encoder) time(field string, t time.Time) any {
	s, err := formatTime(field, t)
	if err != nil && e.err == nil {
		e.err = err
	}
	return s
}

func (e *encoder) timePtr(field string, t *time.Time) any {
	if t == nil {
		return nil
	}
	return e.time(field, *t)
}

// json encodes v as a TEXT column; nil maps, slices and pointers become "null", so
// they read back as nil.
func (e *encoder) json(field string, v any) any {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		if e.err == nil {
			e.err = ajar.FieldErrorf(field, "cannot encode as JSON: %v", err)
		}
		return nil
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// decoder turns columns back into values, keeping the first error.
type decoder struct{ err error }

func (d *decoder) time(s string) time.Time {
	t, err := parseTime(s)
	if err != nil && d.err == nil {
		d.err = err
	}
	return t
}

func (d *decoder) timePtr(s sql.NullString) *time.Time {
	if !s.Valid {
		return nil
	}
	t := d.time(s.String)
	return &t
}

func (d *decoder) json(s string, v any) {
	if err := json.Unmarshal([]byte(s), v); err != nil && d.err == nil {
		d.err = err
	}
}

func jsonValid(b []byte) bool { return json.Valid(b) }

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
