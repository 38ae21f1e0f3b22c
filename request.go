package ajar

import (
	"encoding/json"
	"time"
)

// State is the state of a request. See docs/architecture.md, "Request states".
type State string

// Request states.
const (
	StatePending      State = "pending"       // waiting for approvals
	StateApproved     State = "approved"      // approved; the grant is due at the start time
	StateActive       State = "active"        // the provider confirmed the access exists
	StateRevoking     State = "revoking"      // the access is being removed
	StateExpired      State = "expired"       // ran its time; the provider confirmed removal
	StateRevoked      State = "revoked"       // ended early; the provider confirmed removal
	StateDenied       State = "denied"        // an approver said no, or the policy's conditions did when the grant came due
	StateCancelled    State = "cancelled"     // the requester withdrew it before it was granted
	StateTimedOut     State = "timed_out"     // no decision before the approval timeout
	StateGrantFailed  State = "grant_failed"  // the provider could not create the access (and any partial access was removed)
	StateRevokeFailed State = "revoke_failed" // removal keeps failing; retried on a slow timer forever
)

// States lists every state, in lifecycle order.
var States = []State{
	StatePending, StateApproved, StateActive, StateRevoking, StateExpired, StateRevoked,
	StateDenied, StateCancelled, StateTimedOut, StateGrantFailed, StateRevokeFailed,
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// Terminal reports whether no further transition can happen from s.
func (s State) Terminal() bool {
	switch s {
	case StateExpired, StateRevoked, StateDenied, StateCancelled, StateTimedOut, StateGrantFailed:
		return true
	}
	return false
}

// transitions is the request state machine: the only moves the broker may make.
var transitions = map[State][]State{
	StatePending:      {StateApproved, StateDenied, StateCancelled, StateTimedOut},
	StateApproved:     {StateActive, StateCancelled, StateRevoking, StateDenied},
	StateActive:       {StateRevoking},
	StateRevoking:     {StateExpired, StateRevoked, StateGrantFailed, StateRevokeFailed},
	StateRevokeFailed: {StateExpired, StateRevoked, StateGrantFailed},
}

// CanTransition reports whether a request may move from one state to another.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// EndReason says why a request that is being revoked ends, and so which final state
// it reaches once the provider confirms the access is gone.
type EndReason string

// End reasons.
const (
	EndExpired     EndReason = "expired"      // the window ran out
	EndRevoked     EndReason = "revoked"      // someone ended it early
	EndGrantFailed EndReason = "grant_failed" // the grant failed; partial access is being cleaned up
)

// FinalState returns the state a revoking request reaches once removal is confirmed.
func (r EndReason) FinalState() State {
	switch r {
	case EndRevoked:
		return StateRevoked
	case EndGrantFailed:
		return StateGrantFailed
	default:
		return StateExpired
	}
}

// Request is a person's ask for access to a target.
type Request struct {
	ID        string            `json:"id"`
	Target    string            `json:"target"`
	Requester string            `json:"requester"`
	Reason    string            `json:"reason"`
	Ticket    string            `json:"ticket,omitempty"`
	Duration  time.Duration     `json:"-"`
	Params    map[string]string `json:"params,omitempty"`
	Policy    string            `json:"policy"` // name of the policy rule that admitted it
	State     State             `json:"state"`
	EndReason EndReason         `json:"end_reason,omitempty"`

	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	StartAt          *time.Time `json:"start_at,omitempty"`     // requested start; nil means at approval
	ApprovalDeadline time.Time  `json:"approval_deadline"`      // pending past this becomes timed_out
	ActivatedAt      *time.Time `json:"activated_at,omitempty"` // when the grant intent was committed
	ExpiresAt        *time.Time `json:"expires_at,omitempty"`   // set when the grant intent is committed
	EndedAt          *time.Time `json:"ended_at,omitempty"`     // when a final state was reached

	Approvals []Approval `json:"approvals"`

	// Handle is what the provider created (or, with empty Data, the intent written
	// before Grant was called). Nil until the grant intent is committed.
	Handle *Handle `json:"grant,omitempty"`

	// Scheduler bookkeeping, kept in the store so a restart loses nothing.
	NextAt    *time.Time `json:"-"`                    // when the scheduler must look at this request next; nil when terminal
	Attempts  int        `json:"attempts"`             // provider attempts for the current grant or revoke
	LastError string     `json:"last_error,omitempty"` // last provider error, safe to show
	Version   int64      `json:"-"`                    // compare-and-swap token, bumped by every update
}

// MarshalJSON adds the duration in Go syntax, which is how users write it.
func (r Request) MarshalJSON() ([]byte, error) {
	type plain Request
	return json.Marshal(struct {
		plain
		Duration string `json:"duration"`
	}{plain(r), FormatDuration(r.Duration)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Request) UnmarshalJSON(b []byte) error {
	type plain Request
	var v struct {
		plain
		Duration string `json:"duration"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Request(v.plain)
	if v.Duration != "" {
		d, err := time.ParseDuration(v.Duration)
		if err != nil {
			return err
		}
		r.Duration = d
	}
	return nil
}

// Approval is one approver's decision on a request.
type Approval struct {
	Approver string    `json:"approver"`
	Step     int       `json:"step"`     // index into the policy's approval steps
	Decision string    `json:"decision"` // "approve" or "deny"
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
}

// Decisions an approver can make.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// RequestFilter selects requests in Store.ListRequests. Zero fields match anything.
type RequestFilter struct {
	Requester string
	States    []State
	Target    string
	Limit     int // 0 means the store's default (1000)
	// CreatedSince, when not zero, keeps the requests created at or after it.
	CreatedSince time.Time
	// After, when set, keeps only the requests that come after it in list order
	// (created earlier, or at the same time with a smaller ID): the key of the
	// last request of a page selects the next page (keyset paging).
	After *RequestKey
	// SameParams, when true, keeps only the requests whose Params equal Params
	// (no params and an empty map are equal). With Requester, Target and States
	// it is one index lookup ("ajar ssh" finding a request to reuse).
	SameParams bool
	Params     map[string]string
}

// RequestKey is a request's place in list order, which is newest CreatedAt
// first and, among requests created at the same time, greatest ID first.
type RequestKey struct {
	CreatedAt time.Time
	ID        string
}

// Key returns r's place in list order.
func (r *Request) Key() RequestKey { return RequestKey{CreatedAt: r.CreatedAt, ID: r.ID} }
