package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/store/sqlite"
)

// clock is the store's clock, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// sink records the requests of the events it accepts, and fails while down.
type sink struct {
	mu     sync.Mutex
	down   bool
	calls  int
	got    []string
	onSend func(call int) // if set, called (without mu) before each send
}

func (s *sink) Name() string      { return "hook" }
func (s *sink) Wants(string) bool { return true }

func (s *sink) Send(_ context.Context, b []byte) error {
	s.mu.Lock()
	hook, call := s.onSend, s.calls+1
	s.mu.Unlock()
	if hook != nil {
		hook(call)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return errors.New("connection refused")
	}
	var e notify.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return err
	}
	s.got = append(s.got, e.Request.ID)
	return nil
}

func (s *sink) setDown(v bool) { s.mu.Lock(); s.down = v; s.mu.Unlock() }

func (s *sink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

type env struct {
	store *sqlite.Store
	clock *clock
	sink  *sink
	ob    *Outbox
	reg   *prometheus.Registry
}

func newTestEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/ajar.db", sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sk := &sink{}
	reg := prometheus.NewRegistry()
	cfg.Store, cfg.Sinks, cfg.Registerer = st, []notify.Sink{sk}, reg
	ob, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ob.now = clk.Now // the lease's time is the store's
	return &env{store: st, clock: clk, sink: sk, ob: ob, reg: reg}
}

