package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/store/postgres"
	"github.com/ajar-dev/ajar/store/postgres/pgtest"
)

// The audit events of a batch (pipeline.go, auditQueue): one INSERT with the
// COMMIT, earlier when a fn needs them in the table, and nothing of the batch
// without them.

// inOneBatch runs fns in Updates of s, one after the other in that order, all
// in one batch (s's batch wait must be long): each fn returns only once the
// next Update waits for the writer. A panic in fn is returned as an error.
func inOneBatch(t *testing.T, s *postgres.Store, fns ...func(ajar.Tx) error) []error {
	t.Helper()
	waitNext := func() {
		for deadline := time.Now().Add(time.Minute); postgres.Pending(s) < 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("no Update came to wait for the writer")
				return
			}
		}
	}
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		in := make(chan struct{})
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("panic: %v", r)
				}
			}()
			errs[i] = s.Update(context.Background(), func(tx ajar.Tx) error {
				close(in)
				if i < len(fns)-1 {
					defer waitNext()
				}
				return fn(tx)
			})
		})
		<-in
	}
	wg.Wait()
	return errs
}

// auditStats counts, with statement triggers of the test's own, the INSERT
// statements on audit_events (with their rows, and the requests stored when
// each ran) and the moves of the chain head, as committed.
type auditStats struct {
	conn *pgx.Conn
}

