// Package outbox delivers the notifications the broker writes to the store's
// outbox: one worker per sink hands each event to notify.Sink.Send in order,
// retries failures with backoff, and drops (and audits) an event it has
// retried for too long, so the sink's later events can go. A sink's delivery is
// leased in the store (Tx.AcquireLease): one replica at a time sends a sink's
// events, so replicas never send an event twice while the lease holds. It
// depends on the root contracts and notify only; the broker wakes it through a
// func (see docs/architecture.md, Layers).
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/backoff"
	"github.com/ajar-dev/ajar/notify"
)

// Config configures notification delivery. Zero fields take defaults.
type Config struct {
	// Store holds the outbox.
	Store ajar.Store
	// Sinks are the sinks to deliver to: the same the broker writes for.
	Sinks []notify.Sink
	// Logger logs failed and dropped deliveries (discarded when nil).
	Logger *slog.Logger
	// Registerer receives the delivery metrics (a new registry when nil).
	Registerer prometheus.Registerer
	// RetryBase is the delay before the first retry of a failed delivery,
	// doubled per attempt (jittered) up to RetryMax (2s, 5m).
	RetryBase time.Duration
	RetryMax  time.Duration
	// GiveUp is how long a notification is retried before it is dropped so its
	// sink's later events can go (24h). Dropping is audited.
	GiveUp time.Duration
	// Timeout bounds one delivery attempt (notify.DefaultTimeout).
	Timeout time.Duration
	// Poll is the longest a delivery worker sleeps without being woken (2s).
	Poll time.Duration
	// Keep is how long delivered and dropped notifications stay in the store (7 days).
	Keep time.Duration
	// Batch is how many notifications of one sink a worker reads and sends
	// between two writes (128): under a steady stream each read and each
	// delivery record (a commit under the writer) serve that many.
	Batch int
	// Linger is how long a worker lets notifications gather after delivering
	// fewer than Batch (100ms): under a steady stream of events one claim and
	// one record write (each a commit) then serve many, instead of each
	// event taking two commits of its own. The first event after a quiet
	// spell goes at once.
	Linger time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RetryBase, 2*time.Second)
	def(&c.RetryMax, 5*time.Minute)
	def(&c.GiveUp, 24*time.Hour)
	def(&c.Timeout, notify.DefaultTimeout)
	def(&c.Poll, 2*time.Second)
	def(&c.Keep, 7*24*time.Hour)
	def(&c.Linger, 100*time.Millisecond)
	if c.Batch <= 0 {
		c.Batch = 128
	}
	c.RetryMax = max(c.RetryMax, c.RetryBase)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return c
}

// lease is how long a sink's delivery belongs to one worker without a renewal:
// long enough for one attempt and the writes around it. Every record of a batch
// renews it; a worker starts no attempt that could outlive it, so another
// replica never sends the same event.
func (c Config) lease() time.Duration { return 2*c.Timeout + 10*time.Second }

// leaseMargin is the time an attempt must have left of the lease besides
// Config.Timeout, for the write that records it.
const leaseMargin = 5 * time.Second

// retryDelay is the jittered delay before retry number attempt (1-based).
func (c Config) retryDelay(attempt int) time.Duration {
	return backoff.Next(attempt, c.RetryBase, c.RetryMax)
}

// Outbox delivers the outbox's notifications. Its methods are safe for
// concurrent use.
type Outbox struct {
	store   ajar.Store
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	owner   string                               // this Outbox's name in the sinks' leases
	workers []*worker                            // one per sink, in Config.Sinks order
	after   func(time.Duration) <-chan time.Time // time.After; tests hold the linger
	now     func() time.Time                     // time.Now; tests move it with the store's
}

// worker is the delivery of one sink in this process.
type worker struct {
	sink  notify.Sink
	lease string        // the store lease that makes this process the sink's sender
	kick  chan struct{} // wakes the worker Run starts

	mu sync.Mutex // one delivery of the sink at a time (Run's worker, DeliverDue)
	// took is the local time just before the write that last took or renewed
	// the lease (the store's end of it is later); zero when not held.
	took time.Time
}

// holds reports whether w holds its lease at now with enough of it left for an
// attempt and its record. Called with mu held.
func (w *worker) holds(c Config, now time.Time) bool {
	return !w.took.IsZero() && now.Sub(w.took)+c.Timeout+leaseMargin <= c.lease()
}

