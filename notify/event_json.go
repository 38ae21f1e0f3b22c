package notify

import (
	"errors"
	"time"

	"github.com/ajar-dev/ajar/internal/jsonenc"
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
	b = jsonenc.AppendString(b, e.ID)
	b = append(b, `,"type":`...)
	b = jsonenc.AppendString(b, e.Type)
	b = append(b, `,"time":`...)
	b, err := appendTime(b, e.Time)
	if err != nil {
		return dst, err
	}
	b = append(b, `,"actor":`...)
	b = jsonenc.AppendString(b, e.Actor)
	b = append(b, `,"summary":`...)
	b = jsonenc.AppendString(b, e.Summary)
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
	b = jsonenc.AppendString(b, r.ID)
	b = append(b, `,"target":`...)
	b = jsonenc.AppendString(b, r.Target)
	b = append(b, `,"requester":`...)
	b = jsonenc.AppendString(b, r.Requester)
	b = append(b, `,"reason":`...)
	b = jsonenc.AppendString(b, r.Reason)
	if r.Ticket != "" {
		b = append(b, `,"ticket":`...)
		b = jsonenc.AppendString(b, r.Ticket)
	}
	b = append(b, `,"duration":`...)
	b = jsonenc.AppendString(b, r.Duration)
	b = append(b, `,"policy":`...)
	b = jsonenc.AppendString(b, r.Policy)
	b = append(b, `,"state":`...)
	b = jsonenc.AppendString(b, r.State)
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
		b = jsonenc.AppendString(b, r.URL)
	}
	return append(b, '}'), nil
}

func (a *Action) appendJSON(b []byte) []byte {
	b = append(b, `{"label":`...)
	b = jsonenc.AppendString(b, a.Label)
	b = append(b, `,"who":`...)
	b = jsonenc.AppendString(b, a.Who)
	b = append(b, `,"command":`...)
	b = jsonenc.AppendString(b, a.Command)
	if a.URL != "" {
		b = append(b, `,"url":`...)
		b = jsonenc.AppendString(b, a.URL)
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
