package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// A store may hold back a write whose result fn does not wait for (an audit
// append, a certificate record) and send it with a later statement, as the
// PostgreSQL store does to save round trips. These checks pin what that must
// not change: fn reads its own writes, a write that fails fails fn even when
// its error comes back later, and nothing a failed fn wrote survives, next to
// functions that succeed in the same commit.

// pipeCert is a certificate record for request req.
func pipeCert(serial uint64, req string) ajar.SSHCert {
	return ajar.SSHCert{
		Serial: serial, RequestID: req, KeyID: fmt.Sprintf("ajar:%s:%d", req, serial),
		Principals: []string{"ubuntu"}, Fingerprint: fmt.Sprintf("SHA256:pipe%d", serial),
		ValidAfter: t0, ValidBefore: t0.Add(time.Hour), IssuedAt: t0,
		PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIpipe",
	}
}

// testPipelineReadsOwnWrites checks that every read inside fn sees the writes
// fn made before it: the audit head and events just appended, a certificate
// just recorded, a request just created and updated.
func testPipelineReadsOwnWrites(t *testing.T, h *harness) {
	ctx := t.Context()
	h.update(t, func(tx ajar.Tx) error {
		r := simpleRequest("p1", "alice", "web", ajar.StatePending, t0)
		if err := tx.CreateRequest(ctx, r); err != nil {
			return err
		}
		var appended []ajar.AuditEvent
		for i := range 3 {
			e, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: fmt.Sprintf("a%d", i), Subject: "p1"})
			if err != nil {
				return err
			}
			appended = append(appended, e)
		}
		seq, hash, err := tx.AuditHead(ctx)
		if err != nil {
			return err
		}
		if last := appended[2]; seq != last.Seq || !bytes.Equal(hash, last.Hash) {
			t.Errorf("AuditHead after three appends = %d, want %d", seq, last.Seq)
		}
		evs, err := tx.ListAudit(ctx, ajar.AuditFilter{Subject: "p1"})
		if err != nil {
			return err
		}
		if len(evs) != 3 || evs[2].Seq != appended[2].Seq || !bytes.Equal(evs[2].Hash, appended[2].Hash) {
			t.Errorf("ListAudit in the same fn: %d events, want the 3 appended", len(evs))
		}
		if err := tx.InsertSSHCert(ctx, pipeCert(7, "p1")); err != nil {
			return err
		}
		certs, err := tx.ListSSHCerts(ctx, "p1")
		if err != nil {
			return err
		}
		if len(certs) != 1 || certs[0].Serial != 7 {
			t.Errorf("ListSSHCerts in the same fn: %v, want serial 7", certs)
		}
		r.State = ajar.StateDenied
		if err := tx.UpdateRequest(ctx, r); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "denied", Subject: "p1"}); err != nil {
			return err
		}
		got, err := tx.GetRequest(ctx, "p1")
		if err != nil {
			return err
		}
		if got.State != ajar.StateDenied || got.Version != 2 {
			t.Errorf("GetRequest in the same fn: %s version %d, want denied version 2", got.State, got.Version)
		}
		if n, err := tx.CountRequests(ctx, ajar.RequestFilter{Requester: "alice"}); err != nil || n != 1 {
			t.Errorf("CountRequests in the same fn = %d, %v; want 1", n, err)
		}
		return nil
	})
	evs := h.auditAll(t)
	checkChain(t, evs)
	if len(evs) != 4 {
		t.Fatalf("%d audit events committed, want 4", len(evs))
	}
	h.view(t, func(tx ajar.ReadTx) error {
		certs, err := tx.ListSSHCerts(ctx, "p1")
		if len(certs) != 1 {
			t.Errorf("%d certificates committed, want 1", len(certs))
		}
		return err
	})
}

