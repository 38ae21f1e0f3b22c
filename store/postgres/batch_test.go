package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

var errBoom = errors.New("boom")

// gated runs lead in an Update of s and, while it runs, starts the others, each
// in its own Update; lead's fn returns (lead's error) only once all of them
// wait to run, so with group commit they join lead's batch. It returns each Update's result, lead's
// first.
func gated(t *testing.T, s *postgres.Store, lead func(ajar.Tx) error, others []func(context.Context, ajar.Tx) error, ctxs []context.Context) []error {
	t.Helper()
	errs := make([]error, 1+len(others))
	running := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		errs[0] = s.Update(t.Context(), func(tx ajar.Tx) error {
			close(running)
			err := lead(tx)
			for deadline := time.Now().Add(time.Minute); postgres.Pending(s) < int64(len(others)); {
				if time.Now().After(deadline) {
					return fmt.Errorf("only %d of %d updates waiting after a minute", postgres.Pending(s), len(others))
				}
				time.Sleep(time.Millisecond)
			}
			return err
		})
	})
	<-running
	for i, fn := range others {
		ctx := t.Context()
		if ctxs != nil && ctxs[i] != nil {
			ctx = ctxs[i]
		}
		wg.Go(func() { errs[1+i] = s.Update(ctx, func(tx ajar.Tx) error { return fn(ctx, tx) }) })
	}
	wg.Wait()
	return errs
}

// createWithAudit writes request id and its audit event.
func createWithAudit(ctx context.Context, tx ajar.Tx, id string) error {
	if err := tx.CreateRequest(ctx, request(id, tx.Now(), nil)); err != nil {
		return err
	}
	_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "request.created", Subject: id})
	return err
}

// present returns which of ids are stored.
func present(t *testing.T, s ajar.Store, ids []string) []string {
	t.Helper()
	var out []string
	err := s.View(t.Context(), func(tx ajar.ReadTx) error {
		for _, id := range ids {
			_, err := tx.GetRequest(t.Context(), id)
			switch {
			case err == nil:
				out = append(out, id)
			case ajar.ErrorCode(err) != ajar.ENOTFOUND:
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// headLockedElsewhere reports whether another session holds the chain-head lock.
func headLockedElsewhere(ctx context.Context, conn *pgx.Conn) (bool, error) {
	_, err := conn.Exec(ctx, `SELECT 1 FROM audit_head FOR UPDATE NOWAIT`)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
		return true, nil
	}
	return false, err
}

// TestGroupCommit has 32 writers, a quarter of which succeed, arrive together.
// The others fail in each way a fn can: it returns an error after writing, its
// first statement fails (PostgreSQL aborts the transaction until the savepoint is
// rolled back) and fn returns that error, or a later statement fails and fn
// ignores it.
// The first, which takes the chain-head lock, fails too. With group commit the
// 32 share one commit; the failed ones leave nothing, the others are all there,
// and the audit chain is one linear chain. Every successful fn checks that the
// chain-head lock is held while it runs: rolling back the savepoint of the fn
// that took it released it, so the next writer must take it again.
func TestGroupCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBatch int
		commits  int64
	}{
		{"batched", postgres.DefaultMaxBatch, 1},
		{"maxbatch1", 1, 8}, // the 8 that succeed
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			s := open(t, dsn, postgres.WithMaxBatch(tc.maxBatch))
			postgres.SetBatchWait(s, time.Hour)
			conn, err := pgx.Connect(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var checkMu sync.Mutex
			checkLocked := func(ctx context.Context) error {
				checkMu.Lock()
				defer checkMu.Unlock()
				locked, err := headLockedElsewhere(ctx, conn)
				if err == nil && !locked {
					err = errors.New("the chain-head lock is not held while a successful fn runs")
				}
				return err
			}

			var ids, wantOK []string
			var others []func(context.Context, ajar.Tx) error
			for i := range 31 {
				id := fmt.Sprintf("m%02d", i)
				ids = append(ids, id)
				kind := i % 4
				if kind == 0 {
					wantOK = append(wantOK, id)
				}
				others = append(others, func(ctx context.Context, tx ajar.Tx) error {
					if kind == 0 {
						// Locked from the first write on, before the
						// append (whose trigger would lock it too).
						if err := tx.CreateRequest(ctx, request(id, tx.Now(), nil)); err != nil {
							return err
						}
						if err := checkLocked(ctx); err != nil {
							return err
						}
						_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "request.created", Subject: id})
						return err
					}
					bad := request(id+"-nul", tx.Now(), nil)
					bad.Reason = "a\x00b"
					if kind == 2 {
						// The first statement fails (sent with fn's savepoint).
						return tx.CreateRequest(ctx, bad)
					}
					if err := createWithAudit(ctx, tx, id); err != nil {
						return err
					}
					switch kind {
					case 1:
						return errBoom
					default:
						_ = tx.CreateRequest(ctx, bad) // fails; ignored on purpose
						return nil
					}
				})
			}
			before := postgres.Commits(s)
			errs := gated(t, s, func(tx ajar.Tx) error {
				if err := createWithAudit(t.Context(), tx, "lead"); err != nil {
					return err
				}
				if err := checkLocked(t.Context()); err != nil {
					return err
				}
				return errBoom
			}, others, nil)
			if errs[0] != errBoom {
				t.Fatalf("lead: %v, want errBoom", errs[0])
			}
			for i, err := range errs[1:] {
				switch i % 4 {
				case 0:
					if err != nil {
						t.Errorf("%s: %v", ids[i], err)
					}
				case 1:
					if err != errBoom {
						t.Errorf("%s: Update returned %v, want fn's error unchanged", ids[i], err)
					}
				case 2:
					if ajar.ErrorCode(err) != ajar.EINVALID {
						t.Errorf("%s: Update returned %v, want %s", ids[i], err, ajar.EINVALID)
					}
				case 3:
					if err == nil {
						t.Errorf("%s: Update committed after a failed statement", ids[i])
					}
				}
			}
			if got := postgres.Commits(s) - before; got != tc.commits {
				t.Errorf("%d commits for 32 updates, want %d", got, tc.commits)
			}
			if got := present(t, s, append([]string{"lead"}, ids...)); !slices.Equal(got, wantOK) {
				t.Errorf("stored requests %v, want %v", got, wantOK)
			}
			evs := checkChain(t, s, len(wantOK))
			var subjects []string
			for _, e := range evs {
				subjects = append(subjects, e.Subject)
			}
			slices.Sort(subjects)
			if !slices.Equal(subjects, wantOK) {
				t.Errorf("audit subjects %v, want %v", subjects, wantOK)
			}
		})
	}
}

