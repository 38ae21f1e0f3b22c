package ajar

import "time"

// TEMP until w-sessions merges.
type AuthFlow struct {
	Kind      string
	KeyHash   []byte
	Data      []byte
	ExpiresAt time.Time
}
