// Package broker is ajar's core: it evaluates policy, moves requests through the
// state machine, calls providers and schedules expiry. Stores and handlers call it;
// it calls stores and providers only through their interfaces.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/events"
	"github.com/ajar-dev/ajar/internal/throttle"
	"github.com/ajar-dev/ajar/policy"
)

// Providers finds the provider for a target. Grants use today's config; revocations
// rebuild the provider from the config saved in the handle, so they never depend on
// today's config.
type Providers interface {
	// ForTarget returns the provider configured for a target, or ENOTFOUND.
	ForTarget(target string) (ajar.Provider, error)
	// ForHandle returns a provider able to revoke h.
	ForHandle(h ajar.Handle) (ajar.Provider, error)
	// Kind returns the provider type name of a configured target ("ssh-cert").
	Kind(target string) (string, error)
}

// Config is what a Service needs.
type Config struct {
	Store     ajar.Store
	Policy    *policy.Policy
	Providers Providers
	Logger    *slog.Logger
	Metrics   *Metrics
	Scheduler SchedulerConfig
	// Notify configures event notifications (see events.NotifyConfig); zero: none.
	Notify events.NotifyConfig
	// Now is the clock for checks made outside a store transaction; it must be the
	// store's clock (the composition root passes the same function to both).
	Now func() time.Time
	// Users is the user directory: who a user id is when that user is not the
	// caller (the requester re-checked at decision and grant time, orphan
	// reports, explain --as). ok is false for a user nobody knows. nil: the
	// policy file's static users (identity.Service.Lookup adds the IdP's).
	Users func(ctx context.Context, id string) (u ajar.User, ok bool, err error)
}

// Service is ajar's core. Its methods are safe for concurrent use.
type Service struct {
	store     ajar.Store
	pol       *policy.Policy
	providers Providers
	log       *slog.Logger
	metrics   *Metrics
	sched     SchedulerConfig
	notify    *events.Notifier // the outbox write in the audit write's transaction (audit)
	kick      chan struct{}
	now       func() time.Time
	users     func(ctx context.Context, id string) (ajar.User, bool, error)
	limitLog  throttle.Throttle // limits.go: refusals logged once a minute
	ends      writeBatch        // scheduler.go: the ends of revocations, written in batches
	// nextLook is when Run looks at the store next by itself, in the store's
	// time (Unix nanoseconds), or 0 while it is looking or has no plan: a
	// change due before then kicks it (kickFor), others need not.
	nextLook atomic.Int64
}

// New returns a Service. Call Run to start its scheduler.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Policy == nil || cfg.Providers == nil {
		return nil, errors.New("broker: Store, Policy and Providers are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Users == nil {
		pol := cfg.Policy
		cfg.Users = func(_ context.Context, id string) (ajar.User, bool, error) {
			u, ok := pol.User(id)
			return u, ok, nil
		}
	}
	return &Service{
		store:     cfg.Store,
		pol:       cfg.Policy,
		providers: cfg.Providers,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		sched:     cfg.Scheduler.withDefaults(),
		notify: events.NewNotifier(cfg.Notify, cfg.Providers.Kind, func(name string) bool {
			rule, ok := cfg.Policy.Rule(name)
			return ok && rule.Extend != nil
		}),
		kick:  make(chan struct{}, 1),
		now:   cfg.Now,
		users: cfg.Users,
	}, nil
}

// Policy returns the policy the service enforces.
func (s *Service) Policy() *policy.Policy { return s.pol }

// WhoAmI returns u with whether it is an admin.
func (s *Service) WhoAmI(ctx context.Context, u ajar.User) (ajar.Caller, error) {
	return ajar.Caller{User: u, Admin: s.pol.IsAdmin(u)}, nil
}