// enqueue writes one event about each request to the sink's outbox, as the
// broker does.
func (e *env) enqueue(t *testing.T, ids ...string) {
	t.Helper()
	err := e.store.Update(t.Context(), func(tx ajar.Tx) error {
		for _, id := range ids {
			b, err := json.Marshal(notify.Event{ID: "evt_" + id, Type: "request.created", Time: tx.Now(), Request: &notify.Request{ID: id}})
			if err != nil {
				return err
			}
			if _, err := tx.EnqueueNotification(t.Context(), &ajar.Notification{Sink: "hook", Event: b, CreatedAt: tx.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) deliver(t *testing.T) int {
	t.Helper()
	n, err := e.ob.DeliverDue(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) list(t *testing.T, state ajar.NotificationState) []ajar.Notification {
	t.Helper()
	var out []ajar.Notification
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		out, err = tx.ListNotifications(t.Context(), ajar.NotificationFilter{Sink: "hook", State: state})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// counter reads the value of a counter (or gauge) with label sink="hook".
func (e *env) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestDeliverInOrderOnce: due notifications go out in enqueue order, each
// once, and delivered ones are pruned after Keep.
func TestDeliverInOrderOnce(t *testing.T) {
	e := newTestEnv(t, Config{Batch: 2})
	e.enqueue(t, "req_1", "req_2", "req_3")
	if v := e.counter(t, "ajar_notifications_pending"); v != 3 {
		t.Errorf("pending gauge %v, want 3", v)
	}
	if n := e.deliver(t); n != 3 {
		t.Fatalf("delivered %d, want 3", n)
	}
	if n := e.deliver(t); n != 0 {
		t.Fatalf("delivered %d again", n)
	}
	if got := e.sink.received(); !slices.Equal(got, []string{"req_1", "req_2", "req_3"}) {
		t.Fatalf("received %v", got)
	}
	if v := e.counter(t, "ajar_notifications_delivered_total"); v != 3 {
		t.Errorf("delivered counter %v, want 3", v)
	}
	e.clock.Set(e.clock.Now().Add(7*24*time.Hour + time.Second))
	if err := e.ob.PruneNotifications(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left := e.list(t, ajar.NotificationDelivered); len(left) != 0 {
		t.Errorf("%d delivered notifications left after Keep", len(left))
	}
}

// TestRetriesBackOffThenDrop: a failing head is retried with growing delays,
// holds back the events behind it (order), and after GiveUp is dropped,
// audited and counted, so the next event goes.
func TestRetriesBackOffThenDrop(t *testing.T) {
	e := newTestEnv(t, Config{RetryBase: time.Second, RetryMax: time.Minute, GiveUp: 10 * time.Minute})
	start := e.clock.Now()
	e.sink.setDown(true)
	e.enqueue(t, "req_1", "req_2")
	var delays []time.Duration
	for range 6 {
		if n := e.deliver(t); n != 0 {
			t.Fatalf("delivered %d while down", n)
		}
		pending := e.list(t, ajar.NotificationPending)
		if len(pending) != 2 || pending[1].Attempts != 0 {
			t.Fatalf("the event behind a failing head was tried: %+v", pending)
		}
		head := pending[0]
		delays = append(delays, head.NextAt.Sub(e.clock.Now()))
		e.clock.Set(head.NextAt)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] < delays[i-1] {
			t.Fatalf("retry delays shrink: %v", delays)
		}
	}
	// The first retry waits at most RetryBase, the sixth at least 16 times
	// its lower end: the gaps grow, not just repeat.
	if delays[0] > time.Second || delays[5] < 16*time.Second {
		t.Fatalf("retry delays do not back off: %v", delays)
	}
	if v := e.counter(t, "ajar_notification_failures_total"); v != 6 {
		t.Errorf("failure counter %v, want 6", v)
	}

	e.clock.Set(start.Add(10 * time.Minute))
	e.deliver(t)
	dropped := e.list(t, ajar.NotificationDropped)
	if len(dropped) != 1 || dropped[0].Attempts != 7 || dropped[0].LastError != "connection refused" {
		t.Fatalf("dropped: %+v", dropped)
	}
	if v := e.counter(t, "ajar_notifications_dropped_total"); v != 1 {
		t.Errorf("dropped counter %v, want 1", v)
	}
	var evs []ajar.AuditEvent
	err := e.store.View(t.Context(), func(tx ajar.ReadTx) error {
		var err error
		evs, err = tx.ListAudit(t.Context(), ajar.AuditFilter{Subject: "req_1"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != "notification.dropped" || evs[0].Actor != ajar.ActorSystem {
		t.Fatalf("audit of req_1: %+v", evs)
	}
	var d struct {
		Sink     string `json:"sink"`
		Event    string `json:"event"`
		Attempts int    `json:"attempts"`
	}
	if err := json.Unmarshal(evs[0].Details, &d); err != nil || d.Sink != "hook" || d.Event != "evt_req_1" || d.Attempts != 7 {
		t.Errorf("audit details %s", evs[0].Details)
	}

	e.sink.setDown(false)
	if n := e.deliver(t); n != 1 {
		t.Fatalf("delivered %d after the drop, want 1", n)
	}
	if got := e.sink.received(); !slices.Equal(got, []string{"req_2"}) {
		t.Fatalf("received %v", got)
	}
}

// countingStore counts write transactions.
type countingStore struct {
	ajar.Store
	mu      sync.Mutex
	updates int
}

func (c *countingStore) Update(ctx context.Context, fn func(ajar.Tx) error) error {
	c.mu.Lock()
	c.updates++
	c.mu.Unlock()
	return c.Store.Update(ctx, fn)
}

func (c *countingStore) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.updates }

// TestLingerGathersAStream: the first event after a quiet spell goes at
// once; events that trickle in while the worker lingers after a short batch
// go together in the next one: one write for all of them (their record,
// which renews the sink's lease), not one or two each.
func TestLingerGathersAStream(t *testing.T) {
	e := newTestEnv(t, Config{Batch: 32})
	counted := &countingStore{Store: e.store}
	e.ob.store = counted
	lingering := make(chan chan time.Time)
	e.ob.after = func(time.Duration) <-chan time.Time {
		c := make(chan time.Time)
		lingering <- c
		return c
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.ob.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	e.enqueue(t, "r0")
	e.ob.Kick()
	var release chan time.Time
	select { // delivered r0 at once, then lingers
	case release = <-lingering:
	case <-time.After(time.Minute):
		t.Fatal("the worker did not linger after a short batch")
	}
	if got := e.sink.received(); !slices.Equal(got, []string{"r0"}) {
		t.Fatalf("before lingering the sink got %v, want [r0]", got)
	}
	for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
		e.enqueue(t, id) // one transaction each, as requests come
		e.ob.Kick()
	}
	before := counted.count()
	close(release)
	select { // the five went in one batch, then it lingers again
	case release = <-lingering:
	case <-time.After(time.Minute):
		t.Fatal("the worker did not deliver the gathered events")
	}
	if got := e.sink.received(); !slices.Equal(got, []string{"r0", "r1", "r2", "r3", "r4", "r5"}) {
		t.Errorf("sink got %v", got)
	}
	if n := counted.count() - before; n != 1 {
		t.Errorf("%d write transactions for five gathered events, want 1 (their record)", n)
	}
	close(release)
}

// TestRecordSkipsAChangedNotification: a notification that another worker
// changed while this one sent it (its version moved: the other took the
// sink's lease over when this one's ran out, and scheduled a retry) is not
// recorded as delivered by the first worker, whose other deliveries are; the
// batch's records are one statement, so this is the compare-and-swap of each
// row.
func TestRecordSkipsAChangedNotification(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.enqueue(t, "req_1", "req_2", "req_3")
	later := e.clock.Now().Add(time.Hour)
	e.sink.onSend = func(call int) {
		if call != 2 {
			return
		}
		err := e.store.Update(t.Context(), func(tx ajar.Tx) error {
			ns, err := tx.ListNotifications(t.Context(), ajar.NotificationFilter{Sink: "hook", State: ajar.NotificationPending})
			if err != nil {
				return err
			}
			n := ns[1]
			n.LastError, n.NextAt = "taken over", later
			return tx.UpdateNotification(t.Context(), &n)
		})
		if err != nil {
			t.Error(err)
		}
	}
	if n := e.deliver(t); n != 2 {
		t.Errorf("delivered %d, want 2 (req_2 was taken over)", n)
	}
	pending := e.list(t, ajar.NotificationPending)
	if len(pending) != 1 || pending[0].LastError != "taken over" || pending[0].Attempts != 0 {
		t.Errorf("pending after the delivery: %+v; want req_2 as the other worker left it", pending)
	}
	if got := e.list(t, ajar.NotificationDelivered); len(got) != 2 {
		t.Errorf("%d recorded delivered, want 2", len(got))
	}
}

// TestOneReplicaSendsASink: two replicas' outboxes on one store; while one
// holds a sink's lease the other sends none of its events; once the lease has
// run out (its holder stopped renewing it) the other takes over, and every
// event goes out once, in order.
func TestOneReplicaSendsASink(t *testing.T) {
	e := newTestEnv(t, Config{})
	other := &sink{}
	ob2, err := New(Config{Store: e.store, Sinks: []notify.Sink{other}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ob2.now = e.clock.Now

	e.enqueue(t, "r1", "r2")
	w1 := e.ob.workers[0]
	if n, _, err := e.ob.deliver(t.Context(), w1); err != nil || n != 2 {
		t.Fatalf("the first replica delivered %d (%v), want 2", n, err)
	}
	e.enqueue(t, "r3")
	if n, err := ob2.DeliverDue(t.Context()); err != nil || n != 0 {
		t.Fatalf("the second replica delivered %d (%v) while the first holds the lease, want 0", n, err)
	}
	// The first replica stops (no renewal, no release): its lease runs out.
	e.clock.Set(e.clock.Now().Add(e.ob.cfg.lease() + time.Second))
	if n, err := ob2.DeliverDue(t.Context()); err != nil || n != 1 {
		t.Fatalf("the second replica delivered %d (%v) after the lease ran out, want 1", n, err)
	}
	e.enqueue(t, "r4")
	if n, _, err := e.ob.deliver(t.Context(), w1); err != nil || n != 1 {
		t.Fatalf("the first replica delivered %d (%v) once the second released the lease, want 1", n, err)
	}
	if got := e.sink.received(); !slices.Equal(got, []string{"r1", "r2", "r4"}) {
		t.Errorf("the first replica sent %v, want [r1 r2 r4]", got)
	}
	if got := other.received(); !slices.Equal(got, []string{"r3"}) {
		t.Errorf("the second replica sent %v, want [r3]", got)
	}
}

// TestNoAttemptOutlivesTheLease: a worker whose lease has too little left for
// another attempt sends no more of its batch until it has renewed it, and
// records what it sent.
func TestNoAttemptOutlivesTheLease(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.enqueue(t, "r1", "r2", "r3")
	e.sink.onSend = func(call int) {
		if call == 1 { // the first attempt took nearly the whole lease
			e.clock.Set(e.clock.Now().Add(e.ob.cfg.lease() - e.ob.cfg.Timeout))
		}
	}
	w := e.ob.workers[0]
	if n, _, err := e.ob.deliver(t.Context(), w); err != nil || n != 1 {
		t.Fatalf("delivered %d (%v) in the first batch, want 1: no attempt after the lease's end is near", n, err)
	}
	if got := e.list(t, ajar.NotificationDelivered); len(got) != 1 {
		t.Fatalf("%d recorded delivered, want 1", len(got))
	}
	if n, _, err := e.ob.deliver(t.Context(), w); err != nil || n != 2 {
		t.Fatalf("delivered %d (%v) after renewing, want 2", n, err)
	}
	if got := e.sink.received(); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Errorf("sent %v", got)
	}
}

// TestDirectDeliveriesCounted: a Direct sink's events, which skip the outbox,
// count in ajar_notifications_delivered_total like the outbox's own.
func TestDirectDeliveriesCounted(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.ob.Delivered("server-log")
	e.ob.Delivered("server-log")
	if v := e.counter(t, "ajar_notifications_delivered_total"); v != 2 {
		t.Errorf("delivered counter %v, want 2", v)
	}
}
