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

// TestDetailFields: details read as key: value, in the order written, with
// numbers exact and strings unescaped.
func TestDetailFields(t *testing.T) {
	raw := json.RawMessage(`{"serial": 10717434795369787645, "expr": "a \u003c= b", "params": {"source_ip": "127.0.0.1"}, "n": 1.50, "none": null}`)
	got := detailFields(raw)
	want := []detailField{{"serial", "10717434795369787645"}, {"expr", "a <= b"}, {"params", `{"source_ip":"127.0.0.1"}`}, {"n", "1.50"}, {"none", "null"}}
	if len(got) != len(want) {
		t.Fatalf("detailFields = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{`not json`, `[1,2]`, `"text"`, ``} {
		if f := detailFields(json.RawMessage(bad)); f != nil {
			t.Errorf("detailFields(%q) = %v, want nil", bad, f)
		}
	}
}
