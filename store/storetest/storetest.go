// Package storetest is the conformance suite every ajar.Store must pass. Each
// backend's tests call Run with a function that opens a new, empty store; the suite
// then checks the contracts documented on ajar.Store, ajar.ReadTx and ajar.Tx,
// including the ones a backend could easily get almost right: exact time
// round-trips, compare-and-swap, rollback of everything fn wrote, the audit hash
// chain, and serialised concurrent writers.
//
// Where ajar.Store's comments leave a choice open, the suite pins one, so that
// every backend behaves the same:
//
//   - Times round-trip to the nanosecond (Postgres timestamptz keeps only
//     microseconds, so a Postgres store must store nanoseconds some other way).
//     They may come back in another zone; Now and audit event times are UTC.
//   - AuditEvent.Details comes back byte for byte (it is hashed); other raw JSON
//     (Handle.Data, GrantRequest.Config) only needs to be equal as JSON.
//   - ListRequests breaks ties in CreatedAt by ID, descending.
//   - A Tx method that fails with ECONFLICT or ENOTFOUND leaves the transaction
//     usable: fn may handle the error and go on writing.
//   - ClaimDue with limit <= 0 fails with EINVALID instead of claiming nothing.
//   - AppendAudit fails with EINVALID for a zero Time or Details that are not JSON.
//   - Once Update returns nil, every later View sees its writes.
//   - A View is a snapshot: it does not see commits made after it began reading.
//   - A lease's end is compared with the store's clock (Now): it is free at its end.
package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// OpenFunc opens a new, empty store whose clock is now. The store must be
// independent of every other store it opened. Run closes it when the test ends.
type OpenFunc func(t *testing.T, now func() time.Time) ajar.Store

// Run runs the conformance suite against the stores open returns, one store per
// subtest. Subtests run in parallel.
func Run(t *testing.T, open OpenFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"RequestRoundTrip", testRequestRoundTrip},
		{"RequestMinimalRoundTrip", testRequestMinimalRoundTrip},
		{"RequestTimesInOtherZones", testRequestTimesInOtherZones},
		{"RequestNotFound", testRequestNotFound},
		{"CreateRequestDuplicate", testCreateRequestDuplicate},
		{"UpdateRequestCompareAndSwap", testUpdateRequestCAS},
		{"UpdateRequests", testUpdateRequests},
		{"UpdateRequestsAllOrNothing", testUpdateRequestsAllOrNothing},
		{"TxUsableAfterConflict", testTxUsableAfterConflict},
		{"UpdateRollsBackOnError", testUpdateRollsBackOnError},
		{"UpdateRollsBackOnPanic", testUpdateRollsBackOnPanic},
		{"UpdateCancelledContext", testUpdateCancelledContext},
		{"AfterCommit", testAfterCommit},
		{"ListRequests", testListRequests},
		{"ListRequestsSameParams", testListRequestsSameParams},
		{"ListRequestsDefaultLimit", testListRequestsDefaultLimit},
		{"ListRequestsPaging", testListRequestsPaging},
		{"CountRequests", testCountRequests},
		{"CountAfterWriteSerialized", testCountAfterWriteSerialized},
		{"CreateRequestCounting", testCreateRequestCounting},
		{"CountByState", testCountByState},
		{"NextDue", testNextDue},
		{"ClaimDue", testClaimDue},
		{"ClaimDueLease", testClaimDueLease},
		{"AuditChain", testAuditChain},
		{"AuditTimeAndDetailsExact", testAuditExact},
		{"AuditFilter", testAuditFilter},
		{"AuditSearch", testAuditSearch},
		{"AuditDefaultLimit", testAuditDefaultLimit},
		{"AuditRejectsBadEvents", testAuditRejectsBadEvents},
		{"AuditManyInOneUpdate", testAuditManyInOneUpdate},
		{"AuditAfterRequestRewritten", testAuditAfterRequestRewritten},
		{"Sessions", testSessions},
		{"SessionUpdateRevocationSticks", testSessionRevocationSticks},
		{"ListSessions", testListSessions},
		{"ClaimSessionRefresh", testClaimSessionRefresh},
		{"Identities", testIdentities},
		{"AuthFlows", testAuthFlows},
		{"WebAuthnCredentials", testWebAuthnCredentials},
		{"Keys", testKeys},
		{"SSHCerts", testSSHCerts},
		{"FindSSHCerts", testFindSSHCerts},
		{"Clock", testClock},
		{"ViewSnapshot", testViewSnapshot},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentMixedFailures", testConcurrentMixedFailures},
		{"ConcurrentCompareAndSwap", testConcurrentCAS},
		{"Notifications", testNotifications},
		{"UpdateNotifications", testUpdateNotifications},
		{"Reviews", testReviews},
		{"Extensions", testExtensions},
		{"PendingExtensions", testPendingExtensions},
		{"Leases", testLeases},
		{"PipelineReadsOwnWrites", testPipelineReadsOwnWrites},
		{"PipelineLateErrorFailsFn", testPipelineLateErrorFailsFn},
		{"PipelineLateErrorsInBatches", testPipelineLateErrorsInBatches},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Clock{t: t0}
			s := open(t, c.Now)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, &harness{s: s, clock: c})
		})
	}
}

