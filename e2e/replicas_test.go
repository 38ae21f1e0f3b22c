package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// replicaPolicy is a policy on PostgreSQL with one auto-approved target whose
// provider, testonly-counter, leaves a marker file per grant in counterDir and
// moves it aside on revoke, so that revocations can be counted from outside the
// replicas, even ones killed with SIGKILL.
func replicaPolicy(t testing.TB, storage, counterConfig string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	yaml := `
` + storage + `
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: admin@example.com, groups: [admins]}
admins: [group:admins]
targets:
  counted:
    provider: testonly-counter
    config: ` + counterConfig + `
policies:
  - name: engineers-counted
    targets: [counted]
    requesters: [group:engineers]
    default_duration: 1m
    min_duration: 1s
    max_duration: 1h
    approval:
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'true'
# One requester stands in for many under load.
limits: {open_requests_per_user: 1000000, requests_per_minute_per_user: 1000000}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// randomMasterKey returns a base64 master key: replicas must share one, since the
// keys it seals (SSH CA, audit signer) are in the shared database.
func randomMasterKey() string {
	var k [32]byte
	rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// startReplica runs "ajar serve --config CONFIG --dev" with its own data directory
// and the given extra environment, and waits until it serves.
func startReplica(t testing.TB, name, config string, env ...string) *server {
	t.Helper()
	return startReplicaOf(t, bin, name, config, env...)
}

// startReplicaOf is startReplica with another ajar binary.
func startReplicaOf(t testing.TB, bin, name, config string, env ...string) *server {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	return launch(t, dir, serveOpts{
		bin:     bin,
		args:    []string{"serve", "--config", config, "--dev", "--data", dir, "--listen", "127.0.0.1:0"},
		env:     append(append(os.Environ(), "AJAR_DATABASE_URL=", "AJAR_TEST_CLOCK_OFFSET="), env...),
		name:    "replica " + name,
		timeout: 60 * time.Second,
		cleanup: func(s *server) {
			s.cmd.Process.Signal(syscall.SIGCONT) // in case the test failed while it was stopped
			s.kill()
			if t.Failed() {
				t.Logf("replica %s log (last 8 KiB):\n%s", name, tail(s.logs(), 8<<10))
			}
		},
	})
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// counted is what the testonly-counter provider's files say about one request.
type counted struct {
	active  bool        // a marker still in active/: access never revoked
	revokes []time.Time // effective revokes (markers moved to revoked/), when
}

// readCounter reads the provider's directory.
func readCounter(t testing.TB, dir string) map[string]*counted {
	t.Helper()
	out := map[string]*counted{}
	get := func(id string) *counted {
		if out[id] == nil {
			out[id] = &counted{}
		}
		return out[id]
	}
	active, err := os.ReadDir(filepath.Join(dir, "active"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range active {
		get(e.Name()).active = true
	}
	revoked, err := os.ReadDir(filepath.Join(dir, "revoked"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range revoked {
		parts := strings.Split(e.Name(), "@")
		if len(parts) != 3 {
			t.Fatalf("unexpected file revoked/%s", e.Name())
		}
		ns, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		c := get(parts[0])
		c.revokes = append(c.revokes, time.Unix(0, ns))
	}
	return out
}

// callCounts counts the lines of the provider's calls.log by operation and outcome
// ("revoke noop": a stale or repeated call that found the access already gone).
func callCounts(t *testing.T, dir string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "calls.log"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			out[f[1]+" "+f[3]]++
		}
	}
	return out
}

// stoppedHeldWork reports whether the replica with process id pid, stopped and
// resumed at resumedAt, made a revoke call after resuming that found the access
// already gone ("revoke noop" in calls.log). A request a replica claims after
// resuming is due, so nobody revoked it since its last claim; what makes such a
// call is a claim made before the stop whose lease ran out meanwhile and whose
// request another replica took over and revoked. (The only other way, a claim
// whose previous worker revoked and died before writing, belongs to replica 0,
// killed long before the stop, whose claims ran out during it.)
func stoppedHeldWork(t *testing.T, dir string, pid int, resumedAt time.Time) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "calls.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != "revoke" || f[3] != "noop" || f[4] != fmt.Sprintf("pid=%d", pid) {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, f[0]); err == nil && !at.Before(resumedAt) {
			return true
		}
	}
	return false
}

// dbRequest is a request as stored, read straight from the database.
type dbRequest struct {
	id, state string
	expires   time.Time
	activated bool
}

func dbRequests(t testing.TB, dsn string) map[string]dbRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, state, coalesce(expires_at, ''), activated_at IS NOT NULL FROM requests`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dbRequest{}
	for rows.Next() {
		var r dbRequest
		var exp string
		if err := rows.Scan(&r.id, &r.state, &exp, &r.activated); err != nil {
			t.Fatal(err)
		}
		if exp != "" {
			if r.expires, err = time.Parse(time.RFC3339Nano, exp); err != nil {
				t.Fatal(err)
			}
		}
		out[r.id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// notExpired counts the requests that have not reached expired.
func notExpired(ctx context.Context, conn *pgx.Conn) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM requests WHERE state <> 'expired'`).Scan(&n)
	return n, err
}

// allAudit reads the whole audit log through the API as admin.
func allAudit(t *testing.T, c *api.Client) []ajar.AuditEvent {
	t.Helper()
	var all []ajar.AuditEvent
	var after int64
	for {
		page, err := c.Audit(t.Context(), ajar.AuditFilter{AfterSeq: after, Limit: api.MaxAuditLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// endActions are the audit actions that end a request.
var endActions = map[string]bool{
	"request.expired": true, "request.revoked": true, "request.grant_failed": true,
	"request.denied": true, "request.cancelled": true, "request.timed_out": true,
}

// TestReplicasKillAndStop runs three replicas on one PostgreSQL database, creates
// 2,000 auto-approved requests whose expiries spread over 20 s, SIGKILLs one
// replica half way through the creation and SIGSTOPs another, past its claims'
// lease, while revocations are due. Every request must reach expired, with exactly
// one end event in an audit log that verifies, exactly one effective revoke of
// every grant (and none before its expiry), and no access left behind.
func TestReplicasKillAndStop(t *testing.T) {
	parallel(t, costHeaviest)
	const (
		total    = 2000
		killAt   = 700              // replica 0 dies after this many requests exist
		stopFor  = 35 * time.Second // longer than the scheduler's 30s lease
		spread   = 20               // durations 3s..22s
		creators = 16
		burst    = 400 // requests that expire together, while a replica is frozen
	)
	pg := pgtest.StartT(t, pgtest.Options{})
	dsn, err := pg.CreateDatabase(t.Context(), "replicas")
	if err != nil {
		t.Fatal(err)
	}
	counterDir := t.TempDir()
	// A slow revoke keeps workers in the provider call, so the stopped replica
	// is caught holding claims it will find stale when it resumes.
	config := replicaPolicy(t, `storage: {driver: postgres, dsn: "`+dsn+`"}`,
		`{dir: "`+counterDir+`", revoke_delay: 100ms}`)
	env := []string{"AJAR_MASTER_KEY=" + randomMasterKey(), "AJAR_TESTONLY_PROVIDERS=1"}

	// Start all three at once: migrations and key creation race on purpose.
	reps := make([]*server, 3)
	var wg sync.WaitGroup
	for i := range reps {
		wg.Go(func() { reps[i] = startReplica(t, fmt.Sprintf("r%d", i), config, env...) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, r := range reps {
		if !strings.Contains(r.logs(), ", postgres, ") {
			t.Fatalf("replica %d does not run on postgres:\n%s", i, r.logs())
		}
	}
	clients := make([]*api.Client, 3)
	for i, r := range reps {
		clients[i] = api.NewClient(r.URL, reps[0].tokens["alice"])
	}

	// Create, spread over the replicas that are alive. A create whose replica
	// died under it is retried elsewhere; whatever the dead one committed is in
	// the database and is checked like the rest.
	start := time.Now()
	var dead atomic.Bool
	var created atomic.Int64
	var idsMu sync.Mutex
	var ids []string
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	killed := make(chan struct{})
	errs := make(chan error, creators)
	for w := range creators {
		wg.Go(func() {
			for i := range next {
				for attempt := 0; ; attempt++ {
					rep := (i + attempt) % 3
					if rep == 0 && dead.Load() {
						continue
					}
					in := ajar.CreateInput{Target: "counted", Duration: fmt.Sprintf("%ds", 3+i%spread), Reason: fmt.Sprintf("load %d/%d", w, i)}
					r, err := clients[rep].CreateRequest(context.Background(), in)
					if err != nil {
						if attempt < 5 {
							continue
						}
						errs <- fmt.Errorf("create %d: %w", i, err)
						return
					}
					if r.State != ajar.StateActive {
						errs <- fmt.Errorf("create %d: state %s, want active", i, r.State)
						return
					}
					idsMu.Lock()
					ids = append(ids, r.ID)
					idsMu.Unlock()
					if created.Add(1) == killAt {
						dead.Store(true)
						reps[0].kill() // SIGKILL, with creates in flight on it
						close(killed)
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	<-killed
	createdIn := time.Since(start)
	t.Logf("created %d requests in %v (%.0f/s) on 3 then 2 replicas", total, createdIn.Round(time.Millisecond), total/createdIn.Seconds())

	// A burst of requests that all expire at one instant, so that the replicas
	// have a backlog of revocations to work through when one of them is
	// frozen: on a loaded machine creating the first 2,000 is slow enough that
	// their expiries trickle in one at a time, and a replica frozen then may
	// hold no claim at all.
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	burstAt := time.Now().Add(30 * time.Second)
	var burstIDs []string
	burstCh := make(chan int, burst)
	for i := range burst {
		burstCh <- i
	}
	close(burstCh)
	burstErrs := make(chan error, creators)
	for w := range creators {
		wg.Go(func() {
			for i := range burstCh {
				d := max(time.Until(burstAt).Round(time.Second), time.Second)
				rep := 1 + (w+i)%2 // the two replicas alive
				r, err := clients[rep].CreateRequest(context.Background(), ajar.CreateInput{
					Target: "counted", Duration: d.String(), Reason: fmt.Sprintf("burst %d/%d", w, i)})
				if err != nil {
					burstErrs <- fmt.Errorf("burst create %d: %w", i, err)
					return
				}
				idsMu.Lock()
				ids = append(ids, r.ID)
				burstIDs = append(burstIDs, r.ID)
				idsMu.Unlock()
			}
		})
	}
	wg.Wait()
	close(burstErrs)
	for err := range burstErrs {
		t.Fatal(err)
	}
	// Freeze a replica while the burst's revocations are being worked through
	// (once the first of them has begun), past the lease of what it has
	// claimed, then let it go on.
	eventually(t, 2*time.Minute, "the burst's revocations begin", func() bool {
		var n int
		err := conn.QueryRow(t.Context(), `SELECT count(*) FROM requests WHERE id = ANY($1) AND state <> 'active'`, burstIDs).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	stopped := reps[1]
	if err := stopped.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	resumed := false
	var resumedAt time.Time
	deadline := stoppedAt.Add(stopFor + 45*time.Second)
	for {
		if !resumed && time.Since(stoppedAt) >= stopFor {
			resumedAt = time.Now()
			if err := stopped.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			resumed = true
		}
		n, err := notExpired(t.Context(), conn)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && resumed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests not expired %v after the stop", n, time.Since(stoppedAt).Round(time.Second))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The resumed replica's stale workers finish (and fail to write) now: wait
	// until one of them is seen, which also shows that the stopped replica held
	// claimed work when it was stopped (see stoppedHeldWork).
	eventually(t, 2*time.Minute, "a provider call of the resumed replica for work it claimed before the stop", func() bool {
		return stoppedHeldWork(t, counterDir, stopped.cmd.Process.Pid, resumedAt)
	})
	time.Sleep(2 * time.Second) // let the rest of its stale calls land in the counts
	select {
	case <-stopped.exited:
		t.Fatalf("the resumed replica exited:\n%s", tail(stopped.logs(), 8<<10))
	default:
	}

	// Every request, including any a dying replica committed without
	// answering, is expired.
	stored := dbRequests(t, dsn)
	if len(stored) < total {
		t.Fatalf("%d requests stored, want at least %d", len(stored), total)
	}
	for _, id := range ids {
		if _, ok := stored[id]; !ok {
			t.Fatalf("request %s was created but is not stored", id)
		}
	}
	for _, r := range stored {
		if r.state != string(ajar.StateExpired) {
			t.Errorf("request %s is %s, want expired", r.id, r.state)
		}
	}

	// Exactly one end event per request, in an audit log that verifies.
	admin := api.NewClient(reps[2].URL, reps[2].tokens["admin"])
	evs := allAudit(t, admin)
	ends := map[string]int{}
	activated := map[string]bool{} // became active: the provider granted them
	for _, e := range evs {
		if endActions[e.Action] {
			ends[e.Subject]++
		}
		if e.Action == "request.activated" {
			activated[e.Subject] = true
		}
	}
	for id := range stored {
		if ends[id] != 1 {
			t.Errorf("request %s has %d end events, want 1", id, ends[id])
		}
	}
	if out := reps[2].ok(t, "admin", "audit", "verify"); out != fmt.Sprintf("ok: %d events\n", len(evs)) {
		t.Errorf("audit verify: %q, want ok: %d events", out, len(evs))
	}
	if out := stopped.ok(t, "admin", "audit", "verify"); !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify on the resumed replica: %q", out)
	}

	// The provider: nothing left active, exactly one effective revoke of every
	// grant, none before its expiry.
	counts := readCounter(t, counterDir)
	var lags []time.Duration
	for id, c := range counts {
		r, ok := stored[id]
		if !ok {
			t.Errorf("provider saw request %s, which is not stored", id)
			continue
		}
		if c.active {
			t.Errorf("request %s: access left behind (marker still active)", id)
		}
		if len(c.revokes) > 1 {
			t.Errorf("request %s: %d effective revokes, want 1", id, len(c.revokes))
		}
		for _, at := range c.revokes {
			if at.Before(r.expires) {
				t.Errorf("request %s revoked at %v, %v before its expiry", id, at, r.expires.Sub(at))
			}
			lags = append(lags, at.Sub(r.expires))
		}
	}
	// A request that became active was granted by the provider and must have
	// been revoked exactly once. One whose grant intent was committed by the
	// killed replica, which died before it called the provider or before it
	// recorded the activation, was revoked when it came due (a no-op when the
	// grant never happened): at most one effective revoke, checked above, and
	// nothing left active.
	granted, intents := 0, 0
	for id, r := range stored {
		if !activated[id] {
			if r.activated {
				intents++
			}
			continue
		}
		granted++
		c := counts[id]
		if c == nil {
			c = &counted{}
		}
		if len(c.revokes) != 1 {
			t.Errorf("active request %s: provider saw %d effective revokes, want 1", id, len(c.revokes))
		}
	}
	if intents > 0 {
		t.Logf("%d requests had a grant intent but never became active (the killed replica's)", intents)
	}
	calls := callCounts(t, counterDir)
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	if len(lags) > 0 {
		t.Logf("%d requests (%d granted): %d effective revokes, %d no-op revoke calls (stale or repeated); lag after expiry p50 %v p99 %v max %v",
			len(stored), granted, len(lags), calls["revoke noop"], pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	}
	if len(lags) < granted {
		t.Errorf("%d effective revokes for %d grants", len(lags), granted)
	}
}

// TestReplicaSkewedClock runs a replica whose local clock is 5 minutes ahead next
// to a normal one. Requests are created through both; then the normal replica
// stops and the skewed one alone revokes. Expiry is decided with the database's
// clock, so the skewed replica neither sets expiries 5 minutes late nor revokes
// anything early (with its own clock it would revoke everything at once).
func TestReplicaSkewedClock(t *testing.T) {
	parallel(t, costHeavy)
	pg := pgtest.StartT(t, pgtest.Options{})
	dsn, err := pg.CreateDatabase(t.Context(), "skew")
	if err != nil {
		t.Fatal(err)
	}
	counterDir := t.TempDir()
	// The database comes from AJAR_DATABASE_URL, the policy keeps the default.
	config := replicaPolicy(t, "", `{dir: "`+counterDir+`"}`)
	env := []string{"AJAR_DATABASE_URL=" + dsn, "AJAR_MASTER_KEY=" + randomMasterKey(), "AJAR_TESTONLY_PROVIDERS=1"}
	normal := startReplica(t, "normal", config, env...)
	skewed := startReplica(t, "skewed", config, append(env, "AJAR_TEST_CLOCK_OFFSET=5m")...)
	if !strings.Contains(skewed.logs(), "local clock moved by 5m0s") || !strings.Contains(skewed.logs(), ", postgres, ") {
		t.Fatalf("the replica does not run skewed on postgres:\n%s", skewed.logs())
	}
	const n = 30
	var reqs []*ajar.Request
	for i := range n {
		via := normal
		if i%3 == 0 {
			via = skewed
		}
		c := api.NewClient(via.URL, via.tokens["alice"])
		before := time.Now()
		dur := time.Duration(4+i%4) * time.Second
		r, err := c.CreateRequest(t.Context(), ajar.CreateInput{Target: "counted", Duration: dur.String(), Reason: "skew"})
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now() // the server read its clock between before and after
		if r.State != ajar.StateActive {
			t.Fatalf("request %d is %s, want active", i, r.State)
		}
		if d := r.ExpiresAt.Sub(before.Add(dur)); d < -time.Second || r.ExpiresAt.After(after.Add(dur+2*time.Second)) {
			t.Fatalf("request %d (via %s) expires %v off now+duration by the real clock (the call took %v)", i, via.Data, d, after.Sub(before))
		}
		reqs = append(reqs, r)
	}
	normal.stop() // from now on the skewed replica alone decides
	c := api.NewClient(skewed.URL, skewed.tokens["alice"])
	deadline := time.Now().Add(2 * time.Minute)
	for _, r := range reqs {
		for {
			got, err := c.GetRequest(t.Context(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State == ajar.StateExpired {
				if got.EndedAt.Before(*r.ExpiresAt) {
					t.Errorf("request %s ended at %v, before its expiry %v", r.ID, got.EndedAt, r.ExpiresAt)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("request %s is %s long after its expiry", r.ID, got.State)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	counts := readCounter(t, counterDir)
	var early []string
	for _, r := range reqs {
		cnt := counts[r.ID]
		if cnt == nil || cnt.active || len(cnt.revokes) != 1 {
			t.Fatalf("request %s: provider counts %+v, want one effective revoke and nothing active", r.ID, cnt)
		}
		if at := cnt.revokes[0]; at.Before(*r.ExpiresAt) {
			early = append(early, fmt.Sprintf("%s by %v", r.ID, r.ExpiresAt.Sub(at)))
		}
	}
	sort.Strings(early)
	if len(early) > 0 {
		t.Fatalf("revoked before expiry by the real clock: %v", early)
	}
}

// BenchmarkReplicas measures ajar on PostgreSQL (fsync on) with 1 and 3
// replicas of the real binary (built without the race detector): auto-approved
// requests per second over HTTP, spread over the replicas by 32 clients, and the
// revocation lag (from a request's expiry to the provider's revoke) of a burst of
// 2,000 grants that all expire in the same second. BENCHMARKS.md has the numbers;
// run it with:
//
//	go test -run '^$' -bench Replicas -benchtime 1x -timeout 20m ./e2e/
func BenchmarkReplicas(b *testing.B) {
	dir := b.TempDir()
	fast := filepath.Join(dir, "ajar")
	build := exec.Command("go", "build", "-o", fast, "../cmd/ajar")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build ajar: %v\n%s", err, out)
	}
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			for range b.N {
				benchReplicas(b, fast, n)
			}
		})
	}
}

func benchReplicas(b *testing.B, bin string, n int) {
	const (
		clients    = 32
		throughput = 10 * time.Second
		burst      = 2000
	)
	pg, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Stop()
	dsn, err := pg.CreateDatabase(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	counterDir := b.TempDir()
	config := replicaPolicy(b, `storage: {driver: postgres, dsn: "`+dsn+`"}`, `{dir: "`+counterDir+`"}`)
	env := []string{"AJAR_MASTER_KEY=" + randomMasterKey(), "AJAR_TESTONLY_PROVIDERS=1"}
	reps := make([]*server, n)
	for i := range reps {
		reps[i] = startReplicaOf(b, bin, fmt.Sprintf("r%d", i), config, env...)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: clients}
	cls := make([]*api.Client, n)
	for i, r := range reps {
		cls[i] = &api.Client{BaseURL: r.URL, Token: reps[0].tokens["alice"], HTTP: &http.Client{Transport: transport, Timeout: time.Minute}}
	}

	// Throughput: requests that stay active, as fast as the clients go.
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(throughput)
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			var mine []time.Duration
			for i := 0; time.Now().Before(stop); i++ {
				t0 := time.Now()
				r, err := cls[(w+i)%n].CreateRequest(context.Background(), ajar.CreateInput{Target: "counted", Duration: "1h", Reason: "bench"})
				if err != nil || r.State != ajar.StateActive {
					b.Errorf("create: %v", err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	rps := float64(len(lat)) / elapsed.Seconds()
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(float64(pctl(lat, 0.99).Microseconds())/1000, "p99-ms")

	// Revocation lag: a burst of grants that all expire in the same second.
	expireAt := time.Now().Add(20 * time.Second).Truncate(time.Second)
	next := make(chan int, burst)
	for i := range burst {
		next <- i
	}
	close(next)
	var ids sync.Map
	for w := range clients {
		wg.Go(func() {
			for i := range next {
				d := time.Until(expireAt) + time.Duration(i%1000)*time.Millisecond
				r, err := cls[(w+i)%n].CreateRequest(context.Background(), ajar.CreateInput{Target: "counted", Duration: d.Round(time.Millisecond).String(), Reason: "burst"})
				if err != nil {
					b.Errorf("create: %v", err)
					return
				}
				ids.Store(r.ID, true)
			}
		})
	}
	wg.Wait()
	if time.Now().After(expireAt) {
		b.Fatalf("the burst took longer to create than its expiry")
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	for deadline := expireAt.Add(2 * time.Minute); ; {
		var left int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM requests WHERE reason = 'burst' AND state <> 'expired'`).Scan(&left); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d burst requests not expired 2 minutes after their expiry", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	allDone := time.Since(expireAt)
	stored := dbRequests(b, dsn)
	var lags []time.Duration
	for id, c := range readCounter(b, counterDir) {
		if _, ok := ids.Load(id); ok && len(c.revokes) == 1 {
			lags = append(lags, c.revokes[0].Sub(stored[id].expires))
		}
	}
	if len(lags) != burst {
		b.Fatalf("%d burst revocations counted, want %d", len(lags), burst)
	}
	slices.Sort(lags)
	b.ReportMetric(float64(pctl(lags, 0.5).Microseconds())/1000, "lag-p50-ms")
	b.ReportMetric(float64(pctl(lags, 0.99).Microseconds())/1000, "lag-p99-ms")
	b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "lag-max-ms")
	b.Logf("%d replicas: %d requests in %v = %.0f req/s (latency p50 %v, p99 %v); burst of %d expiring within 1s: revocation lag p50 %v, p99 %v, max %v; all expired %v after the first expiry",
		n, len(lat), elapsed.Round(time.Millisecond), rps, pctl(lat, 0.5).Round(100*time.Microsecond), pctl(lat, 0.99).Round(100*time.Microsecond),
		burst, pctl(lags, 0.5).Round(time.Millisecond), pctl(lags, 0.99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), allDone.Round(time.Millisecond))
	for _, r := range reps {
		r.stop()
	}
}

