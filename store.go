package ajar

import (
	"context"
	"time"
)

// Store is the durable truth of ajar: requests, the audit log, tokens, keys and issued
// certificates. It is dumb on purpose: policy and the state machine live in broker.
//
// Every state change and its audit event are written in one Update call, so they
// commit together or not at all.
type Store interface {
	// Update runs fn in one write transaction. Nothing fn wrote is committed if it
	// returns an error (which Update returns unchanged). fn may be retried by the
	// store only if it has not run yet.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction with a consistent snapshot.
	View(ctx context.Context, fn func(ReadTx) error) error
	Close() error
}

// ReadTx reads the store inside View or Update.
type ReadTx interface {
	// Now is the store's clock, fixed for the whole transaction. Expiry is always
	// decided with it (one clock, even with several replicas).
	Now() time.Time

	// GetRequest returns ENOTFOUND if the request does not exist.
	GetRequest(ctx context.Context, id string) (*Request, error)
	// ListRequests returns matching requests, newest first.
	ListRequests(ctx context.Context, f RequestFilter) ([]*Request, error)
	// CountByState counts requests in every state that has at least one.
	CountByState(ctx context.Context) (map[State]int, error)
	// NextDue returns the earliest NextAt of any request; ok is false if none has one.
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)

	// ListAudit returns events with Seq > f.AfterSeq in Seq order.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// AuditHead returns the last event's Seq and Hash; (0, nil) for an empty log.
	AuditHead(ctx context.Context) (seq int64, hash []byte, err error)

	// GetToken returns the token with this SHA-256 hash, or ENOTFOUND.
	GetToken(ctx context.Context, hash []byte) (*Token, error)
	// GetKey returns a sealed key by name, or ENOTFOUND.
	GetKey(ctx context.Context, name string) ([]byte, error)
	// ListSSHCerts returns the certificates issued for a request ("" for all) in serial-issue order.
	ListSSHCerts(ctx context.Context, requestID string) ([]SSHCert, error)
}

// Tx writes the store inside Update.
type Tx interface {
	ReadTx
	// CreateRequest inserts r with Version 1 (set on r). ECONFLICT if r.ID exists.
	CreateRequest(ctx context.Context, r *Request) error
	// UpdateRequest writes r if the stored Version equals r.Version (compare and
	// swap), then increments r.Version. ECONFLICT if the version differs, ENOTFOUND
	// if the request does not exist.
	UpdateRequest(ctx context.Context, r *Request) error
	// ClaimDue returns up to limit requests with NextAt <= now, earliest first, after
	// moving each one's NextAt to leaseUntil and incrementing its Version (the
	// fencing token): a worker that dies leaves the request due again at leaseUntil,
	// and a worker that stalls past it cannot write (its Version is stale).
	ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*Request, error)

	// AppendAudit appends e after the current head: it sets e.Seq, e.PrevHash and
	// e.Hash (with ComputeHash) and returns the stored event. e.Time must be set.
	AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)

	// CreateToken stores a token hash. ECONFLICT if the hash exists.
	CreateToken(ctx context.Context, t Token) error
	// PutKey stores a sealed key under name. ECONFLICT if the name exists (keys are
	// never overwritten).
	PutKey(ctx context.Context, name string, sealed []byte) error
	// InsertSSHCert records an issued certificate. ECONFLICT if the serial exists.
	InsertSSHCert(ctx context.Context, c SSHCert) error
}

// AuditFilter selects audit events. Zero fields match anything.
type AuditFilter struct {
	AfterSeq int64
	Subject  string
	Limit    int // 0 means the store's default (1000)
}

// Token is an API token as stored: only its SHA-256 hash, never the token.
type Token struct {
	Hash      []byte
	UserID    string
	Name      string
	CreatedAt time.Time
}

// SSHCert records an OpenSSH certificate ajar issued, for revocation lists and evidence.
type SSHCert struct {
	Serial      uint64    `json:"serial"`
	RequestID   string    `json:"request_id"`
	KeyID       string    `json:"key_id"`
	Principals  []string  `json:"principals"`
	Fingerprint string    `json:"fingerprint"` // SHA256 fingerprint of the certified public key
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	IssuedAt    time.Time `json:"issued_at"`
}

// KeyStore reads and writes sealed keys, each in its own transaction.
type KeyStore interface {
	GetKey(ctx context.Context, name string) ([]byte, error)
	PutKey(ctx context.Context, name string, sealed []byte) error
}

// StoreKeys adapts a Store to a KeyStore.
func StoreKeys(s Store) KeyStore { return storeKeys{s} }

type storeKeys struct{ s Store }

func (k storeKeys) GetKey(ctx context.Context, name string) (b []byte, err error) {
	err = k.s.View(ctx, func(tx ReadTx) error {
		b, err = tx.GetKey(ctx, name)
		return err
	})
	return b, err
}

func (k storeKeys) PutKey(ctx context.Context, name string, sealed []byte) error {
	return k.s.Update(ctx, func(tx Tx) error { return tx.PutKey(ctx, name, sealed) })
}
