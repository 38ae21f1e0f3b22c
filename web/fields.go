package web

import (
	"bytes"
	"encoding/json"
)

// detailField is one top-level key of an audit event's details, for people:
// the key and its value as text.
type detailField struct{ Key, Value string }

// detailFields returns an audit event's details as key: value pairs in the
// order they were written: strings as they are (no quotes, no \u003c escapes),
// numbers exactly as stored (never through float64; see details), anything
// nested as compact JSON. nil when the details are not a JSON object, so the
// page shows them as they are.
func detailFields(raw json.RawMessage) []detailField {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var out []detailField
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		out = append(out, detailField{Key: k, Value: detailValue(peopleValue(k, v))})
	}
	return out
}

func detailValue(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return "null" // (Unmarshal would turn it into "")
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}