func pctl(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// TestReplicaTestSwitchesNeedDevMode checks that the test-only switches this
// file uses cannot be turned on in a production server: outside dev mode each one
// stops start-up, and a policy naming testonly-counter does not start without its
// switch.
func TestReplicaTestSwitchesNeedDevMode(t *testing.T) {
	parallel(t, costLight)
	config := replicaPolicy(t, "", `{dir: "`+t.TempDir()+`"}`)
	key := "AJAR_MASTER_KEY=" + randomMasterKey()
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--config", config}, []string{key, "AJAR_TEST_CLOCK_OFFSET=5m"}, "AJAR_TEST_CLOCK_OFFSET is for tests"},
		{[]string{"--config", config}, []string{key, "AJAR_TESTONLY_PROVIDERS=1"}, "AJAR_TESTONLY_PROVIDERS is for tests"},
		{[]string{"--config", config, "--dev", "--unsafe-dev-config"}, []string{key}, "exists only for ajar's own tests"},
		{[]string{"--config", config, "--dev"}, []string{key}, "--unsafe-dev-config"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, c.args...)...)
		cmd.Env = append(append(os.Environ(), "AJAR_DATABASE_URL=", "AJAR_TEST_CLOCK_OFFSET=", "AJAR_TESTONLY_PROVIDERS="), c.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("serve %v with %v: err %v, output:\n%s\nwant an error saying %q", c.args, c.env, err, out, c.want)
		}
	}
}
