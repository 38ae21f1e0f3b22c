package ajar

import (
	"context"
	"encoding/json"
	"time"
)

// Store is the durable truth of ajar: requests, the audit log, sessions and tokens, keys and issued
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
	// CountRequests counts the requests f selects, stopping at f.Limit when it
	// is positive (0: no bound), so that "more than N?" reads at most N+1.
	// In Update, after the transaction's first write, it sees every write
	// committed before (writers are serialized from their first write on), so
	// a count there is exact even with several replicas.
	CountRequests(ctx context.Context, f RequestFilter) (int, error)
	// CountRequestsEach is CountRequests for each of fs, in one statement (one
	// round trip to a database server): counts[i] is what fs[i] counts.
	CountRequestsEach(ctx context.Context, fs ...RequestFilter) (counts []int, err error)
	// CountByState counts requests in every state that has at least one.
	CountByState(ctx context.Context) (map[State]int, error)
	// NextDue returns the earliest NextAt of any request; ok is false if none has one.
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)

	// ListAudit returns the events f selects in Seq order (descending with
	// f.Newest). An event's requester and target are those of the request its
	// subject names when it was appended.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// AuditHead returns the last event's Seq and Hash; (0, nil) for an empty log.
	AuditHead(ctx context.Context) (seq int64, hash []byte, err error)

	// GetSession returns the session (or API token) whose secret has this SHA-256
	// hash, ended or not, or ENOTFOUND.
	GetSession(ctx context.Context, hash []byte) (*Session, error)
	// GetSessionByID returns a session by its public id, or ENOTFOUND.
	GetSessionByID(ctx context.Context, id string) (*Session, error)
	// ListSessions returns the sessions f selects, newest first (ties by ID,
	// descending).
	ListSessions(ctx context.Context, f SessionFilter) ([]*Session, error)
	// GetIdentity returns what the IdP last said about a user, or ENOTFOUND.
	GetIdentity(ctx context.Context, userID string) (*Identity, error)
	// ListWebAuthnCredentials returns a user's credentials, oldest first.
	ListWebAuthnCredentials(ctx context.Context, userID string) ([]WebAuthnCredential, error)
	// GetKey returns a sealed key by name, or ENOTFOUND.
	GetKey(ctx context.Context, name string) ([]byte, error)
	// ListSSHCerts returns the certificates issued for a request ("" for all) in serial-issue order.
	ListSSHCerts(ctx context.Context, requestID string) ([]SSHCert, error)

	// NextNotification returns the head of sink's queue: its pending
	// notification with the lowest ID, or ENOTFOUND when it has none pending.
	NextNotification(ctx context.Context, sink string) (*Notification, error)
	// ListNotifications returns the notifications f selects, in ID order.
	ListNotifications(ctx context.Context, f NotificationFilter) ([]Notification, error)
	// CountPendingNotifications counts pending notifications by sink; sinks with
	// none are absent from the map.
	CountPendingNotifications(ctx context.Context) (map[string]int, error)

	// GetReview returns the review task of a request, or ENOTFOUND.
	GetReview(ctx context.Context, requestID string) (*ReviewTask, error)
	// ListReviews returns review tasks, most recently opened first (ties by
	// RequestID, descending); with f.OnlyOpen only those not closed.
	ListReviews(ctx context.Context, f ReviewFilter) ([]ReviewTask, error)
	// CountOpenReviews counts review tasks not closed yet.
	CountOpenReviews(ctx context.Context) (int, error)

	// ListExtensions returns a request's extensions in Seq order (none: an
	// empty or nil slice, not an error).
	ListExtensions(ctx context.Context, requestID string) ([]Extension, error)
	// ListPendingExtensions returns every extension waiting for approval
	// (ExtensionPending), of any request, by RequestID then Seq, from an
	// index: its cost grows with the pending extensions, not all of them.
	ListPendingExtensions(ctx context.Context) ([]Extension, error)

	// FindSSHCerts returns every certificate that matches f, in issue order. It has
	// no limit, because a revocation list built from it must be complete; callers
	// bound the result with f.ValidAfter.
	FindSSHCerts(ctx context.Context, f SSHCertFilter) ([]SSHCert, error)
}

