package ajar

import "time"

// TEMP until w-sessions merges.
type AuthFlow struct {
	Kind      string
	KeyHash   []byte
	Data      []byte
	ExpiresAt time.Time
}

type WebAuthnCredential struct {
	UserID                string
	ID                    []byte
	Name                  string
	Data                  []byte
	CreatedAt, LastUsedAt time.Time
}
