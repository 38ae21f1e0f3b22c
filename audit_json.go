package ajar

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// MarshalJSON writes the hashes in lowercase hex, the encoding the web pages,
// the evidence report and `ajar audit verify` show them in (a []byte field
// would be base64).
func (e AuditEvent) MarshalJSON() ([]byte, error) {
	type plain AuditEvent
	return json.Marshal(struct {
		plain
		PrevHash string `json:"prev_hash"`
		Hash     string `json:"hash"`
	}{plain(e), hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash)})
}

// UnmarshalJSON reads what MarshalJSON writes; it also takes the base64 of
// older servers, so a newer CLI still verifies their log. A hash that is
// neither is an error.
func (e *AuditEvent) UnmarshalJSON(b []byte) error {
	type plain AuditEvent
	var v struct {
		plain
		PrevHash string `json:"prev_hash"`
		Hash     string `json:"hash"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	prev, err := decodeHash(v.PrevHash)
	if err != nil {
		return fmt.Errorf("audit event %d: prev_hash: %w", v.Seq, err)
	}
	h, err := decodeHash(v.Hash)
	if err != nil {
		return fmt.Errorf("audit event %d: hash: %w", v.Seq, err)
	}
	*e = AuditEvent(v.plain)
	e.PrevHash, e.Hash = prev, h
	return nil
}

// decodeHash decodes a hash in hex (a SHA-256 is 64 hex digits), or in
// standard base64; "" is no hash (nil).
func decodeHash(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	if b, err := hex.DecodeString(s); err == nil && len(s) == 2*32 {
		return b, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither hex nor base64", s)
	}
	return b, nil
}
