package api

import (
	"bytes"
	"mime"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ajar-dev/ajar"
)

// mediaTypeError is an EINVALID error that the server answers with 415
// Unsupported Media Type instead of 400.
type mediaTypeError struct{ err *ajar.Error }

func (e *mediaTypeError) Error() string { return e.err.Error() }
func (e *mediaTypeError) Unwrap() error { return e.err }

// checkContentType refuses a request whose Content-Type header is set to
// anything but application/json (with no parameter but charset=utf-8), so a
// body is never read as JSON when its sender said it was something else (a
// form, text/plain). decodeJSON also refuses a non-empty body with no
// Content-Type at all. The error names the header and is answered with 415.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	ok := err == nil && mt == "application/json"
	for k, v := range params {
		ok = ok && k == "charset" && strings.EqualFold(v, "utf-8")
	}
	if !ok {
		return &mediaTypeError{ajar.FieldErrorf("Content-Type", "must be application/json, not %q", ct)}
	}
	return nil
}

// checkDuplicateKeys refuses a JSON text in which an object, at any depth,
// names a key twice: encoding/json keeps the last one silently, so two
// readers of the same body (a proxy, a log, ajar) could each see a different
// value. The error is EINVALID naming the first duplicate in document order by
// its path (params.db); keys are compared as encoding/json decodes them, so
// "a" and "\u0061" are the same key. Only the first JSON value is read; what
// follows it is the decoder's business. body must be valid JSON for the check
// to be complete; at the first syntax error the check stops and says nothing,
// leaving the error to the decoder, which reports it.
//
// It is one pass over the bytes with an explicit stack instead of recursion,
// never deeper than encoding/json decodes (maxNesting): a body nested deeper
// is not valid JSON to the decoder, and the check stops there.
func checkDuplicateKeys(body []byte) error {
	var d dupScanner
	return d.scan(body)
}

// dupFrame is an open object or array in dupScanner.
type dupFrame struct {
	object bool
	member bool   // the container is the value of an object member
	key    []byte // that member's key (decoded), when member
	keys0  int    // where this object's keys start in dupScanner.keys
	set    map[string]struct{}
}

// maxNesting is encoding/json's limit on nested arrays and objects: its
// decoder refuses a value nested deeper as not valid JSON.
const maxNesting = 10000

// dupLinearKeys is how many keys of one object are compared one by one before
// they are put in a map (a body may hold an object of thousands of keys).
const dupLinearKeys = 16

// dupScanner holds checkDuplicateKeys' state; the zero value is ready.
type dupScanner struct {
	stack []dupFrame
	keys  [][]byte // keys of the open objects, decoded, innermost last
	buf   []byte   // decoded strings that differ from their raw bytes

	// When scan returns nil, what it learnt about the first value, for
	// decodeJSON. end is 0 unless the value is complete and valid: then it is
	// the index just past it, rest the index of the first byte after it that is
	// not JSON whitespace (len(b) if none) and first its first byte.
	end, rest int
	first     byte
	// members, if collect is set and the first value is an object, are its
	// members in document order, each value's bytes without whitespace.
	collect bool
	members []rawMember

	// Room for a typical body, so that scanning it allocates nothing more.
	stackArr   [4]dupFrame
	keysArr    [16][]byte
	membersArr [8]rawMember
}

// rawMember is a member of a JSON object: its key, decoded, and its value.
type rawMember struct {
	key, raw []byte
}

