package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// AuditLogSample names what a benchmark searches for in a log LoadAuditLog
// wrote: an old request, a user, a target, and an hour of events in the
// middle of the log.
type AuditLogSample struct {
	Request  string
	User     string
	Target   string
	From, To time.Time
	Head     []byte // the last event's hash
}

// Shape of the log LoadAuditLog writes.
const (
	auditLogPerRequest = 10   // events about each request
	auditLogUsers      = 1000 // requesters
	auditLogTargets    = 100
	auditLogRows       = 500   // rows per INSERT
	auditLogCommit     = 50000 // events per transaction
)

// LoadAuditLog writes n audit events (n a positive multiple of 10) and their
// requests straight into the tables of an empty store (migrated, no events
// yet) through db, with multi-row INSERTs: a store's own AppendAudit is far
// too slow to build a log of a million events for a benchmark. numbered
// selects PostgreSQL's $n placeholders (else SQLite's ?).
//
// A request by one of 1,000 users for one of 100 targets comes every 10
// events, one event a second, so the log spans n seconds; its events are those
// of a request's life (created, approved by another user, activated, a
// certificate, SSH sessions, expired). The chain is valid: audit.Verify
// accepts it.
func LoadAuditLog(ctx context.Context, db *sql.DB, numbered bool, n int) (AuditLogSample, error) {
	if n <= 0 || n%auditLogPerRequest != 0 {
		return AuditLogSample{}, fmt.Errorf("load audit log: %d events is not a positive multiple of %d", n, auditLogPerRequest)
	}
	base := time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)
	actions := [auditLogPerRequest]string{
		"request.created", "approval.recorded", "request.approved", "grant.started", "request.activated",
		"ssh_cert.issued", "ssh.session.started", "ssh.session.ended", "request.expired", "request.revoked",
	}
	user := func(i int) string { return fmt.Sprintf("user%04d@example.com", i%auditLogUsers) }
	fixed := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") }
	// insert writes rows of cols into table with one multi-row INSERT.
	insert := func(tx *sql.Tx, table, cols string, rows [][]any) error {
		if len(rows) == 0 {
			return nil
		}
		var b strings.Builder
		args := make([]any, 0, len(rows)*len(rows[0]))
		b.WriteString("INSERT INTO " + table + " (" + cols + ") VALUES ")
		for i, row := range rows {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j, v := range row {
				if j > 0 {
					b.WriteString(", ")
				}
				args = append(args, v)
				if numbered {
					b.WriteString("$" + strconv.Itoa(len(args)))
				} else {
					b.WriteByte('?')
				}
			}
			b.WriteByte(')')
		}
		_, err := tx.ExecContext(ctx, b.String(), args...)
		return err
	}
	const (
		requestCols = `id, target, requester, reason, ticket, duration, params, policy, state, end_reason,
			created_at, updated_at, approval_deadline, approvals, handle, attempts, last_error, version`
		eventCols = `seq, time, actor, action, subject, details, prev_hash, hash`
	)
	// PostgreSQL's insert trigger updates the one audit_head row per event:
	// in one transaction its versions pile up and each update walks them all,
	// so commit after every INSERT there.
	commit := auditLogCommit
	if numbered {
		commit = auditLogRows
	}
	var head []byte
	for done := 0; done < n; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return AuditLogSample{}, fmt.Errorf("load audit log: %w", err)
		}
		for end := min(done+commit, n); done < end && err == nil; {
			var reqs, evs [][]any
			for stop := min(done+auditLogRows, end); done < stop; done += auditLogPerRequest {
				k := done / auditLogPerRequest
				id := fmt.Sprintf("req_%010d", k)
				at := base.Add(time.Duration(done) * time.Second)
				requester, target := user(k), fmt.Sprintf("target-%03d", k%auditLogTargets)
				reqs = append(reqs, []any{id, target, requester, "benchmark", "", int64(time.Hour), "null", "p",
					string(ajar.StateExpired), "", fixed(at), fixed(at), fixed(at.Add(time.Hour)), "null", "null", int64(0), "", int64(1)})
				for j, action := range actions {
					actor := ajar.ActorSystem
					switch j {
					case 0, 6, 7:
						actor = requester
					case 1:
						actor = user(k + 1)
					}
					e := ajar.AuditEvent{
						Seq: int64(done + j + 1), Time: at.Add(time.Duration(j) * time.Second), Actor: actor, Action: action, Subject: id,
						Details: []byte(`{"target":"` + target + `","note":"benchmark event with some detail"}`), PrevHash: head,
					}
					e.Hash = e.ComputeHash()
					head = e.Hash
					evs = append(evs, []any{e.Seq, e.Time.Format(time.RFC3339Nano), e.Actor, e.Action, e.Subject, []byte(e.Details), e.PrevHash, e.Hash})
				}
			}
			if err = insert(tx, "requests", requestCols, reqs); err == nil {
				err = insert(tx, "audit_events", eventCols+requesterTarget(numbered), withRequest(evs, reqs, numbered))
			}
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return AuditLogSample{}, fmt.Errorf("load audit log: %w", err)
		}
	}
	mid := base.Add(time.Duration(n/2) * time.Second)
	return AuditLogSample{
		Request: fmt.Sprintf("req_%010d", n/auditLogPerRequest/10),
		User:    user(7),
		Target:  fmt.Sprintf("target-%03d", 42),
		From:    mid,
		To:      mid.Add(time.Hour),
		Head:    head,
	}, nil
}

// requesterTarget is the search columns LoadAuditLog writes itself: SQLite's
// AppendAudit fills them in its INSERT, PostgreSQL's insert trigger does.
func requesterTarget(numbered bool) string {
	if numbered {
		return ""
	}
	return ", requester, target"
}

// withRequest adds to each event row the requester and target of its request
// (reqs are the requests of evs, auditLogPerRequest events each), for SQLite.
func withRequest(evs, reqs [][]any, numbered bool) [][]any {
	if numbered {
		return evs
	}
	for i := range evs {
		r := reqs[i/auditLogPerRequest]
		evs[i] = append(evs[i], r[2], r[1])
	}
	return evs
}

// BenchAuditSearch runs one sub-benchmark per search of a log LoadAuditLog
// wrote (s reads it): one request, one user, one target, one hour, and one
// target in that hour, each the newest 50 matches, and reports ms/search.
func BenchAuditSearch(b *testing.B, s ajar.Store, sample AuditLogSample) {
	for _, c := range []struct {
		name string
		f    ajar.AuditFilter
		min  int // matches the search must find
	}{
		{"request", ajar.AuditFilter{Subject: sample.Request}, auditLogPerRequest},
		{"user", ajar.AuditFilter{User: sample.User}, 50},
		{"target", ajar.AuditFilter{Target: sample.Target}, 50},
		{"hour", ajar.AuditFilter{From: sample.From, To: sample.To}, 50},
		{"target_hour", ajar.AuditFilter{Target: sample.Target, From: sample.From, To: sample.To}, 10},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.f.Newest, c.f.Limit = true, 50
			for b.Loop() {
				err := s.View(b.Context(), func(tx ajar.ReadTx) error {
					evs, err := tx.ListAudit(b.Context(), c.f)
					if err == nil && len(evs) < c.min {
						err = fmt.Errorf("found %d events, want at least %d", len(evs), c.min)
					}
					return err
				})
				if err != nil {
					b.Fatalf("%s: %v", c.name, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/search")
		})
	}
}
