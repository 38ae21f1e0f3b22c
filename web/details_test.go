package web

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDetailsKeepNumbersExact: audit details on the audit and evidence pages
// show numbers as stored. A certificate serial above 2^53 decoded into a
// float64 would be rounded, and an auditor matching it against sshd's log
// would not find it.
func TestDetailsKeepNumbersExact(t *testing.T) {
	details := funcs["details"].(func(json.RawMessage) string)
	raw := json.RawMessage(`{"serial": 10717434795369787645, "key_id": "ajar:req_x:alice@example.com", "n": 1.50}`)
	got := details(raw)
	for _, want := range []string{`"serial":10717434795369787645`, `"n":1.50`, `"key_id":"ajar:req_x:alice@example.com"`} {
		if !strings.Contains(got, want) {
			t.Errorf("details(%s) = %s, want it to contain %s", raw, got, want)
		}
	}
	if got := details(json.RawMessage(`not json`)); got != "not json" {
		t.Errorf("details of invalid JSON = %q, want it as it is", got)
	}
}
