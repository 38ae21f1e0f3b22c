// Package sqlcodec holds what the SQL stores (store/sqlite and store/postgres)
// share in Go: how values are written to and read from their text columns, and
// the checks and column arguments that do not depend on the database. Each store
// keeps its own SQL, scanning and error mapping.
package sqlcodec

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/ajar-dev/ajar"
)

// TimeLayout is how times are stored outside the audit log: UTC, fixed width, so
// that text order is time order (PostgreSQL's columns use the "C" collation), and
// with every nanosecond. Both stores use it, so a database can be moved from one
// to the other as text.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// FormatTime returns t in TimeLayout, or an EINVALID error naming field if t's year
// cannot be written in four digits.
func FormatTime(field string, t time.Time) (string, error) {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return "", ajar.FieldErrorf(field, "year %d is out of range", y)
	}
	return t.Format(TimeLayout), nil
}

// ParseTime reads a time written by FormatTime.
func ParseTime(s string) (time.Time, error) {
	return time.Parse(TimeLayout, s)
}

// Encoder turns values into column arguments, keeping the first error in Err.
type Encoder struct{ Err error }

// Time encodes t as text in TimeLayout.
func (e *Encoder) Time(field string, t time.Time) any {
	s, err := FormatTime(field, t)
	if err != nil && e.Err == nil {
		e.Err = err
	}
	return s
}

// TimePtr encodes t like Time, and a nil t as NULL.
func (e *Encoder) TimePtr(field string, t *time.Time) any {
	if t == nil {
		return nil
	}
	return e.Time(field, *t)
}

// JSON encodes v as a text argument; nil maps, slices and pointers become "null",
// so they read back as nil.
func (e *Encoder) JSON(field string, v any) any {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		if e.Err == nil {
			e.Err = ajar.FieldErrorf(field, "cannot encode as JSON: %v", err)
		}
		return nil
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// Decoder turns columns back into values, keeping the first error in Err.
type Decoder struct{ Err error }

// Time decodes a time written by Encoder.Time.
func (d *Decoder) Time(s string) time.Time {
	t, err := ParseTime(s)
	if err != nil && d.Err == nil {
		d.Err = err
	}
	return t
}

// TimePtr decodes a nullable time column scanned into a *string (nil for NULL).
func (d *Decoder) TimePtr(s *string) *time.Time {
	if s == nil {
		return nil
	}
	t := d.Time(*s)
	return &t
}

// JSON decodes a column written by Encoder.JSON into v.
func (d *Decoder) JSON(s string, v any) {
	if err := json.Unmarshal([]byte(s), v); err != nil && d.Err == nil {
		d.Err = err
	}
}

// ParamsKeys returns the stored encodings (Encoder.JSON) that equal params:
// "null" and "{}" for none, else the one canonical JSON object (map keys
// sorted), for RequestFilter.SameParams.
func ParamsKeys(params map[string]string) ([]string, error) {
	if len(params) == 0 {
		return []string{"null", "{}"}, nil
	}
	var e Encoder
	v := e.JSON("params", params)
	if e.Err != nil {
		return nil, e.Err
	}
	return []string{v.(string)}, nil
}
