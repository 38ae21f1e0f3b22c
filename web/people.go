package web

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/ajar-dev/ajar"
)

// peopleValue is an audit detail's value as people read it elsewhere: an
// approval step 1-based (the log keeps the 0-based index, every table and
// `ajar audit` count from 1) and a duration as people type it ("30m", not
// "30m0s"). Any other value is returned as it is.
func peopleValue(key string, v json.RawMessage) json.RawMessage {
	switch key {
	case "step":
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return json.RawMessage(strconv.FormatInt(n+1, 10))
		}
	case "duration", "by":
		var s string
		if json.Unmarshal(v, &s) == nil {
			if d, err := time.ParseDuration(s); err == nil {
				if b, err := json.Marshal(ajar.FormatDuration(d)); err == nil {
					return b
				}
			}
		}
	}
	return v
}