// Tx writes the store inside Update.
type Tx interface {
	ReadTx
	// AfterCommit arranges for f to run once fn's writes have committed: in
	// Update's caller, before Update returns nil, in the order AfterCommit
	// was called. If they do not commit (fn fails or panics, or the commit
	// fails), f never runs. Call it from fn only. It is for effects outside
	// the store that must follow a change and never precede it (a line in
	// the server's log, events.Notifier); f must not block.
	AfterCommit(f func())
	// CreateRequest inserts r with Version 1 (set on r). ECONFLICT if r.ID exists.
	CreateRequest(ctx context.Context, r *Request) error
	// CreateRequestCounting is CreateRequest(r) then CountRequestsEach(fs...),
	// whose counts include r, as one call: a store that talks to a database
	// server sends both in one round trip. ECONFLICT (and no counts) if r.ID
	// exists; the Tx stays usable then, as after CreateRequest's.
	CreateRequestCounting(ctx context.Context, r *Request, fs ...RequestFilter) (counts []int, err error)
	// UpdateRequest writes r if the stored Version equals r.Version (compare and
	// swap), then increments r.Version. ECONFLICT if the version differs, ENOTFOUND
	// if the request does not exist.
	UpdateRequest(ctx context.Context, r *Request) error
	// UpdateRequests is UpdateRequest for several requests at once (the
	// scheduler ends a batch of revocations with it), in one statement or
	// round trip where the store can: it writes every r in rs if each stored
	// Version equals its r.Version, then increments each r.Version. If one is
	// stale it returns ECONFLICT, or ENOTFOUND if one does not exist (naming
	// the first such in rs), and writes none of them. rs must not name a
	// request twice (EINVALID). An empty rs writes nothing.
	UpdateRequests(ctx context.Context, rs []*Request) error
	// ClaimDue returns up to limit requests with NextAt <= now, earliest first, after
	// moving each one's NextAt to leaseUntil and incrementing its Version (the
	// fencing token): a worker that dies leaves the request due again at leaseUntil,
	// and a worker that stalls past it cannot write (its Version is stale).
	ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]*Request, error)

	// AppendAudit appends e after the current head: it sets e.Seq, e.PrevHash and
	// e.Hash (with ComputeHash) and returns the stored event. e.Time must be set.
	AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)

	// CreateSession stores a new session. ID, Hash, Kind, UserID, CreatedAt and
	// ExpiresAt are required (else EINVALID). ECONFLICT if its ID or Hash exists.
	// Kind, UserID, Name, CreatedAt and Parent never change.
	CreateSession(ctx context.Context, s Session) error
	// UpdateSession writes s's LastUsedAt, RefreshedAt, Groups, Refresh, MFAAt,
	// ExpiresAt, RevokedAt and RevokedBy, found by ID (ENOTFOUND if none). A
	// revocation sticks: once RevokedAt is set, a later UpdateSession never
	// clears or changes RevokedAt and RevokedBy, whatever s says, so an update
	// made from a copy read before a revocation cannot undo it.
	UpdateSession(ctx context.Context, s Session) error
	// TouchSession sets a session's LastUsedAt to at and changes nothing else
	// (ENOTFOUND if no session has this id).
	TouchSession(ctx context.Context, id string, at time.Time) error
	// ClaimSessionRefresh sets a session's RefreshedAt to at only if it still
	// equals seen (zero: never refreshed), and reports whether it did: of two
	// replicas that saw the same stale groups, one re-reads them from the IdP.
	ClaimSessionRefresh(ctx context.Context, id string, seen, at time.Time) (bool, error)
	// PutIdentity creates or replaces what the IdP said about i.UserID.
	PutIdentity(ctx context.Context, i Identity) error
	// PutAuthFlow stores a sign-in step. Kind and KeyHash are required;
	// ECONFLICT if (Kind, KeyHash) exists. It first deletes every step (of any
	// kind) that has expired at Now, so abandoned steps do not accumulate.
	PutAuthFlow(ctx context.Context, f AuthFlow) error
	// TakeAuthFlow deletes and returns the step (kind, keyHash): each is used
	// once. ENOTFOUND when absent or expired (ExpiresAt at or before Now), so a
	// replayed or stale step is refused; an expired row is deleted too.
	TakeAuthFlow(ctx context.Context, kind string, keyHash []byte) (*AuthFlow, error)
	// PutWebAuthnCredential stores a new credential. ECONFLICT if its ID exists.
	PutWebAuthnCredential(ctx context.Context, c WebAuthnCredential) error
	// UpdateWebAuthnCredential writes c's Data and LastUsedAt, found by user and
	// ID (ENOTFOUND if none).
	UpdateWebAuthnCredential(ctx context.Context, c WebAuthnCredential) error
	// DeleteWebAuthnCredential removes one of a user's credentials (ENOTFOUND if none).
	DeleteWebAuthnCredential(ctx context.Context, userID string, id []byte) error
	// PutKey stores a sealed key under name. ECONFLICT if the name exists (keys are
	// never overwritten).
	PutKey(ctx context.Context, name string, sealed []byte) error
	// InsertSSHCert records an issued certificate. ECONFLICT if the serial exists.
	InsertSSHCert(ctx context.Context, c SSHCert) error

	// EnqueueNotification adds n to the end of n.Sink's queue, pending, with
	// Attempts 0, and sets n.ID, n.State (pending) and n.Version (1). A zero
	// NextAt means CreatedAt. IDs only grow, in commit order: a notification
	// committed later never gets a lower ID than one already visible (a store
	// that allocates IDs before commit, like a Postgres sequence, must
	// serialise enqueues, for example under the lock AppendAudit takes), so
	// that delivery in ID order is the order of the state changes.
	//
	// When n.Key is not empty and the sink already has a notification with
	// that key, in any state, nothing is written and it returns false: keys
	// make an event that a retried transaction or a restarted scheduler may
	// enqueue twice go out once.
	EnqueueNotification(ctx context.Context, n *Notification) (bool, error)
	// UpdateNotification writes n's NextAt, Attempts, LastError, State and
	// DoneAt if the stored Version equals n.Version (compare and swap), then
	// increments n.Version. ECONFLICT if the version differs, ENOTFOUND if it
	// does not exist. The other fields never change.
	UpdateNotification(ctx context.Context, n *Notification) error
	// UpdateNotifications is UpdateNotification for each of ns, in one
	// statement (one round trip to a database server): written[i] reports
	// whether ns[i] was written (and its Version incremented); false where
	// UpdateNotification would have returned ECONFLICT or ENOTFOUND. An
	// unknown state is EINVALID, before anything is written.
	UpdateNotifications(ctx context.Context, ns []*Notification) (written []bool, err error)
	// PruneNotifications deletes up to limit (> 0, else EINVALID) notifications
	// that are delivered or dropped with DoneAt before before, and returns how
	// many it deleted. Pending ones are never deleted.
	PruneNotifications(ctx context.Context, before time.Time, limit int) (int, error)

	// CreateReview opens a review task (r.ClosedAt must be nil). ECONFLICT if
	// the request already has one.
	CreateReview(ctx context.Context, r ReviewTask) error
	// CloseReview closes the open review task of a request, recording who
	// closed it, when and their comment. ENOTFOUND if the request has no
	// review task, ECONFLICT if it is already closed.
	CloseReview(ctx context.Context, requestID, closedBy, comment string, at time.Time) error

	// CreateExtension inserts e with the next Seq of its request (1 for the
	// first) and Version 1, both set on e.
	CreateExtension(ctx context.Context, e *Extension) error
	// UpdateExtension writes e's State, Approvals and DecidedAt if the stored
	// Version equals e.Version (compare and swap), then increments e.Version.
	// ECONFLICT if the version differs, ENOTFOUND if (RequestID, Seq) does
	// not exist. The other fields never change.
	UpdateExtension(ctx context.Context, e *Extension) error

	// AcquireLease takes the lease called name for owner until until and reports
	// whether owner holds it now. It succeeds when nobody holds the lease, when
	// its holder's end is at or before Now (it expired), and when owner holds it
	// already (its end moves to until: a renewal); otherwise it changes nothing
	// and returns false. name and owner must not be empty and until must be after
	// Now, else EINVALID. Leases lock work done outside any transaction (a
	// provider call on access that several requests share) across every replica
	// of one store; the store's clock decides when a lease has expired.
	AcquireLease(ctx context.Context, name, owner string, until time.Time) (bool, error)
	// ReleaseLease ends owner's lease called name and reports whether owner held
	// it. A lease held by another owner (after owner's expired) is left alone.
	ReleaseLease(ctx context.Context, name, owner string) (bool, error)
}