// newRequestID returns "req_" and 20 characters: the low 40 bits of the
// Unix time in milliseconds, then 60 random bits, in a base32 alphabet whose
// text order is its value order. IDs made later sort later, so a request and
// the rows about it (its audit events, certificates) are added at the end of
// their indexes, where the rows of the requests made just before already are:
// a commit writes a few index pages for them all, not one page per request
// for each index keyed by request (random IDs spread them over the whole
// index). The random part keeps IDs unguessable; the time they show is the
// request's created_at anyway.
func newRequestID() string {
	return "req_" + timeOrderedID(time.Now())
}

// sortable is a base32 alphabet in ASCII order (Crockford's, lower case).
var sortable = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

func timeOrderedID(now time.Time) string {
	var b [13]byte // 100 bits used: 40 of time, 60 random
	ms := uint64(now.UnixMilli())
	b[0], b[1], b[2], b[3], b[4] = byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	if _, err := rand.Read(b[5:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return sortable.EncodeToString(b[:])[:20]
}

// CreateRequest validates a request against policy and stores it, with its audit
// events, in one transaction. A request that is auto-approved and due now is granted
// before CreateRequest returns, so the caller usually sees it active.
func (s *Service) CreateRequest(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error) {
	r, _, err := s.CreateRequestThen(ctx, u, in, nil)
	return r, err
}

// OnActive runs inside the transaction that creates a request when the request
// is active at its commit (see CreateRequestThen). Its error aborts the whole
// creation: nothing is stored.
type OnActive func(ctx context.Context, tx ajar.Tx, r *ajar.Request) error

// CreateRequestThen is CreateRequest, and when the request is auto-approved,
// due now and its provider grants locally (ajar.LocalGranter), it is granted
// and activated in the creating transaction and then runs there too: the
// request, its approval, grant, activation, what then writes and every audit
// event are one commit. ranThen reports whether then ran; when it did not, a
// request that came back active was granted by a provider call after the
// commit, and the caller does what then would have done on its own.
func (s *Service) CreateRequestThen(ctx context.Context, u ajar.User, in ajar.CreateInput, then OnActive) (_ *ajar.Request, ranThen bool, err error) {
	d, err := in.Validate()
	if err != nil {
		return nil, false, err
	}
	if in.SSHPublicKey != "" {
		return nil, false, ajar.FieldErrorf("ssh_public_key", "certificates are issued by package sshaccess, not here")
	}
	now := s.now()
	if err := ajar.CheckStart(in.Start, now); err != nil {
		return nil, false, err
	}
	dec, err := s.pol.Evaluate(u, policy.Input{
		Target: in.Target, Duration: d, Reason: in.Reason, Ticket: in.Ticket,
		Params: in.Params, Start: in.Start, Now: now,
	})
	if err != nil {
		return nil, false, err
	}
	if err := s.CheckParams(in.Target, in.Params); err != nil { // workflow.go
		return nil, false, err
	}

	r := &ajar.Request{
		ID: newRequestID(), Target: in.Target, Requester: u.ID, Reason: in.Reason,
		Ticket: in.Ticket, Duration: dec.Duration, Params: in.Params, Policy: dec.Rule.Name,
		State: ajar.StatePending, Approvals: []ajar.Approval{},
	}
	if in.Start != nil {
		st := in.Start.UTC()
		r.StartAt = &st
	}
	var heldAt time.Time
	var activated bool
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		heldAt, activated = time.Time{}, false
		now := tx.Now()
		r.CreatedAt, r.UpdatedAt = now, now
		r.ApprovalDeadline = now.Add(dec.ApprovalTimeout)
		r.NextAt = ptr(pendingNextAt(r, dec.Rule, now))
		details := map[string]any{
			"target": r.Target, "duration": r.Duration.String(), "reason": r.Reason,
			"ticket": r.Ticket, "params": r.Params, "policy": r.Policy,
		}
		if r.StartAt != nil {
			details["start"] = r.StartAt
		}
		// An auto-approved request due now gets its grant intent, and its
		// access when its provider grants locally, before it is stored: the
		// request row is written once, in its state at the commit.
		var grantDetails, activeDetails map[string]any
		if dec.AutoApprove {
			r.State = ajar.StateApproved
			r.NextAt = ptr(grantDueAt(r, now))
			if !r.NextAt.After(now) {
				s.hold(r, now)
				heldAt = now
				var err error
				if grantDetails, err = s.prepareGrant(r, now); err != nil {
					return err
				}
				if activated, activeDetails, err = s.grantLocally(ctx, r, now); err != nil {
					return err
				}
			}
		}
		if err := s.createWithinLimits(ctx, tx, r); err != nil {
			return err
		}
		if err := s.auditStored(ctx, tx, u.ID, "request.created", r, details); err != nil {
			return err
		}
		if dec.AutoApprove {
			if err := s.auditStored(ctx, tx, ajar.ActorSystem, "request.approved", r,
				map[string]any{"auto_approve": dec.AutoApproveExpr}); err != nil {
				return err
			}
			if grantDetails != nil {
				if err := s.audit(ctx, tx, ajar.ActorSystem, "grant.started", r.ID, grantDetails); err != nil {
					return err
				}
			}
			if !activated {
				return nil
			}
			if err := s.audit(ctx, tx, ajar.ActorSystem, "request.activated", r.ID, activeDetails); err != nil || then == nil {
				return err
			}
			return then(ctx, tx, r)
		}
		if dec.AutoApproveErr != nil {
			return s.audit(ctx, tx, ajar.ActorSystem, "policy.condition_error", r.ID,
				map[string]any{"auto_approve": dec.AutoApproveExpr, "error": dec.AutoApproveErr.Error()})
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("create request: %w", err)
	}
	s.metrics.created.Inc()
	if activated {
		// Granted in the commit: r is what was stored, nothing to re-read.
		s.kickFor(r.NextAt)
		return r, then != nil, nil
	}
	if !heldAt.IsZero() {
		s.runHeld(r, heldAt)
		r, err = s.getRequest(ctx, r.ID)
		return r, false, err
	}
	s.kickFor(r.NextAt)
	return r, false, nil
}

// grantLocally grants r, whose grant intent prepareGrant has just set, and
// makes it active when its provider grants locally (ajar.LocalGranter) and its
// access is not shared; it reports whether it did, with the details of the
// request.activated event the caller appends. Anything else, including a
// Grant error, is left to the scheduler's grant after the commit, which calls
// the provider again, retries and audits a failure.
func (s *Service) grantLocally(ctx context.Context, r *ajar.Request, now time.Time) (bool, map[string]any, error) {
	if r.Handle == nil || r.State != ajar.StateApproved {
		return false, nil, nil // a later start: only rescheduled
	}
	prov, err := s.providers.ForHandle(*r.Handle)
	if err != nil {
		return false, nil, nil
	}
	lg, ok := prov.(ajar.LocalGranter)
	if _, shared := prov.(ajar.Sharer); !ok || shared || !lg.GrantsLocally() {
		return false, nil, nil
	}
	h, err := lg.Grant(ctx, r.Handle.Grant)
	if err != nil {
		return false, nil, nil
	}
	if err := transition(r, ajar.StateActive, now); err != nil {
		return false, nil, err
	}
	r.Handle = &h
	r.NextAt = s.activeNextAt(r, now) // expiry, or the expiry reminder before it
	r.Attempts, r.LastError = 0, ""
	return true, map[string]any{"expires_at": r.ExpiresAt, "handle": h.Data}, nil
}

// grantDue is when an approved request should be granted.
func grantDueAt(r *ajar.Request, now time.Time) time.Time {
	if r.StartAt != nil && r.StartAt.After(now) {
		return *r.StartAt
	}
	return now
}

func ptr[T any](v T) *T { return &v }

func (s *Service) getRequest(ctx context.Context, id string) (*ajar.Request, error) {
	var r *ajar.Request
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		r, err = tx.GetRequest(ctx, id)
		return err
	})
	return r, err
}