// TestBatchCommitFailure makes the COMMIT of a batch fail (a deferred
// constraint that one member violates): every member of the batch must be told,
// none of their writes is stored, and the store goes on working.
func TestBatchCommitFailure(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	postgres.SetBatchWait(s, time.Hour)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `
		CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'boom at commit'; END $$;
		CREATE CONSTRAINT TRIGGER boom AFTER INSERT ON keys DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW WHEN (NEW.name = 'boom') EXECUTE FUNCTION boom();`); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var others []func(context.Context, ajar.Tx) error
	for i := range 7 {
		id := fmt.Sprintf("c%d", i)
		ids = append(ids, id)
		others = append(others, func(ctx context.Context, tx ajar.Tx) error {
			if err := createWithAudit(ctx, tx, id); err != nil {
				return err
			}
			if i == 3 {
				return tx.PutKey(ctx, "boom", []byte("x")) // fails at COMMIT only
			}
			return nil
		})
	}
	errs := gated(t, s, func(tx ajar.Tx) error { return createWithAudit(t.Context(), tx, "lead") }, others, nil)
	for i, err := range errs {
		if err == nil {
			t.Errorf("member %d: Update returned nil, but the batch did not commit", i)
		}
	}
	if got := present(t, s, append([]string{"lead"}, ids...)); len(got) != 0 {
		t.Errorf("stored after a failed commit: %v", got)
	}
	checkChain(t, s, 0)
	update(t, s, func(tx ajar.Tx) error { return createWithAudit(t.Context(), tx, "after") })
	checkChain(t, s, 1)
}

// TestBatchCancelledMember cancels two members of a batch: one before its fn
// runs, one in the middle of its fn. Neither leaves anything and the rest of the
// batch commits.
func TestBatchCancelledMember(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	postgres.SetBatchWait(s, time.Hour)
	early, cancelEarly := context.WithCancel(t.Context())
	cancelEarly()
	mid, cancelMid := context.WithCancel(t.Context())
	defer cancelMid()
	ranEarly := false
	others := []func(context.Context, ajar.Tx) error{
		func(ctx context.Context, tx ajar.Tx) error { return createWithAudit(ctx, tx, "a") },
		func(ctx context.Context, tx ajar.Tx) error { ranEarly = true; return createWithAudit(ctx, tx, "early") },
		func(ctx context.Context, tx ajar.Tx) error {
			if err := createWithAudit(ctx, tx, "mid"); err != nil {
				return err
			}
			cancelMid()
			_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "x", Subject: "mid"})
			if err == nil {
				return errors.New("AppendAudit succeeded with a cancelled context")
			}
			return err
		},
		func(ctx context.Context, tx ajar.Tx) error { return createWithAudit(ctx, tx, "b") },
	}
	before := postgres.Commits(s)
	errs := gated(t, s, func(tx ajar.Tx) error { return createWithAudit(t.Context(), tx, "lead") }, others,
		[]context.Context{nil, early, mid, nil})
	for i, want := range []error{nil, nil, context.Canceled, context.Canceled, nil} {
		if !errors.Is(errs[i], want) || (want == nil && errs[i] != nil) {
			t.Errorf("member %d: %v, want %v", i, errs[i], want)
		}
	}
	if ranEarly {
		t.Error("fn ran although its context was cancelled before")
	}
	if got := postgres.Commits(s) - before; got != 1 {
		t.Errorf("%d commits, want 1", got)
	}
	want := []string{"a", "b", "lead"}
	if got := present(t, s, []string{"a", "b", "early", "lead", "mid"}); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	checkChain(t, s, 3)
}

// TestClaimEndsBatch: a fn that claims rows while its batch does not hold the
// chain-head lock ends the batch, so no later fn of it waits for that lock while
// holding the claimed rows.
func TestClaimEndsBatch(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	postgres.SetBatchWait(s, time.Hour)
	before := postgres.Commits(s)
	var others []func(context.Context, ajar.Tx) error
	for i := range 3 {
		others = append(others, func(ctx context.Context, tx ajar.Tx) error {
			return createWithAudit(ctx, tx, fmt.Sprintf("w%d", i))
		})
	}
	errs := gated(t, s, func(tx ajar.Tx) error {
		_, err := tx.ClaimDue(t.Context(), tx.Now(), tx.Now().Add(time.Minute), 10)
		return err
	}, others, nil)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	if got := postgres.Commits(s) - before; got != 2 {
		t.Errorf("%d commits, want 2: the claim's batch took more fns", got)
	}
	checkChain(t, s, 3)
}