// AuditFilter selects audit events. Zero fields match anything. Every field
// but Action's prefix form and Limit is answered by a store index, so a search
// for one request, user or target does not read the whole log.
type AuditFilter struct {
	AfterSeq int64 // events with Seq > AfterSeq
	// BeforeSeq, when positive, keeps the events with Seq < BeforeSeq (the
	// next page of a newest-first listing).
	BeforeSeq int64
	Subject   string // the event's subject (usually a request id)
	// User keeps the events whose actor is User or whose subject is a request
	// User made (its requester).
	User string
	// Target keeps the events whose subject is a request for this target.
	Target string
	// Action keeps one action ("request.approved"), or, when it ends in ".",
	// every action it prefixes ("request.").
	Action string
	From   time.Time // events at or after From
	To     time.Time // events before To
	// Newest returns the last Limit matches, newest (highest Seq) first,
	// instead of the first Limit in Seq order.
	Newest bool
	Limit  int // 0 means the store's default (1000)
}

// SSHCert records an OpenSSH certificate ajar issued, for revocation lists and
// evidence. In the ssh-cert provider's authorized-keys mode it records a public key
// ajar authorized instead (no certificate is signed; Serial is still unique and
// names it).
type SSHCert struct {
	Serial      uint64    `json:"serial"`
	RequestID   string    `json:"request_id"`
	KeyID       string    `json:"key_id"`
	Principals  []string  `json:"principals"`
	Fingerprint string    `json:"fingerprint"` // SHA256 fingerprint of the certified public key
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	IssuedAt    time.Time `json:"issued_at"`
	// PublicKey is the certified public key in authorized_keys format, without a
	// comment ("ssh-ed25519 AAAA..."); empty for records made before it was kept.
	PublicKey string `json:"public_key,omitempty"`
}