// CanSee reports whether u may read r: its requester, an admin, or one of its approvers.
func (s *Service) CanSee(u ajar.User, r *ajar.Request) bool {
	if ajar.SameUser(r.Requester, u.ID) || s.pol.IsAdmin(u) {
		return true
	}
	rule, ok := s.pol.Rule(r.Policy)
	if !ok {
		return false
	}
	return rule.Approves(u) // approvers of any step, escalation included
}

// checkComment checks an approver's comment, or the reason of a denial or an
// extension (field names it): free text, see ajar.CheckLines. EINVALID naming
// field.
func checkComment(field, s string) error { return ajar.CheckLines(field, s, ajar.MaxCommentLen) }

func notFound(id string) error { return ajar.Errorf(ajar.ENOTFOUND, "no request %s", id) }

// GetRequest returns a request u may see; ENOTFOUND otherwise (so ids do not leak).
func (s *Service) GetRequest(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	r, err := s.getRequest(ctx, id)
	if ajar.ErrorCode(err) == ajar.ENOTFOUND || (err == nil && !s.CanSee(u, r)) {
		return nil, notFound(id)
	} else if err != nil {
		return nil, err
	}
	return r, nil
}

// currentStep returns the index of the first approval step whose count is not met,
// or len(steps) when all are.
func currentStep(r *ajar.Request, rule *policy.Rule) int { return StepOf(r.Approvals, rule) }

