package ajar

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"time"
)

// AuditEvent is one entry of the hash-chained audit log. Seq starts at 1 and has no gaps.
type AuditEvent struct {
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`   // user id, or "ajar" for the server itself
	Action   string          `json:"action"`  // e.g. "request.created", "request.expired"
	Subject  string          `json:"subject"` // usually a request id
	Details  json.RawMessage `json:"details,omitempty"`
	PrevHash []byte          `json:"prev_hash"`
	Hash     []byte          `json:"hash"`
}

// ActorSystem is the actor of events the server causes by itself.
const ActorSystem = "ajar"

// ComputeHash returns the SHA-256 chain hash of e: it covers every field but Hash,
// each length-prefixed so no two different events encode the same way. Time is
// hashed in UTC with nanoseconds, so stores must keep it exactly.
func (e *AuditEvent) ComputeHash() []byte {
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	h.Write([]byte("ajar-audit-v1\n"))
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	put([]byte(e.Time.UTC().Format(time.RFC3339Nano)))
	put([]byte(e.Actor))
	put([]byte(e.Action))
	put([]byte(e.Subject))
	put(e.Details)
	put(e.PrevHash)
	return h.Sum(nil)
}