// testPipelineLateErrorFailsFn checks that a write whose error a store
// reports at a later call (here a certificate serial that exists, ECONFLICT)
// still fails fn: fn returns the first error it gets, as callers do, Update
// returns ECONFLICT, and nothing fn wrote is stored, the audit events
// appended around it included. A fn that returns its own error after such
// writes leaves nothing either.
func testPipelineLateErrorFailsFn(t *testing.T, h *harness) {
	ctx := t.Context()
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.CreateRequest(ctx, simpleRequest("first", "alice", "web", ajar.StatePending, t0)); err != nil {
			return err
		}
		if err := tx.InsertSSHCert(ctx, pipeCert(5, "first")); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "first", Subject: "first"})
		return err
	})
	// fn writes, records a serial that exists, writes on; every call's error
	// is checked, and the last call is a read.
	dup := func(tx ajar.Tx) error {
		if err := tx.CreateRequest(ctx, simpleRequest("second", "alice", "web", ajar.StatePending, t0)); err != nil {
			return err
		}
		for _, step := range []func() error{
			func() error {
				_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "a", Subject: "second"})
				return err
			},
			func() error { return tx.InsertSSHCert(ctx, pipeCert(5, "second")) },
			func() error {
				_, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "b", Subject: "second"})
				return err
			},
			func() error { _, _, err := tx.AuditHead(ctx); return err },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	}
	wantCode(t, h.s.Update(ctx, dup), ajar.ECONFLICT)
	// The same without the read at the end: the error is Update's.
	wantCode(t, h.s.Update(ctx, func(tx ajar.Tx) error {
		if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "c", Subject: "x"}); err != nil {
			return err
		}
		return tx.InsertSSHCert(ctx, pipeCert(5, "third"))
	}), ajar.ECONFLICT)
	// fn's own error after writes that may not have been sent yet.
	err := h.s.Update(ctx, func(tx ajar.Tx) error {
		if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: "d", Subject: "x"}); err != nil {
			return err
		}
		if err := tx.InsertSSHCert(ctx, pipeCert(6, "fourth")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	evs := h.auditAll(t)
	checkChain(t, evs)
	if len(evs) != 1 || evs[0].Action != "first" {
		t.Fatalf("audit log after the failed functions: %d events, want only the first", len(evs))
	}
	h.view(t, func(tx ajar.ReadTx) error {
		if _, err := tx.GetRequest(ctx, "second"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Errorf("request of the failed fn: %v, want ENOTFOUND", err)
		}
		certs, err := tx.ListSSHCerts(ctx, "")
		if err != nil {
			return err
		}
		if len(certs) != 1 || certs[0].RequestID != "first" {
			t.Errorf("certificates after the failed functions: %v, want only serial 5 of first", certs)
		}
		return nil
	})
}

// testPipelineLateErrorsInBatches runs writers at once, each appending several
// events and recording a certificate; a third of them record a serial that
// exists. With group commit, failing and succeeding functions share commits,
// and a failing one may be the last of its batch. Exactly the others are
// stored, and the chain is one linear chain of their events.
func testPipelineLateErrorsInBatches(t *testing.T, h *harness) {
	ctx := t.Context()
	h.update(t, func(tx ajar.Tx) error { return tx.InsertSSHCert(ctx, pipeCert(1, "seed")) })
	const writers, each = 16, 6
	var mu sync.Mutex
	var okIDs []string
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%02d-%d", w, i)
				bad := (w+i)%3 == 0
				serial := uint64(1000 + w*each + i)
				if bad {
					serial = 1
				}
				err := h.s.Update(ctx, func(tx ajar.Tx) error {
					if err := tx.CreateRequest(ctx, simpleRequest(id, "alice", "web", ajar.StatePending, t0)); err != nil {
						return err
					}
					for k := range 3 {
						if _, err := tx.AppendAudit(ctx, ajar.AuditEvent{Time: tx.Now(), Actor: "alice", Action: fmt.Sprintf("e%d", k), Subject: id}); err != nil {
							return err
						}
					}
					return tx.InsertSSHCert(ctx, pipeCert(serial, id))
				})
				switch {
				case bad && ajar.ErrorCode(err) != ajar.ECONFLICT:
					errs <- fmt.Errorf("%s (serial taken): Update = %v, want %s", id, err, ajar.ECONFLICT)
				case !bad && err != nil:
					errs <- fmt.Errorf("%s: %w", id, err)
				case !bad:
					mu.Lock()
					okIDs = append(okIDs, id)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	evs := h.auditAll(t)
	checkChain(t, evs)
	var subjects []string
	for _, e := range evs {
		if e.Action == "e0" {
			subjects = append(subjects, e.Subject)
		}
	}
	slices.Sort(subjects)
	slices.Sort(okIDs)
	if !slices.Equal(subjects, okIDs) || len(evs) != 3*len(okIDs) {
		t.Fatalf("%d audit events of %v, want 3 of each of %v", len(evs), subjects, okIDs)
	}
	h.view(t, func(tx ajar.ReadTx) error {
		certs, err := tx.ListSSHCerts(ctx, "")
		if err != nil {
			return err
		}
		if len(certs) != 1+len(okIDs) {
			t.Errorf("%d certificates, want %d", len(certs), 1+len(okIDs))
		}
		n, err := tx.CountRequests(ctx, ajar.RequestFilter{})
		if err != nil {
			return err
		}
		if n != len(okIDs) {
			t.Errorf("%d requests, want %d", n, len(okIDs))
		}
		return nil
	})
}
