package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ajar-dev/ajar"
)

// timeLayout is how times are stored outside the audit log: UTC, fixed width, so
// that text order (the columns use the "C" collation) is time order, and with
// every nanosecond. It is the SQLite store's layout, so a database can be moved
// from one to the other as text.
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

// encoder turns values into query arguments, keeping the first error.
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

// json encodes v as a text argument; nil maps, slices and pointers become "null",
// so they read back as nil.
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

func (d *decoder) timePtr(s *string) *time.Time {
	if s == nil {
		return nil
	}
	t := d.time(*s)
	return &t
}

func (d *decoder) json(s string, v any) {
	if err := json.Unmarshal([]byte(s), v); err != nil && d.err == nil {
		d.err = err
	}
}

// SQLSTATE codes the store acts on. Errors are told apart by these codes only,
// never by their message text.
const (
	codeUniqueViolation      = "23505"
	codeCharNotInRepertoire  = "22021" // invalid UTF-8, or a NUL byte, in a text value
	codeUntranslatable       = "22P05"
	codeProgramLimitExceeded = "54000" // e.g. a value too large for an index entry
)

// pgCode returns the SQLSTATE of a PostgreSQL error in err's chain, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mapError turns the database errors that are the caller's fault into ajar errors:
// a duplicate key (ECONFLICT; the inserts avoid it with ON CONFLICT DO NOTHING, so
// that the transaction stays usable) and text the database cannot store
// (EINVALID). Anything else is wrapped with what was being done.
func mapError(err error, doing string) error {
	switch pgCode(err) {
	case codeUniqueViolation:
		return ajar.Errorf(ajar.ECONFLICT, "%s: already exists", doing)
	case codeCharNotInRepertoire, codeUntranslatable:
		return ajar.Errorf(ajar.EINVALID, "%s: text must be valid UTF-8 without NUL characters", doing)
	case codeProgramLimitExceeded:
		return ajar.Errorf(ajar.EINVALID, "%s: a value is too large", doing)
	}
	return fmt.Errorf("postgres: %s: %w", doing, err)
}

func jsonValid(b []byte) bool { return json.Valid(b) }