// mutate runs fn on the current request id in a write transaction. fn returns the
// error to give the caller; when keep is true the transaction commits even though fn
// refused (used to audit refusals).
func (s *Service) mutate(ctx context.Context, u ajar.User, id string, fn func(tx ajar.Tx, r *ajar.Request) (keep bool, err error)) (*ajar.Request, error) {
	var refusal error
	var out *ajar.Request
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		r, err := tx.GetRequest(ctx, id)
		if ajar.ErrorCode(err) == ajar.ENOTFOUND || (err == nil && !s.CanSee(u, r)) {
			return notFound(id)
		} else if err != nil {
			return err
		}
		keep, err := fn(tx, r)
		if err != nil {
			if keep {
				refusal = err
				return nil
			}
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	if refusal != nil {
		return nil, refusal
	}
	return out, nil
}

// transition moves r to state `to`, or returns ECONFLICT naming the current state.
func transition(r *ajar.Request, to ajar.State, now time.Time) error {
	if !ajar.CanTransition(r.State, to) {
		return ajar.Errorf(ajar.ECONFLICT, "request %s is %s and cannot become %s", r.ID, r.State, to)
	}
	r.State = to
	r.UpdatedAt = now
	if to.Terminal() {
		r.EndedAt = ptr(now)
		r.NextAt = nil
	}
	return nil
}

// Approve records u's approval of a pending request, or of the pending
// extension of an active one (approveExtension). Who may approve is mayDecide's
// (authz.go): never the requester, an approver of the current step (or its
// escalate_to once it escalated), once, before the approval deadline. A refusal
// returns EFORBIDDEN (audited as approval.refused) or ECONFLICT. When the last
// step's count is met the request is approved and, if due, granted before
// Approve returns.
func (s *Service) Approve(ctx context.Context, u ajar.User, id, comment string) (*ajar.Request, error) {
	if err := checkComment("comment", comment); err != nil {
		return nil, err
	}
	var heldAt time.Time
	extended := false
	r, err := s.mutate(ctx, u, id, func(tx ajar.Tx, r *ajar.Request) (bool, error) {
		now := tx.Now()
		if r.State == ajar.StateActive {
			return s.approveExtension(ctx, tx, u, r, comment, &extended) // workflow.go
		}
		d := decision{verb: VerbApprove, r: r}
		rule, step, f := s.mayDecide(u, d, now)
		if f != nil {
			return s.refused(ctx, tx, u, d, f)
		}
		r.Approvals = append(r.Approvals, ajar.Approval{Approver: u.ID, Step: step, Decision: ajar.DecisionApprove, Comment: comment, At: now})
		r.UpdatedAt = now
		r.NextAt = ptr(pendingNextAt(r, rule, now)) // the next step may escalate
		action := "approval.recorded"
		if currentStep(r, rule) == len(rule.Approval.Steps) {
			if err := transition(r, ajar.StateApproved, now); err != nil {
				return false, err
			}
			r.NextAt = ptr(grantDueAt(r, now))
			if !r.NextAt.After(now) {
				s.hold(r, now)
				heldAt = now
			}
			action = "request.approved"
		}
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return false, err
		}
		return false, s.audit(ctx, tx, u.ID, action, r.ID, map[string]any{"step": step, "comment": comment})
	})
	if err != nil {
		return nil, err
	}
	if extended {
		return s.renew(ctx, r), nil
	}
	if !heldAt.IsZero() {
		s.runHeld(r, heldAt)
		return s.getRequest(ctx, r.ID)
	}
	s.Kick()
	return r, nil
}