// scan is checkDuplicateKeys(b), noting on the way what decodeJSON needs (end,
// rest, first, members). It is a strict JSON parser (that of encoding/json,
// which takes invalid UTF-8 in strings) run in document order, so it stops at
// the same place, a duplicate or a syntax error, as Decoder.Token would.
func (d *dupScanner) scan(b []byte) error {
	const (
		stValue = iota // a value is expected
		stAfter        // a value has just ended
		stKey          // an object key is expected
	)
	var (
		member bool   // the value that comes next is an object member's
		key    []byte // whose key is this

		rootKey  []byte // the key of the root object's member being read
		valStart int    // where its value starts
	)
	if d.stack == nil {
		d.stack, d.keys, d.members = d.stackArr[:0], d.keysArr[:0], d.membersArr[:0]
	}
	state := stValue
	i := 0
	for {
		prev := i // just past the last value when state is stAfter
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
		if state == stAfter && len(d.stack) == 0 {
			d.end, d.rest = prev, i
			return nil // the first value is complete
		}
		if i >= len(b) {
			return nil // truncated (or empty): the decoder says so
		}
		c := b[i]
		switch state {
		case stValue:
			m, k := member, key
			member, key = false, nil
			switch len(d.stack) {
			case 0:
				d.first = c
			case 1:
				valStart = i
			}
			switch {
			case c == '{' || c == '[':
				if len(d.stack) >= maxNesting {
					// Deeper than encoding/json decodes: not valid JSON to
					// the decoder, which says so; nothing is looked at deeper.
					d.end = 0
					return nil
				}
				i++
				d.stack = append(d.stack, dupFrame{object: c == '{', member: m, key: k, keys0: len(d.keys)})
				state = stValue
				if c == '{' {
					state = stKey
				}
				// An empty container ends at once.
				for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
					i++
				}
				if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
					i++
					d.pop()
					state = stAfter
				}
				continue
			case c == '"':
				i = scanString(b, i)
			case c == '-' || '0' <= c && c <= '9':
				i = scanNumber(b, i)
			case c == 't':
				i = scanLiteral(b, i, "true")
			case c == 'f':
				i = scanLiteral(b, i, "false")
			case c == 'n':
				i = scanLiteral(b, i, "null")
			default:
				i = -1
			}
			if i < 0 {
				return nil // malformed: the decoder says so
			}
			state = stAfter
		case stAfter:
			top := &d.stack[len(d.stack)-1]
			if d.collect && len(d.stack) == 1 && top.object {
				d.members = append(d.members, rawMember{rootKey, b[valStart:prev]})
			}
			switch {
			case c == ',' && top.object:
				state = stKey
			case c == ',':
				state = stValue
			case c == '}' && top.object, c == ']' && !top.object:
				d.pop()
			default:
				return nil
			}
			i++
		case stKey:
			if c != '"' {
				return nil
			}
			end := scanString(b, i)
			if end < 0 {
				return nil
			}
			k := d.decodeString(b[i+1 : end-1])
			if d.seen(k) {
				return ajar.FieldErrorf(d.path(k), "given more than once")
			}
			i = end
			for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
				i++
			}
			if i >= len(b) || b[i] != ':' {
				return nil
			}
			i++
			member, key = true, k
			if len(d.stack) == 1 {
				rootKey = k
			}
			state = stValue
		}
	}
}

