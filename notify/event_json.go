package notify

import (
	"errors"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e's JSON to dst: exactly the bytes json.Marshal(e)
// writes, without its reflection, provided e.Details are JSON as json.Marshal
// writes it (valid, compact, with <, > and & escaped), as the audit details
// events carry are (ajar.MarshalAuditDetails): they are copied as they are,
// not checked again (the store refuses an event that is not valid JSON). It
// fails, as json.Marshal does, on a time that RFC 3339 cannot represent (a
// year outside 0-9999); dst is then returned unchanged.
func (e *Event) AppendJSON(dst []byte) ([]byte, error) {
	b := dst
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"time":`...)
	b, err := appendTime(b, e.Time)
	if err != nil {
		return dst, err
	}
	b = append(b, `,"actor":`...)
	b = appendString(b, e.Actor)
	b = append(b, `,"summary":`...)
	b = appendString(b, e.Summary)
	if r := e.Request; r != nil {
		if b, err = r.appendJSON(append(b, `,"request":`...)); err != nil {
			return dst, err
		}
	}
	if len(e.Details) > 0 {
		b = append(b, `,"details":`...)
		b = append(b, e.Details...)
	}
	if len(e.Actions) > 0 {
		b = append(b, `,"actions":[`...)
		for i := range e.Actions {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.Actions[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func (r *Request) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"target":`...)
	b = appendString(b, r.Target)
	b = append(b, `,"requester":`...)
	b = appendString(b, r.Requester)
	b = append(b, `,"reason":`...)
	b = appendString(b, r.Reason)
	if r.Ticket != "" {
		b = append(b, `,"ticket":`...)
		b = appendString(b, r.Ticket)
	}
	b = append(b, `,"duration":`...)
	b = appendString(b, r.Duration)
	b = append(b, `,"policy":`...)
	b = appendString(b, r.Policy)
	b = append(b, `,"state":`...)
	b = appendString(b, r.State)
	var err error
	if r.StartAt != nil {
		if b, err = appendTime(append(b, `,"start_at":`...), *r.StartAt); err != nil {
			return nil, err
		}
	}
	if r.ExpiresAt != nil {
		if b, err = appendTime(append(b, `,"expires_at":`...), *r.ExpiresAt); err != nil {
			return nil, err
		}
	}
	if r.URL != "" {
		b = append(b, `,"url":`...)
		b = appendString(b, r.URL)
	}
	return append(b, '}'), nil
}

func (a *Action) appendJSON(b []byte) []byte {
	b = append(b, `{"label":`...)
	b = appendString(b, a.Label)
	b = append(b, `,"who":`...)
	b = appendString(b, a.Who)
	b = append(b, `,"command":`...)
	b = appendString(b, a.Command)
	if a.URL != "" {
		b = append(b, `,"url":`...)
		b = appendString(b, a.URL)
	}
	return append(b, '}')
}

// appendTime appends t as time.Time's MarshalJSON writes it (a quoted RFC
// 3339 time with its nanoseconds), failing where it fails.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b, err := t.AppendText(append(b, '"'))
	if err != nil {
		return nil, errors.New("json: time: " + err.Error())
	}
	return append(b, '"'), nil
}

// htmlSafe tells the ASCII characters a JSON string holds as they are (with
// <, > and & escaped for HTML).
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string, as json.Marshal writes a string:
// ", \ and control characters escaped (\b, \f, \n, \r and \t short), <, > and
// & escaped for HTML, U+2028 and U+2029 escaped, and each byte of invalid
// UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other control characters, <, > and &
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