// t0 is the suite's starting clock: not UTC-midnight, with every nanosecond digit
// used, so a store that drops precision or the zone is caught.
var t0 = time.Date(2031, time.April, 5, 6, 7, 8, 123456789, time.UTC)

// Clock is a settable clock for tests. Its zero value reads the zero time.
type Clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration // added after every read
}

// Now returns the clock's time, then advances it by its step.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// SetStep makes every read advance the clock by d.
func (c *Clock) SetStep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.step = d
}

type harness struct {
	s     ajar.Store
	clock *Clock
}

// update runs fn in s.Update and fails the test on error.
func (h *harness) update(t testing.TB, fn func(ajar.Tx) error) {
	t.Helper()
	if err := h.s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// view runs fn in s.View and fails the test on error.
func (h *harness) view(t testing.TB, fn func(ajar.ReadTx) error) {
	t.Helper()
	if err := h.s.View(t.Context(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func (h *harness) create(t testing.TB, rs ...*ajar.Request) {
	t.Helper()
	h.update(t, func(tx ajar.Tx) error {
		for _, r := range rs {
			if err := tx.CreateRequest(t.Context(), r); err != nil {
				return fmt.Errorf("create %s: %w", r.ID, err)
			}
		}
		return nil
	})
}

func (h *harness) get(t testing.TB, id string) *ajar.Request {
	t.Helper()
	var r *ajar.Request
	h.view(t, func(tx ajar.ReadTx) error {
		var err error
		r, err = tx.GetRequest(t.Context(), id)
		return err
	})
	return r
}

func (h *harness) auditAll(t testing.TB) []ajar.AuditEvent {
	t.Helper()
	var all []ajar.AuditEvent
	h.view(t, func(tx ajar.ReadTx) error {
		var after int64
		for {
			evs, err := tx.ListAudit(t.Context(), ajar.AuditFilter{AfterSeq: after, Limit: 500})
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				return nil
			}
			all = append(all, evs...)
			after = evs[len(evs)-1].Seq
		}
	})
	return all
}

// checkChain fails unless evs is a complete chain from Seq 1: no gaps, each
// PrevHash the previous Hash, each Hash recomputing from the stored fields.
func checkChain(t testing.TB, evs []ajar.AuditEvent) {
	t.Helper()
	var prev []byte
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d, want %d", i, e.Seq, i+1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("event %d: PrevHash %x, want %x", e.Seq, e.PrevHash, prev)
		}
		if got := e.ComputeHash(); !bytes.Equal(got, e.Hash) {
			t.Fatalf("event %d: stored Hash %x, recomputed from stored fields %x", e.Seq, e.Hash, got)
		}
		prev = e.Hash
	}
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := ajar.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func tp(t time.Time) *time.Time { return &t }

// fullRequest returns a request with every field set to a value that is easy to
// lose on the way through a database.
func fullRequest(id string, created time.Time) *ajar.Request {
	return &ajar.Request{
		ID:        id,
		Target:    "prod-web",
		Requester: "alice@example.com",
		Reason:    "INC-42: ünïcödé, emoji 🚀, RTL שלום, quote ' \" ; DROP TABLE requests; --",
		Ticket:    "OPS-1234",
		Duration:  90*time.Minute + 1,
		Params:    map[string]string{"source_ip": "203.0.113.7/32", "ключ": "значение", "": "empty key"},
		Policy:    "engineers-prod",
		State:     ajar.StateActive,
		EndReason: ajar.EndRevoked,
		CreatedAt: created,
		UpdatedAt: created.Add(time.Second + 1),
		StartAt:   tp(created.Add(time.Minute)),
		// Trailing zero nanoseconds: a store that trims them must still parse back.
		ApprovalDeadline: created.Truncate(time.Second).Add(100 * time.Millisecond),
		ActivatedAt:      tp(created.Add(2 * time.Minute)),
		ExpiresAt:        tp(created.Add(92 * time.Minute)),
		EndedAt:          tp(created.Add(93*time.Minute + 7)),
		Approvals: []ajar.Approval{
			{Approver: "bob@example.com", Step: 0, Decision: ajar.DecisionApprove, Comment: "ok <b>&</b>", At: created.Add(30 * time.Second)},
			{Approver: "carol@example.com", Step: 1, Decision: ajar.DecisionApprove, At: created.Add(31*time.Second + 5)},
		},
		Handle: &ajar.Handle{
			Provider: "aws-security-group",
			Version:  3,
			Grant: ajar.GrantRequest{
				RequestID: id,
				Target:    "prod-web",
				Requester: "alice@example.com",
				Params:    map[string]string{"source_ip": "203.0.113.7/32"},
				ExpiresAt: created.Add(92 * time.Minute),
				NotAfter:  created.Add(182 * time.Minute),
				Config:    json.RawMessage(`{"region": "us-east-1", "port": 22, "tags": ["a", "<b>"]}`),
			},
			Data: json.RawMessage(`{"rule_id":"sgr-0abc","nested":{"z":1,"a":[true,null,1.5e3]}}`),
		},
		NextAt:    tp(created.Add(92 * time.Minute)),
		Attempts:  7,
		LastError: "provider: throttled (retrying)",
	}
}

// simpleRequest is a pending request with only the fields every request has.
func simpleRequest(id, requester, target string, state ajar.State, created time.Time) *ajar.Request {
	return &ajar.Request{
		ID:               id,
		Target:           target,
		Requester:        requester,
		Reason:           "because",
		Duration:         30 * time.Minute,
		Policy:           "p",
		State:            state,
		CreatedAt:        created,
		UpdatedAt:        created,
		ApprovalDeadline: created.Add(30 * time.Minute),
	}
}

// diffRequest lists how got differs from want. Times compare with Equal (a store
// may return them in another zone), raw JSON compares by value, and a nil map or
// slice equals an empty one.
func diffRequest(want, got *ajar.Request) []string {
	var out []string
	diffValue("Request", reflect.ValueOf(want), reflect.ValueOf(got), &out)
	return out
}

func wantSameRequest(t testing.TB, want, got *ajar.Request) {
	t.Helper()
	if d := diffRequest(want, got); len(d) > 0 {
		t.Fatalf("request %s does not round-trip:\n%s", want.ID, joinLines(d))
	}
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

func diffValue(path string, a, b reflect.Value, out *[]string) {
	if a.Type() != b.Type() {
		*out = append(*out, fmt.Sprintf("%s: type %s != %s", path, a.Type(), b.Type()))
		return
	}
	switch {
	case a.Type() == timeType:
		ta, tb := a.Interface().(time.Time), b.Interface().(time.Time)
		if !ta.Equal(tb) {
			*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, ta.Format(time.RFC3339Nano), tb.Format(time.RFC3339Nano)))
		}
		return
	case a.Type() == rawType:
		ra, rb := a.Interface().(json.RawMessage), b.Interface().(json.RawMessage)
		if !jsonEqual(ra, rb) {
			*out = append(*out, fmt.Sprintf("%s: want JSON %s, got %s", path, ra, rb))
		}
		return
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: want nil=%v, got nil=%v", path, a.IsNil(), b.IsNil()))
			}
			return
		}
		diffValue(path, a.Elem(), b.Elem(), out)
	case reflect.Struct:
		for i := range a.NumField() {
			diffValue(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i), out)
		}
	case reflect.Slice:
		if a.Len() != b.Len() {
			*out = append(*out, fmt.Sprintf("%s: want %d elements, got %d", path, a.Len(), b.Len()))
			return
		}
		for i := range a.Len() {
			diffValue(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i), out)
		}
	case reflect.Map:
		if a.Len() != b.Len() {
			*out = append(*out, fmt.Sprintf("%s: want %d entries %v, got %d %v", path, a.Len(), a, b.Len(), b))
			return
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() {
				*out = append(*out, fmt.Sprintf("%s[%v]: missing", path, k))
				continue
			}
			diffValue(fmt.Sprintf("%s[%v]", path, k), a.MapIndex(k), bv, out)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, fmt.Sprintf("%s: want %#v, got %#v", path, a.Interface(), b.Interface()))
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString("\t")
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}