func newAuditStats(t *testing.T, dsn string) auditStats {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, q := range []string{
		`CREATE TABLE test_audit_inserts (id bigserial, rows bigint NOT NULL, requests bigint NOT NULL)`,
		`CREATE FUNCTION test_count_audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO test_audit_inserts (rows, requests)
				SELECT count(*), (SELECT count(*) FROM requests) FROM new_events;
			RETURN NULL;
		END $$`,
		`CREATE TRIGGER test_count_audit_insert AFTER INSERT ON audit_events
			REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION test_count_audit_insert()`,
		`CREATE TABLE test_head_moves (id bigserial)`,
		`CREATE FUNCTION test_count_head_move() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO test_head_moves DEFAULT VALUES; RETURN NULL; END $$`,
		`CREATE TRIGGER test_count_head_move AFTER UPDATE ON audit_head
			FOR EACH STATEMENT EXECUTE FUNCTION test_count_head_move()`,
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return auditStats{conn}
}

// inserts returns the rows of each committed INSERT on audit_events, and the
// requests stored when it ran, in order.
func (a auditStats) inserts(t *testing.T) (rows, requests []int64) {
	t.Helper()
	res, err := a.conn.Query(t.Context(), `SELECT rows, requests FROM test_audit_inserts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for res.Next() {
		var n, r int64
		if err := res.Scan(&n, &r); err != nil {
			t.Fatal(err)
		}
		rows, requests = append(rows, n), append(requests, r)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, requests
}

// headMoves returns how many committed statements moved the chain head.
func (a auditStats) headMoves(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := a.conn.QueryRow(t.Context(), `SELECT count(*) FROM test_head_moves`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// appendAbout appends an event of action about subject.
func appendAbout(tx ajar.Tx, action, subject string) error {
	_, err := tx.AppendAudit(context.Background(), ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: action, Subject: subject})
	return err
}

// actions returns the actions of s's audit log after checking that it is one
// linear chain of want events.
func actions(t *testing.T, s ajar.Store, want int) []string {
	t.Helper()
	var out []string
	for _, e := range checkChain(t, s, want) {
		out = append(out, e.Action)
	}
	return out
}

// TestBatchAuditOneInsert checks that the audit events of a batch's fns are
// inserted by one statement, which moves the chain head once, when the batch
// commits (every request of the batch is stored when it runs); the events of
// the fns that failed (an error, a failed statement, a panic) are not among
// them. Two fns append under the batch's head lock without sending a
// statement: the one that succeeds has its events inserted, the one that fails
// not. With group commit off, each Update inserts its own.
func TestBatchAuditOneInsert(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBatch int
		inserts  int
	}{
		{"batched", postgres.DefaultMaxBatch, 1},
		{"maxbatch1", 1, 7}, // the 7 that succeed
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			s := open(t, dsn, postgres.WithMaxBatch(tc.maxBatch))
			postgres.SetBatchWait(s, time.Hour)
			stats := newAuditStats(t, dsn)
			var fns []func(ajar.Tx) error
			var want []string
			for i := range 9 {
				id := fmt.Sprintf("r%d", i)
				fail := i%3 == 1
				if !fail {
					want = append(want, id+".created", id+".done")
				}
				fns = append(fns, func(tx ajar.Tx) error {
					if err := tx.CreateRequest(context.Background(), request(id, tx.Now(), nil)); err != nil {
						return err
					}
					if err := errors.Join(appendAbout(tx, id+".created", id), appendAbout(tx, id+".done", id)); err != nil {
						return err
					}
					switch {
					case !fail:
						return nil
					case i == 1:
						return errBoom
					case i == 4:
						bad := request(id+"-nul", tx.Now(), nil)
						bad.Reason = "a\x00b"
						_ = tx.CreateRequest(context.Background(), bad) // fails; ignored on purpose
						return nil
					default:
						panic("boom")
					}
				})
			}
			// Appends only: under the batch's head lock, no statement.
			want = append(want, "only")
			fns = append(fns,
				func(tx ajar.Tx) error { return appendAbout(tx, "only", "s") },
				func(tx ajar.Tx) error { return errors.Join(appendAbout(tx, "only-failed", "s"), errBoom) })
			before := postgres.Commits(s)
			errs := inOneBatch(t, s, fns...)
			for i, err := range errs {
				if fail := i%3 == 1; fail == (err == nil) {
					t.Errorf("fn %d: Update returned %v", i, err)
				}
			}
			if tc.maxBatch > 1 {
				if got := postgres.Commits(s) - before; got != 1 {
					t.Fatalf("%d commits for one batch, want 1", got)
				}
			}
			if got := actions(t, s, len(want)); !slices.Equal(got, want) {
				t.Errorf("audit log %v, want %v", got, want)
			}
			rows, requests := stats.inserts(t)
			if len(rows) != tc.inserts {
				t.Errorf("%d INSERT statements on audit_events (rows %v), want %d", len(rows), rows, tc.inserts)
			}
			if tc.maxBatch > 1 && len(rows) == 1 && (rows[0] != int64(len(want)) || requests[0] != 6) {
				t.Errorf("the batch's INSERT had %d rows with %d requests stored, want %d rows when the 6 requests are", rows[0], requests[0], len(want))
			}
			if got := stats.headMoves(t); got != int64(tc.inserts) {
				t.Errorf("the chain head moved %d times, want %d", got, tc.inserts)
			}
		})
	}
}

// TestBatchAuditRowsPerInsert checks that a batch with more events than one
// INSERT carries inserts them in as few statements as the bound allows, as
// one chain.
func TestBatchAuditRowsPerInsert(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	stats := newAuditStats(t, dsn)
	n := 2*postgres.MaxAuditRows + 1
	update(t, s, func(tx ajar.Tx) error {
		for i := range n {
			if err := appendAbout(tx, fmt.Sprint(i), "s"); err != nil {
				return err
			}
		}
		return nil
	})
	checkChain(t, s, n)
	rows, _ := stats.inserts(t)
	if want := []int64{postgres.MaxAuditRows, postgres.MaxAuditRows, 1}; !slices.Equal(rows, want) {
		t.Errorf("INSERT statements of %v rows, want %v", rows, want)
	}
}

// TestBatchReadSeesEarlierEvents checks that a fn reads the events the fns
// before it in its batch appended, not inserted yet: ListAudit (also by the
// target, a column the INSERT names) and AuditHead.
func TestBatchReadSeesEarlierEvents(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	postgres.SetBatchWait(s, time.Hour)
	ctx := t.Context()
	var a ajar.AuditEvent
	errs := inOneBatch(t, s,
		func(tx ajar.Tx) error {
			if err := tx.CreateRequest(ctx, request("r", tx.Now(), nil)); err != nil {
				return err
			}
			var err error
			a, err = tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "bob", Action: "a", Subject: "r"})
			return err
		},
		func(tx ajar.Tx) error {
			for _, f := range []ajar.AuditFilter{{}, {Target: "web"}, {User: "alice"}} {
				evs, err := tx.ListAudit(ctx, f)
				if err != nil {
					return err
				}
				if len(evs) != 1 || evs[0].Action != "a" {
					t.Errorf("ListAudit(%+v) in the next fn: %+v, want a", f, evs)
				}
			}
			seq, hash, err := tx.AuditHead(ctx)
			if err != nil {
				return err
			}
			if seq != a.Seq || string(hash) != string(a.Hash) {
				t.Errorf("AuditHead in the next fn: %d, want %d (a)", seq, a.Seq)
			}
			return appendAbout(tx, "b", "r")
		})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Update: %v", errs)
	}
	if got := actions(t, s, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("audit log %v, want a, b", got)
	}
}

// TestBatchEventsInsertedInARolledBackUpdate: a fn that has the earlier fns'
// events inserted (it reads the log, or writes a request an event waiting
// names without its requester and target) and then fails leaves none of its
// own, and theirs are inserted all the same (the rollback of its savepoint
// undid that INSERT), whether a fn follows it in the batch or not.
func TestBatchEventsInsertedInARolledBackUpdate(t *testing.T) {
	for _, flush := range []string{"ListAudit", "CreateRequest"} {
		for _, fail := range []string{"error", "statement", "panic"} {
			for _, last := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/last=%v", flush, fail, last), func(t *testing.T) {
					dsn := pgtest.NewDatabase(t)
					s := open(t, dsn)
					postgres.SetBatchWait(s, time.Hour)
					ctx := t.Context()
					fns := []func(ajar.Tx) error{
						func(tx ajar.Tx) error {
							if err := createWithAudit(ctx, tx, "a"); err != nil {
								return err
							}
							return appendAbout(tx, "about-x", "x") // no request x: unnamed
						},
						func(tx ajar.Tx) error {
							switch flush {
							case "ListAudit":
								evs, err := tx.ListAudit(ctx, ajar.AuditFilter{})
								if err != nil {
									return err
								}
								if len(evs) != 2 {
									t.Errorf("B read %d events, want a's 2", len(evs))
								}
							case "CreateRequest":
								if err := tx.CreateRequest(ctx, request("x", tx.Now(), nil)); err != nil {
									return err
								}
							}
							if err := appendAbout(tx, "b", "x"); err != nil {
								return err
							}
							switch fail {
							case "error":
								return errBoom
							case "statement":
								bad := request("nul", tx.Now(), nil)
								bad.Reason = "a\x00b"
								_ = tx.CreateRequest(ctx, bad) // fails; ignored on purpose
								return nil
							default:
								panic("boom")
							}
						},
					}
					if !last {
						fns = append(fns, func(tx ajar.Tx) error { return createWithAudit(ctx, tx, "c") })
					}
					errs := inOneBatch(t, s, fns...)
					if errs[0] != nil || errs[1] == nil || (!last && errs[2] != nil) {
						t.Fatalf("Update: %v, want B's error only", errs)
					}
					want := []string{"request.created", "about-x"}
					wantReqs := []string{"a"}
					if !last {
						want = append(want, "request.created")
						wantReqs = append(wantReqs, "c")
					}
					if got := actions(t, s, len(want)); !slices.Equal(got, want) {
						t.Errorf("audit log %v, want %v", got, want)
					}
					if got := present(t, s, []string{"a", "c", "nul", "x"}); !slices.Equal(got, wantReqs) {
						t.Errorf("stored requests %v, want %v", got, wantReqs)
					}
					// x was never stored: the event about it names nobody.
					if got := requestColumns(t, dsn)[1]; got != (cols{"x", "", ""}) {
						t.Errorf("the event about x: %v, want no requester or target", got)
					}
				})
			}
		}
	}
}

// TestBatchNotCommittedWithoutItsEvents: the batch's events are inserted with
// its COMMIT; if they cannot be (a trigger of the test's own refuses one),
// nothing of the batch commits, every Update in it returns an error, and no
// AfterCommit function runs. A single Update, whose events go with the COMMIT
// after its queued writes (a certificate record) or alone; a batch whose
// failing event is in the middle; one whose last fn has it and queued writes
// (the INSERT goes after them, with the COMMIT); and one whose last fn reads
// the log (the INSERT fails there first). The store goes on working.
func TestBatchNotCommittedWithoutItsEvents(t *testing.T) {
	for _, tc := range []string{"single", "single-queued", "batch", "batch-last-queued", "batch-read"} {
		t.Run(tc, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			s := open(t, dsn)
			postgres.SetBatchWait(s, time.Hour)
			conn, err := pgx.Connect(t.Context(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(t.Context(), `
				CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'poisoned event'; END $$;
				CREATE TRIGGER poison BEFORE INSERT ON audit_events
					FOR EACH ROW WHEN (NEW.subject = 'poison') EXECUTE FUNCTION poison();`); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			var mu sync.Mutex
			ran := 0
			good := func(id string) func(ajar.Tx) error {
				return func(tx ajar.Tx) error {
					tx.AfterCommit(func() { mu.Lock(); ran++; mu.Unlock() })
					return createWithAudit(ctx, tx, id)
				}
			}
			poisoned := func(tx ajar.Tx) error {
				tx.AfterCommit(func() { mu.Lock(); ran++; mu.Unlock() })
				if err := tx.PutKey(ctx, "k", []byte("v")); err != nil {
					return err
				}
				if err := appendAbout(tx, "poisoned", "poison"); err != nil {
					return err
				}
				if strings.HasSuffix(tc, "-queued") {
					return tx.InsertSSHCert(ctx, ajar.SSHCert{Serial: 7, RequestID: "r", ValidAfter: tx.Now(), ValidBefore: tx.Now(), IssuedAt: tx.Now()})
				}
				return nil
			}
			var errs []error
			switch tc {
			case "single", "single-queued":
				errs = []error{s.Update(ctx, poisoned)}
			case "batch":
				errs = inOneBatch(t, s, good("a"), poisoned, good("c"))
			case "batch-last-queued":
				errs = inOneBatch(t, s, good("a"), good("c"), poisoned)
			case "batch-read":
				errs = inOneBatch(t, s, good("a"), poisoned, func(tx ajar.Tx) error {
					if err := good("c")(tx); err != nil {
						return err
					}
					_, err := tx.ListAudit(ctx, ajar.AuditFilter{})
					return err
				})
			}
			for i, err := range errs {
				if err == nil {
					t.Errorf("Update %d returned nil, but its batch's events could not be inserted", i)
				} else if !strings.Contains(err.Error(), "poisoned event") {
					t.Errorf("Update %d returned %v, want the INSERT's error", i, err)
				}
			}
			if ran != 0 {
				t.Errorf("%d AfterCommit functions ran, nothing committed", ran)
			}
			if got := present(t, s, []string{"a", "c"}); len(got) != 0 {
				t.Errorf("stored without their events: %v", got)
			}
			err = s.View(ctx, func(tx ajar.ReadTx) error {
				if _, err := tx.GetKey(ctx, "k"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
					t.Errorf("the key is stored without its event: GetKey = %v", err)
				}
				certs, err := tx.ListSSHCerts(ctx, "")
				if err == nil && len(certs) != 0 {
					t.Errorf("certificate records stored: %+v", certs)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			checkChain(t, s, 0)
			update(t, s, func(tx ajar.Tx) error { return createWithAudit(ctx, tx, "after") })
			checkChain(t, s, 1)
		})
	}
}

// TestBatchAuditRequestColumns checks an event's requester and target (audit
// search) when it is inserted with its batch rather than when its fn ends:
// they are those of the request as it was when the event was appended, as if
// each fn had inserted its own events. Named by the store for a request its fn
// or an earlier fn of the batch wrote; filled in by the trigger for the
// others, before a later fn writes the request (CreateRequest, UpdateRequest,
// UpdateRequests) or with the COMMIT.
func TestBatchAuditRequestColumns(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	postgres.SetBatchWait(s, time.Hour)
	ctx := t.Context()
	create := func(tx ajar.Tx, id, requester, target string) error {
		r := request(id, tx.Now(), nil)
		r.Requester, r.Target = requester, target
		return tx.CreateRequest(ctx, r)
	}
	// change gives request id another requester and target, with UpdateRequest
	// or, if many, UpdateRequests.
	change := func(tx ajar.Tx, id, requester, target string, many bool) error {
		r, err := tx.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		r.Requester, r.Target = requester, target
		if many {
			return tx.UpdateRequests(ctx, []*ajar.Request{r})
		}
		return tx.UpdateRequest(ctx, r)
	}
	update(t, s, func(tx ajar.Tx) error {
		return errors.Join(create(tx, "r0", "alice-0", "web-0"), create(tx, "r3", "alice-3", "web-3"),
			create(tx, "r4", "alice-4", "web-4"))
	})
	// Each write below is the first one, since the events were last
	// inserted, to a request that an event waiting names by the trigger.
	errs := inOneBatch(t, s,
		func(tx ajar.Tx) error {
			return errors.Join(create(tx, "r1", "alice-1", "web-1"),
				appendAbout(tx, "1", "r1"), // written by this fn
				appendAbout(tx, "2", "r0")) // stored before the batch
		},
		func(tx ajar.Tx) error {
			return errors.Join(appendAbout(tx, "3", "r1"), // written by the fn before
				change(tx, "r0", "mallory", "db", false),
				appendAbout(tx, "4", "r0"))
		},
		func(tx ajar.Tx) error {
			return errors.Join(appendAbout(tx, "5", "r9"), // no such request yet
				create(tx, "r9", "alice-9", "web-9"),
				appendAbout(tx, "6", "r9"))
		},
		func(tx ajar.Tx) error { return appendAbout(tx, "7", "r3") },
		func(tx ajar.Tx) error {
			return errors.Join(change(tx, "r3", "eve", "ftp", true),
				appendAbout(tx, "8", "r3"),
				appendAbout(tx, "9", "r4")) // inserted with the COMMIT
		})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
	}
	want := []cols{
		{"r1", "alice-1", "web-1"}, {"r0", "alice-0", "web-0"},
		{"r1", "alice-1", "web-1"}, {"r0", "mallory", "db"},
		{"r9", "", ""}, {"r9", "alice-9", "web-9"},
		{"r3", "alice-3", "web-3"},
		{"r3", "eve", "ftp"}, {"r4", "alice-4", "web-4"},
	}
	if got := requestColumns(t, dsn); !slices.Equal(got, want) {
		t.Errorf("audit events' subject, requester, target:\n got %v\nwant %v", got, want)
	}
}

// TestBatchAuditTextChecked: text PostgreSQL cannot store or index in an event fails
// AppendAudit (EINVALID) at once, not the INSERT of the batch's events, which
// would fail every fn of the batch.
func TestBatchAuditTextChecked(t *testing.T) {
	// Random text too long for an index entry, even compressed.
	long := make([]byte, 6000)
	rand.Read(long)
	for _, actor := range []string{"a\x00b", "a\xffb", base64.StdEncoding.EncodeToString(long)} {
		s := open(t, pgtest.NewDatabase(t))
		postgres.SetBatchWait(s, time.Hour)
		ctx := t.Context()
		errs := inOneBatch(t, s,
			func(tx ajar.Tx) error { return createWithAudit(ctx, tx, "a") },
			func(tx ajar.Tx) error {
				_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: actor, Action: "x", Subject: "s"})
				return err
			},
			func(tx ajar.Tx) error { return createWithAudit(ctx, tx, "c") })
		if errs[0] != nil || ajar.ErrorCode(errs[1]) != ajar.EINVALID || errs[2] != nil {
			t.Errorf("actor %q: Update returned %v, want %s for the second only", actor, errs, ajar.EINVALID)
		}
		checkChain(t, s, 2)
	}
}

// cols are an audit event's subject, requester and target ("" for NULL).
type cols struct{ subject, requester, target string }

// requestColumns returns the subject, requester and target of every event in
// seq order.
func requestColumns(t *testing.T, dsn string) []cols {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT subject, requester, target FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (cols, error) {
		var c cols
		var req, tgt *string
		err := row.Scan(&c.subject, &req, &tgt)
		if req != nil {
			c.requester = *req
		}
		if tgt != nil {
			c.target = *tgt
		}
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
