package jsonenc

import (
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"time"
)

// maxDepth is how deep AppendValue follows nested maps and slices before it
// gives up. json.Marshal reports a cycle (a map holding itself) only after
// 1000 levels; giving up far earlier leaves such values, and any deep one,
// to json.Marshal, so its error (or its bytes) are what the caller gets.
const maxDepth = 32

// AppendValue appends v's JSON to dst exactly as json.Marshal(v) writes it,
// without reflection, for the shapes audit details take: nil, string, bool,
// int, int32, int64, uint32, uint64, time.Duration (a number of
// nanoseconds), float64, time.Time, *time.Time, []string, []any,
// map[string]string, map[string]any (keys sorted) and json.RawMessage; and,
// with a little reflection, named types of the basic kinds without JSON or
// text methods (ajar.EndReason). ok is false, and dst returned unchanged,
// for anything else (a struct, another pointer, a float32, a type with a
// MarshalJSON or MarshalText method other than time.Time, values nested
// deeper than it follows) and for any value json.Marshal refuses or might (a
// NaN, a time outside years 0-9999, a RawMessage that is not JSON): the
// caller then encodes the whole of v with json.Marshal, which writes the same
// bytes or the error.
func AppendValue(dst []byte, v any) (b []byte, ok bool) {
	b, ok = appendValue(dst, v, 0)
	if !ok {
		return dst, false
	}
	return b, true
}

func appendValue(b []byte, v any, depth int) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return AppendString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int32:
		return strconv.AppendInt(b, int64(v), 10), true
	case uint64:
		return strconv.AppendUint(b, v, 10), true
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), true
	case time.Duration: // no MarshalJSON or MarshalText: an int64 to json.Marshal
		return strconv.AppendInt(b, int64(v), 10), true
	case float64:
		return appendFloat(b, v)
	case time.Time:
		return appendTime(b, v)
	case *time.Time:
		if v == nil {
			return append(b, "null"...), true
		}
		return appendTime(b, *v)
	case json.RawMessage:
		return appendRaw(b, v)
	case []string:
		if v == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, s)
		}
		return append(b, ']'), true
	case []any:
		if v == nil {
			return append(b, "null"...), true
		}
		if depth >= maxDepth {
			return b, false
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValue(b, e, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]string:
		if v == nil {
			return append(b, "null"...), true
		}
		var buf [16]string
		b = append(b, '{')
		for i, k := range sortedKeys(v, buf[:0]) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(AppendString(b, k), ':')
			b = AppendString(b, v[k])
		}
		return append(b, '}'), true
	case map[string]any:
		if v == nil {
			return append(b, "null"...), true
		}
		if depth >= maxDepth {
			return b, false
		}
		var buf [16]string
		b = append(b, '{')
		for i, k := range sortedKeys(v, buf[:0]) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(AppendString(b, k), ':')
			var ok bool
			if b, ok = appendValue(b, v[k], depth+1); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	}
	return appendNamed(b, v)
}

var (
	numberType        = reflect.TypeFor[json.Number]()
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// appendNamed writes a value of a named type of a basic kind (the string
// kinds like ajar.EndReason, a named int) as json.Marshal does: as its
// underlying value, provided the type has no MarshalJSON or MarshalText
// method (on its value or its pointer) and is not json.Number, which
// json.Marshal writes otherwise. Any other type is left to json.Marshal.
func appendNamed(b []byte, v any) ([]byte, bool) {
	rv := reflect.ValueOf(v)
	t := rv.Type()
	if t == numberType {
		return b, false
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr, reflect.Float64:
	default:
		return b, false
	}
	if p := reflect.PointerTo(t); p.Implements(marshalerType) || p.Implements(textMarshalerType) {
		return b, false
	}
	switch t.Kind() {
	case reflect.String:
		return AppendString(b, rv.String()), true
	case reflect.Bool:
		return strconv.AppendBool(b, rv.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(b, rv.Int(), 10), true
	case reflect.Float64:
		return appendFloat(b, rv.Float())
	}
	return strconv.AppendUint(b, rv.Uint(), 10), true
}

// sortedKeys returns m's keys in the order json.Marshal writes them: by
// their bytes (strings.Compare), before any escaping.
func sortedKeys[V any](m map[string]V, keys []string) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendFloat writes f as json.Marshal writes a float64 (like ES6: %f, or
// %e with an unpadded exponent outside [1e-6, 1e21)); NaN and the infinities
// it refuses.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 -> e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// appendTime writes t as time.Time.MarshalJSON does (RFC 3339 with its
// nanoseconds, quoted); where it fails (a year outside 0-9999, an offset of
// a day or more) ok is false.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	out, err := t.AppendText(append(b, '"'))
	if err != nil {
		return b, false
	}
	return append(out, '"'), true
}

// appendRaw writes raw as json.Marshal writes a json.RawMessage: nil is
// null; otherwise raw must be JSON (ok is false if not), and is written
// compact (no white space between tokens) with <, >, &, U+2028 and U+2029
// escaped, as encoding/json's compact with HTML escaping does.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	if !json.Valid(raw) {
		return b, false
	}
	inString, escaped := false, false
	start := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '<' || c == '>' || c == '&':
			b = append(b, raw[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			start = i + 1
		case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xA8:
			b = append(b, raw[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[raw[i+2]&0xf])
			i += 2
			start = i + 1
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			b = append(b, raw[start:i]...)
			start = i + 1
		}
	}
	return append(b, raw[start:]...), true
}