// Deny ends a pending request, or the pending extension of an active one
// (denyExtension). Who may deny is who may approve (mayDecide, authz.go): the
// requester cancels instead. The reason is required. A refusal returns
// EFORBIDDEN (audited as approval.refused) or ECONFLICT.
func (s *Service) Deny(ctx context.Context, u ajar.User, id, reason string) (*ajar.Request, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, ajar.FieldErrorf("reason", "a reason is required to deny")
	}
	if err := checkComment("reason", reason); err != nil {
		return nil, err
	}
	return s.mutate(ctx, u, id, func(tx ajar.Tx, r *ajar.Request) (bool, error) {
		now := tx.Now()
		if r.State == ajar.StateActive {
			return s.denyExtension(ctx, tx, u, r, reason) // workflow.go
		}
		d := decision{verb: VerbDeny, r: r}
		_, step, f := s.mayDecide(u, d, now)
		if f != nil {
			return s.refused(ctx, tx, u, d, f)
		}
		r.Approvals = append(r.Approvals, ajar.Approval{Approver: u.ID, Step: step, Decision: ajar.DecisionDeny, Comment: reason, At: now})
		if err := transition(r, ajar.StateDenied, now); err != nil {
			return false, err
		}
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return false, err
		}
		return false, s.audit(ctx, tx, u.ID, "request.denied", r.ID, map[string]any{"reason": reason})
	})
}

// Cancel withdraws a request that has not been granted yet. Only its requester may.
func (s *Service) Cancel(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return s.mutate(ctx, u, id, func(tx ajar.Tx, r *ajar.Request) (bool, error) {
		now := tx.Now()
		if !ajar.SameUser(r.Requester, u.ID) {
			return false, ajar.Errorf(ajar.EFORBIDDEN, "only the requester can cancel request %s", r.ID)
		}
		if r.State == ajar.StateApproved && r.Handle != nil {
			return false, ajar.Errorf(ajar.ECONFLICT, "request %s is being granted; revoke it instead", r.ID)
		}
		if r.State != ajar.StatePending && r.State != ajar.StateApproved {
			return false, ajar.Errorf(ajar.ECONFLICT, "request %s is %s; only pending or approved requests can be cancelled", r.ID, r.State)
		}
		if err := transition(r, ajar.StateCancelled, now); err != nil {
			return false, err
		}
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return false, err
		}
		return false, s.audit(ctx, tx, u.ID, "request.cancelled", r.ID, nil)
	})
}

// Revoke ends access early. Its requester or an admin may. The request moves to
// revoking at once and reaches revoked once the provider confirms; Revoke waits a
// little for that so the common case returns the final state.
func (s *Service) Revoke(ctx context.Context, u ajar.User, id string) (*ajar.Request, error) {
	return s.endEarly(ctx, id, u.ID, nil, func(_ ajar.ReadTx, r *ajar.Request) error {
		if !s.CanSee(u, r) {
			return notFound(id)
		}
		if !ajar.SameUser(r.Requester, u.ID) && !s.pol.IsAdmin(u) {
			return ajar.Errorf(ajar.EFORBIDDEN, "only the requester or an admin can revoke request %s", r.ID)
		}
		return nil
	})
}

