package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// An event's requester column (search only) is left empty when the requester
// is the actor, whether the request was written in the same Update or looked
// up: the actor index finds those events for a search by user, and the
// requester index holds only what others did about the user's requests.
func TestAuditRequesterOnlyWhenNotTheActor(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ajar.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &ajar.Request{ID: "r1", Target: "web", Requester: "alice", Reason: "r", Duration: time.Hour,
		Policy: "p", State: ajar.StatePending, CreatedAt: now, UpdatedAt: now, ApprovalDeadline: now}
	appendEv := func(tx ajar.Tx, actor string) error {
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: now, Actor: actor, Action: "x", Subject: "r1"})
		return err
	}
	err = s.Update(ctx, func(tx ajar.Tx) error {
		if err := tx.CreateRequest(ctx, r); err != nil {
			return err
		}
		if err := appendEv(tx, "alice"); err != nil { // 1: known from the Update
			return err
		}
		return appendEv(tx, "ajar") // 2
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx ajar.Tx) error {
		if err := appendEv(tx, "alice"); err != nil { // 3: looked up
			return err
		}
		return appendEv(tx, "bob") // 4
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT seq, coalesce(requester, '-'), coalesce(target, '-') FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var seq int
		var req, tgt string
		if err := rows.Scan(&seq, &req, &tgt); err != nil {
			t.Fatal(err)
		}
		got = append(got, req+"/"+tgt)
	}
	want := []string{"-/web", "alice/web", "-/web", "alice/web"}
	if len(got) != len(want) {
		t.Fatalf("columns %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: requester/target %q, want %q", i+1, got[i], want[i])
		}
	}
	var found []int64
	err = s.View(ctx, func(tx ajar.ReadTx) error {
		evs, err := tx.ListAudit(ctx, ajar.AuditFilter{User: "alice"})
		for _, e := range evs {
			found = append(found, e.Seq)
		}
		return err
	})
	if err != nil || len(found) != 4 {
		t.Errorf("search for alice: %v, %v; want all 4", found, err)
	}
}
