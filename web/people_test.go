package web

import (
	"encoding/json"
	"testing"
)

// TestDetailFieldsForPeople: an approval step reads 1-based on the audit and
// evidence pages, as in every table and `ajar audit`, and a duration as
// people type it.
func TestDetailFieldsForPeople(t *testing.T) {
	got := detailFields(json.RawMessage(`{"comment": "go", "step": 0, "duration": "30m0s", "by": "1h0m0s"}`))
	want := []detailField{{"comment", "go"}, {"step", "1"}, {"duration", "30m"}, {"by", "1h"}}
	if len(got) != len(want) {
		t.Fatalf("detailFields = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %v, want %v", i, got[i], want[i])
		}
	}
}