// New returns an Outbox and registers its metrics in cfg.Registerer. Call Run
// to start its workers. It fails when Store is nil or the metrics cannot be
// registered (they already are).
func New(cfg Config) (*Outbox, error) {
	if cfg.Store == nil {
		return nil, errors.New("outbox: Store is required")
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer, cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	o := &Outbox{store: cfg.Store, cfg: cfg, log: cfg.Logger, metrics: m, owner: "outbox-" + rand.Text(), after: time.After, now: time.Now}
	for _, sk := range cfg.Sinks {
		o.workers = append(o.workers, &worker{sink: sk, lease: "notify/" + sk.Name(), kick: make(chan struct{}, 1)})
	}
	return o, nil
}

// Kick wakes every sink's worker to look at the outbox now. It never blocks;
// the broker calls it (events.NotifyConfig.Wake) when it writes notifications.
func (o *Outbox) Kick() {
	for _, w := range o.workers {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Delivered counts an event that a notify.Direct sink got without the outbox
// (events.NotifyConfig.Delivered) in ajar_notifications_delivered_total, as
// the outbox's own deliveries are. It never blocks.
func (o *Outbox) Delivered(sink string) {
	o.metrics.delivered.WithLabelValues(sink).Inc()
}

// Run runs one delivery worker per sink, and the pruning of old
// notifications, until ctx ends. With no sinks it returns at once.
func (s *Outbox) Run(ctx context.Context) {
	if len(s.cfg.Sinks) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.release(w)
			s.deliverLoop(ctx, w)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pruneLoop(ctx)
	}()
	wg.Wait()
}

func (s *Outbox) deliverLoop(ctx context.Context, w *worker) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.kick:
		}
		wait, err := s.deliverAll(ctx, w)
		if err != nil && ctx.Err() == nil {
			s.log.Error("notifications: deliver", "sink", w.sink.Name(), "err", err)
			wait = s.cfg.Poll
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

func (s *Outbox) pruneLoop(ctx context.Context) {
	for {
		if err := s.PruneNotifications(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("notifications: prune", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// PruneNotifications deletes delivered and dropped notifications older than
// Config.Keep.
func (s *Outbox) PruneNotifications(ctx context.Context) error {
	for {
		var n int
		err := s.store.Update(ctx, func(tx ajar.Tx) error {
			var err error
			n, err = tx.PruneNotifications(ctx, tx.Now().Add(-s.cfg.Keep), 1000)
			return err
		})
		if err != nil || n < 1000 {
			return err
		}
	}
}

// DeliverDue delivers, sink by sink, every notification that is due now, in
// order, stopping at a sink's first failure (it is retried later), and returns
// how many were delivered. The workers Run starts do the same continuously;
// DeliverDue is for tests and one-shot tools.
// It releases the sinks' leases when it returns.
func (s *Outbox) DeliverDue(ctx context.Context) (int, error) {
	total := 0
	for _, w := range s.workers {
		for {
			before := total
			n, _, err := s.deliver(ctx, w)
			total += n
			if err != nil {
				s.release(w)
				return total, err
			}
			if total == before {
				break
			}
		}
		s.release(w)
	}
	return total, nil
}

// release gives up w's lease, if w holds it, so that another replica need not
// wait for it to run out. A failure is logged: the lease then ends by itself.
func (s *Outbox) release(w *worker) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.took.IsZero() {
		return
	}
	w.took = time.Time{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		_, err := tx.ReleaseLease(ctx, w.lease, s.owner)
		return err
	})
	if err != nil {
		s.log.Warn("notifications: release the lease (it ends by itself)", "sink", w.sink.Name(), "err", err)
	}
}

// deliverAll delivers sk's due notifications batch after batch, lingering
// (Config.Linger) after a short batch so that the next is fuller, until none
// is due; it returns how long to wait before looking again.
func (s *Outbox) deliverAll(ctx context.Context, w *worker) (time.Duration, error) {
	for {
		n, wait, err := s.deliver(ctx, w)
		if n == 0 || err != nil {
			return wait, err
		}
		if n < s.cfg.Batch {
			select {
			case <-ctx.Done():
				return 0, nil
			case <-s.after(s.cfg.Linger):
			}
		}
	}
}

// deliver sends the due head of w's sink's queue (up to Batch notifications in
// ID order, stopping at the first that is not due) in order, holding the
// sink's lease, and records the outcome: delivered, or retried later with
// backoff, or dropped after GiveUp. A failure stops the batch, so a sink never
// receives an event before the ones enqueued ahead of it. While another replica
// holds the lease it sends nothing. It returns how many were delivered and,
// when none were, how long to wait before looking again.
func (s *Outbox) deliver(ctx context.Context, w *worker) (int, time.Duration, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cfg, sk := s.cfg, w.sink
	wait := cfg.Poll
	if !w.holds(cfg, s.now()) {
		// Look first without taking the writer: workers are woken on every
		// state change, and most of the time there is nothing due.
		due := false
		err := s.store.View(ctx, func(tx ajar.ReadTx) error {
			head, err := tx.NextNotification(ctx, sk.Name())
			if ajar.ErrorCode(err) == ajar.ENOTFOUND {
				return nil
			} else if err != nil {
				return err
			}
			if now := tx.Now(); head.NextAt.After(now) {
				wait = min(wait, head.NextAt.Sub(now))
				return nil
			}
			due = true
			return nil
		})
		if err != nil || !due {
			return 0, wait, err
		}
		took, got := s.now(), false
		err = s.store.Update(ctx, func(tx ajar.Tx) error {
			var err error
			got, err = tx.AcquireLease(ctx, w.lease, s.owner, tx.Now().Add(cfg.lease()))
			return err
		})
		if err != nil {
			return 0, wait, fmt.Errorf("take the lease of %s: %w", sk.Name(), err)
		}
		if !got {
			w.took = time.Time{}
			return 0, cfg.Poll, nil // another replica delivers this sink
		}
		w.took = took
	}
	// With the lease held, only this worker changes the sink's pending
	// notifications (others only add to them): the batch is read without
	// the writer, and its one write is the record below.
	var batch []ajar.Notification
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now := tx.Now()
		pending, err := tx.ListNotifications(ctx, ajar.NotificationFilter{Sink: sk.Name(), State: ajar.NotificationPending, Limit: cfg.Batch})
		if err != nil {
			return err
		}
		for _, n := range pending {
			if n.NextAt.After(now) {
				if len(batch) == 0 {
					wait = min(wait, n.NextAt.Sub(now))
				}
				break
			}
			batch = append(batch, n)
		}
		return nil
	})
	if err != nil || len(batch) == 0 {
		return 0, wait, err
	}
	type outcome struct {
		n   ajar.Notification
		err error
	}
	var tried []outcome
	for _, n := range batch {
		// Never start an attempt that could outlive the lease.
		if !w.holds(cfg, s.now()) || ctx.Err() != nil {
			break
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err := sk.Send(sctx, n.Event)
		cancel()
		tried = append(tried, outcome{n, err})
		if err != nil {
			break
		}
	}
	if len(tried) == 0 {
		return 0, 0, nil
	}
	delivered, renewed, took := 0, false, s.now()
	err = s.store.Update(context.WithoutCancel(ctx), func(tx ajar.Tx) error {
		delivered = 0
		now := tx.Now()
		// Renew the lease for the next batch. Lost (it ran out and another
		// replica took it): what was sent is recorded all the same.
		var err error
		if renewed, err = tx.AcquireLease(ctx, w.lease, s.owner, now.Add(cfg.lease())); err != nil {
			return err
		}
		outcomes := make([]*ajar.Notification, len(tried))
		for i := range tried {
			n := tried[i].n
			outcomes[i] = &n
			switch {
			case tried[i].err == nil:
				n.State, n.DoneAt, n.LastError = ajar.NotificationDelivered, ptr(now), ""
				n.Attempts++
			default:
				n.Attempts++
				n.LastError = safeError(tried[i].err)
				if now.Sub(n.CreatedAt) >= cfg.GiveUp {
					n.State, n.DoneAt = ajar.NotificationDropped, ptr(now)
					if err := s.auditDropped(ctx, tx, n); err != nil {
						return err
					}
				} else {
					n.NextAt = now.Add(cfg.retryDelay(n.Attempts))
				}
			}
		}
		// One statement for the batch. One not written was changed by
		// another worker meanwhile (it took the lease over).
		written, err := tx.UpdateNotifications(ctx, outcomes)
		if err != nil {
			return err
		}
		for i, n := range outcomes {
			if written[i] && n.State == ajar.NotificationDelivered {
				delivered++
			}
		}
		return nil
	})
	w.took = time.Time{}
	if err != nil {
		return 0, 0, fmt.Errorf("record deliveries to %s: %w", sk.Name(), err)
	}
	if renewed {
		w.took = took
	}
	for _, o := range tried {
		switch {
		case o.err == nil:
			s.metrics.delivered.WithLabelValues(sk.Name()).Inc()
		default:
			s.metrics.failed.WithLabelValues(sk.Name()).Inc()
			s.log.Warn("notification not delivered", "sink", sk.Name(), "id", o.n.ID, "attempt", o.n.Attempts+1, "err", o.err)
		}
	}
	return delivered, 0, nil
}

// auditDropped records that a notification was given up on: an alert that
// never arrived must not vanish silently.
func (s *Outbox) auditDropped(ctx context.Context, tx ajar.Tx, n ajar.Notification) error {
	var ev notify.Event
	_ = json.Unmarshal(n.Event, &ev)
	subject := ""
	if ev.Request != nil {
		subject = ev.Request.ID
	}
	s.metrics.dropped.WithLabelValues(n.Sink).Inc()
	s.log.Error("notification dropped", "sink", n.Sink, "event", ev.ID, "type", ev.Type, "attempts", n.Attempts, "err", n.LastError)
	return ajar.AppendAudit(ctx, tx, ajar.ActorSystem, "notification.dropped", subject, map[string]any{
		"sink": n.Sink, "event": ev.ID, "type": ev.Type, "attempts": n.Attempts, "error": n.LastError,
	})
}

func ptr[T any](v T) *T { return &v }

// safeError is the text of a sink error that may be shown and stored: an
// *ajar.Error's message, or the error text truncated (as broker's safeError).
func safeError(err error) string { return ajar.SafeMessage(err) }
