package ajar

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// TestAuditEventJSONHex: hashes travel as hex, and the base64 of older
// servers still reads; anything else is an error.
func TestAuditEventJSONHex(t *testing.T) {
	prev, h := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	e := AuditEvent{Seq: 2, Actor: "ajar", Action: "x", PrevHash: prev[:], Hash: h[:]}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"hash":"`+hex.EncodeToString(h[:])+`"`) ||
		!strings.Contains(string(b), `"prev_hash":"`+hex.EncodeToString(prev[:])+`"`) {
		t.Fatalf("not hex: %s", b)
	}
	var back AuditEvent
	if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back.Hash, h[:]) || !bytes.Equal(back.PrevHash, prev[:]) || back.Seq != 2 {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	old := `{"seq":2,"prev_hash":"` + base64.StdEncoding.EncodeToString(prev[:]) + `","hash":"` + base64.StdEncoding.EncodeToString(h[:]) + `"}`
	if err := json.Unmarshal([]byte(old), &back); err != nil || !bytes.Equal(back.Hash, h[:]) {
		t.Fatalf("base64 of an older server: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"seq":2,"hash":"not a hash!"}`), &back); err == nil {
		t.Fatal("a hash that is neither hex nor base64 was accepted")
	}
}