// SSHCertFilter selects certificates in ReadTx.FindSSHCerts. Zero fields match
// anything.
type SSHCertFilter struct {
	// ValidAfter keeps the certificates whose ValidBefore is after it.
	ValidAfter time.Time
	// RequestStates keeps the certificates whose request is in one of these
	// states. A certificate whose request does not exist matches no state.
	RequestStates []State
	// Fingerprint keeps the certificates of one public key (SSHCert.Fingerprint).
	Fingerprint string
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

// NotificationState is where a notification is in its sink's queue.
type NotificationState string

// Notification states.
const (
	NotificationPending   NotificationState = "pending"   // not delivered yet; retried with backoff
	NotificationDelivered NotificationState = "delivered" // the sink accepted it
	NotificationDropped   NotificationState = "dropped"   // given up after retrying for too long (audited)
)

// Notification is one event for one sink in the outbox. It is enqueued in the
// transaction of the state change it reports and delivered by a worker, one
// sink's notifications in ID order, each until the sink accepts it.
type Notification struct {
	ID   int64
	Sink string
	// Key, when not empty, is unique per sink (see EnqueueNotification).
	Key string
	// Event is the event exactly as it is delivered (JSON), fixed when enqueued.
	// Stores must return it equal as JSON.
	Event     []byte
	CreatedAt time.Time
	// NextAt is the earliest time of the next delivery attempt: the backoff
	// after a failure, or the lease of the worker delivering it now.
	NextAt    time.Time
	Attempts  int
	LastError string
	State     NotificationState
	DoneAt    *time.Time // when it was delivered or dropped
	Version   int64      // compare-and-swap token
}

// NotificationFilter selects notifications. Zero fields match anything.
type NotificationFilter struct {
	Sink  string
	State NotificationState
	Limit int // 0 means the store's default (1000)
}

// ReviewTask is the after-the-fact review of a break-glass request: open until
// an admin closes it with a comment.
type ReviewTask struct {
	RequestID string     `json:"request_id"`
	Kind      string     `json:"kind"` // "breakglass"
	Requester string     `json:"requester"`
	Target    string     `json:"target"`
	Reason    string     `json:"reason"`
	OpenedAt  time.Time  `json:"opened_at"`
	ClosedAt  *time.Time `json:"closed_at,omitempty"`
	ClosedBy  string     `json:"closed_by,omitempty"`
	Comment   string     `json:"comment,omitempty"`
}

// ReviewFilter selects review tasks.
type ReviewFilter struct {
	OnlyOpen bool
	Limit    int // 0 means the store's default (1000)
	// After, when set, keeps only the tasks after it in list order (opened
	// earlier, or at the same time with a smaller RequestID): keyset paging.
	After *ReviewKey
}

// ReviewKey is a review task's place in list order: most recently opened
// first, then greatest RequestID first.
type ReviewKey struct {
	OpenedAt  time.Time
	RequestID string
}

// ExtensionState is the state of an extension of a request's window.
type ExtensionState string

// Extension states.
const (
	ExtensionPending ExtensionState = "pending" // waiting for approval
	ExtensionApplied ExtensionState = "applied" // the window was extended
	ExtensionDenied  ExtensionState = "denied"  // an approver said no
)

// Extension is a request to lengthen an active request's window by By.
type Extension struct {
	RequestID   string         `json:"request_id"`
	Seq         int            `json:"seq"` // 1 for a request's first extension
	By          time.Duration  `json:"-"`
	Reason      string         `json:"reason,omitempty"`
	RequestedBy string         `json:"requested_by"`
	RequestedAt time.Time      `json:"requested_at"`
	State       ExtensionState `json:"state"`
	Approvals   []Approval     `json:"approvals"`
	DecidedAt   *time.Time     `json:"decided_at,omitempty"` // applied or denied
	Version     int64          `json:"-"`
}

// MarshalJSON writes By in Go syntax ("30m"), as users write it.
func (e Extension) MarshalJSON() ([]byte, error) {
	type plain Extension
	return json.Marshal(struct {
		plain
		By string `json:"by"`
	}{plain(e), e.By.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Extension) UnmarshalJSON(b []byte) error {
	type plain Extension
	var v struct {
		plain
		By string `json:"by"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Extension(v.plain)
	if v.By != "" {
		d, err := time.ParseDuration(v.By)
		if err != nil {
			return err
		}
		e.By = d
	}
	return nil
}