// stringMap decodes raw, a JSON object that scan found valid and without
// duplicate keys, as json.Unmarshal decodes one into a nil map[string]string;
// false if a value is not a string (json.Unmarshal must then say why).
func (d *dupScanner) stringMap(raw []byte) (map[string]string, bool) {
	ws := func(i int) int {
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
			i++
		}
		return i
	}
	m := map[string]string{}
	i := ws(1)
	if i < len(raw) && raw[i] == '}' {
		return m, true
	}
	for i < len(raw) && raw[i] == '"' {
		end := scanString(raw, i)
		if end < 0 {
			return nil, false
		}
		k := string(d.decodeString(raw[i+1 : end-1]))
		if i = ws(end); i >= len(raw) || raw[i] != ':' {
			return nil, false
		}
		if i = ws(i + 1); i >= len(raw) || raw[i] != '"' {
			return nil, false
		}
		if end = scanString(raw, i); end < 0 {
			return nil, false
		}
		m[k] = string(d.decodeString(raw[i+1 : end-1]))
		switch i = ws(end); {
		case i < len(raw) && raw[i] == ',':
			i = ws(i + 1)
		case i == len(raw)-1 && raw[i] == '}':
			return m, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// pop closes the innermost container.
func (d *dupScanner) pop() {
	top := d.stack[len(d.stack)-1]
	if top.object {
		clear(d.keys[top.keys0:])
		d.keys = d.keys[:top.keys0]
	}
	d.stack = d.stack[:len(d.stack)-1]
}

// seen reports whether the innermost object already has key k, and adds it.
func (d *dupScanner) seen(k []byte) bool {
	top := &d.stack[len(d.stack)-1]
	keys := d.keys[top.keys0:]
	if top.set != nil {
		if _, ok := top.set[string(k)]; ok {
			return true
		}
		top.set[string(k)] = struct{}{}
		return false
	}
	for _, other := range keys {
		if bytes.Equal(other, k) {
			return true
		}
	}
	d.keys = append(d.keys, k)
	if len(keys)+1 > dupLinearKeys {
		top.set = make(map[string]struct{}, 2*dupLinearKeys)
		for _, other := range d.keys[top.keys0:] {
			top.set[string(other)] = struct{}{}
		}
	}
	return false
}

// path names key k of the innermost object the way the old recursive
// check did: the keys of the enclosing members joined by dots, array
// indexes left out (an empty key adds nothing to an empty path).
func (d *dupScanner) path(k []byte) string {
	path := ""
	add := func(key []byte) {
		if path == "" {
			path = string(key)
		} else {
			path = path + "." + string(key)
		}
	}
	for _, f := range d.stack {
		if f.member {
			add(f.key)
		}
	}
	add(k)
	return path
}

// decodeString returns the string whose JSON text (between the quotes, already
// scanned as valid) is s, decoded exactly as encoding/json decodes a string:
// escapes resolved, a \u surrogate pair joined, a lone surrogate and every
// byte of invalid UTF-8 replaced by U+FFFD. The result may alias s or d.buf.
func (d *dupScanner) decodeString(s []byte) []byte {
	if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return s // nothing to decode
	}
	start := len(d.buf)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				d.buf = append(d.buf, '\b')
			case 'f':
				d.buf = append(d.buf, '\f')
			case 'n':
				d.buf = append(d.buf, '\n')
			case 'r':
				d.buf = append(d.buf, '\r')
			case 't':
				d.buf = append(d.buf, '\t')
			case 'u':
				rr := hex4(s[r+2 : r+6])
				if utf16.IsSurrogate(rr) {
					rr1 := rune(-1)
					if r+12 <= len(s) && s[r+6] == '\\' && s[r+7] == 'u' {
						rr1 = hex4(s[r+8 : r+12])
					}
					if dec := utf16.DecodeRune(rr, rr1); dec != utf8.RuneError {
						d.buf = utf8.AppendRune(d.buf, dec)
						r += 12
						continue
					}
					rr = utf8.RuneError
				}
				d.buf = utf8.AppendRune(d.buf, rr)
				r += 6
				continue
			default: // " \ /
				d.buf = append(d.buf, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			d.buf = append(d.buf, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			d.buf = utf8.AppendRune(d.buf, rr)
			r += size
		}
	}
	return d.buf[start:len(d.buf):len(d.buf)]
}

// hex4 is the value of four hexadecimal digits, -1 if they are not.
func hex4(s []byte) rune {
	var r rune
	for _, c := range s {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// scanString returns the index just past the JSON string starting at b[i]
// (a quote), or -1 if it is not a valid one. Like encoding/json, it takes
// any byte from 0x20 up, valid UTF-8 or not.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || hex4(b[i+1:i+5]) < 0 {
					return -1
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// scanNumber returns the index just past the JSON number starting at b[i],
// or -1 if it is not a valid one (what follows it is not its business).
func scanNumber(b []byte, i int) int {
	digits := func(i int) int { // at least one digit
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i
	}
	if b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if i = digits(i); i < 0 {
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// scanLiteral returns the index just past lit at b[i], or -1.
func scanLiteral(b []byte, i int, lit string) int {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return -1
	}
	return i + len(lit)
}