// endEarly ends request id's access early for actor, once allowed accepts the
// request as read in the transaction; details go into request.revoking.
func (s *Service) endEarly(ctx context.Context, id, actor string, details map[string]any, allowed func(ajar.ReadTx, *ajar.Request) error) (*ajar.Request, error) {
	var heldAt time.Time
	var r *ajar.Request
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		var err error
		if r, err = tx.GetRequest(ctx, id); ajar.ErrorCode(err) == ajar.ENOTFOUND {
			return notFound(id)
		} else if err != nil {
			return err
		}
		if err := allowed(tx, r); err != nil {
			return err
		}
		now := tx.Now()
		switch {
		case r.State == ajar.StateActive:
			s.hold(r, now)
			heldAt = now
		case r.State == ajar.StateApproved && r.Handle != nil:
			// A grant may be in flight under a scheduler lease: keep the lease, the
			// worker sees the new state when it writes back and revokes itself.
			if r.NextAt == nil || r.NextAt.Before(now) {
				r.NextAt = ptr(now)
			}
		case r.State == ajar.StatePending || r.State == ajar.StateApproved:
			return ajar.Errorf(ajar.ECONFLICT, "request %s is %s and holds no access; cancel it instead", r.ID, r.State)
		default:
			return ajar.Errorf(ajar.ECONFLICT, "request %s is %s and cannot be revoked", r.ID, r.State)
		}
		if err := transition(r, ajar.StateRevoking, now); err != nil {
			return err
		}
		r.EndReason = ajar.EndRevoked
		r.Attempts = 0
		r.LastError = ""
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return err
		}
		var d any
		if details != nil {
			d = details
		}
		return s.audit(ctx, tx, actor, "request.revoking", r.ID, d)
	})
	if err != nil {
		return nil, err
	}
	if heldAt.IsZero() {
		s.Kick()
		return r, nil
	}
	s.runHeld(r, heldAt)
	return s.getRequest(ctx, r.ID)
}

// audit appends one event in tx, and its notification to the outbox in the
// same transaction; details are encoded once for both. An audit write that
// fails (details that cannot be encoded included) fails the operation.
func (s *Service) audit(ctx context.Context, tx ajar.Tx, actor, action, subject string, details any) error {
	raw, err := ajar.MarshalAuditDetails(action, details)
	if err != nil {
		return err
	}
	if err := ajar.AppendAuditJSON(ctx, tx, actor, action, subject, raw); err != nil {
		return err
	}
	return s.notify.Audit(ctx, tx, actor, action, subject, raw)
}

// user looks id up in the user directory (Config.Users). A directory that
// fails is logged and the user treated as unknown: decisions that need them
// refuse (fail closed).
func (s *Service) user(ctx context.Context, id string) (ajar.User, bool) {
	if s.users == nil { // a Service made without New (tests)
		return s.pol.User(id)
	}
	u, ok, err := s.users(ctx, id)
	if err != nil {
		s.log.ErrorContext(ctx, "user directory failed; treating the user as unknown", "user", id, "err", err)
		return ajar.User{}, false
	}
	return u, ok
}

// auditStored is audit for an event about r as tx stores it right now (just
// written, unchanged since), sparing the notification a re-read of r.
func (s *Service) auditStored(ctx context.Context, tx ajar.Tx, actor, action string, r *ajar.Request, details any) error {
	raw, err := ajar.MarshalAuditDetails(action, details)
	if err != nil {
		return err
	}
	if err := ajar.AppendAuditJSON(ctx, tx, actor, action, r.ID, raw); err != nil {
		return err
	}
	return s.notify.AuditStored(ctx, tx, actor, action, r, raw)
}

// User returns who id is as the core's directory says (Config.Users): for
// the packages beside the core that decide about other people (the orphan
// report, explain --as). false when unknown, or when the directory failed
// (logged).
func (s *Service) User(ctx context.Context, id string) (ajar.User, bool) { return s.user(ctx, id) }
