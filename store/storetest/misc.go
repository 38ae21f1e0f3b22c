package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

func testKeys(t *testing.T, h *harness) {
	sealed := []byte{0, 1, 2, 0xff, 0xfe, 0, 'k'} // binary, with NULs
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.PutKey(t.Context(), "ssh-ca", sealed); err != nil {
			return err
		}
		return tx.PutKey(t.Context(), "audit-signer", []byte("other"))
	})
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.GetKey(t.Context(), "ssh-ca")
		if err != nil {
			return err
		}
		if !bytes.Equal(got, sealed) {
			t.Errorf("GetKey = %x, want %x", got, sealed)
		}
		_, err = tx.GetKey(t.Context(), "missing")
		wantCode(t, err, ajar.ENOTFOUND)
		return nil
	})
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.PutKey(t.Context(), "ssh-ca", []byte("overwrite")) })
	wantCode(t, err, ajar.ECONFLICT)
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.GetKey(t.Context(), "ssh-ca")
		if err != nil {
			return err
		}
		if !bytes.Equal(got, sealed) {
			t.Errorf("key was overwritten: %x", got)
		}
		return nil
	})
}

func testSSHCerts(t *testing.T, h *harness) {
	cert := func(serial uint64, req string, i int) ajar.SSHCert {
		return ajar.SSHCert{
			Serial:      serial,
			RequestID:   req,
			KeyID:       fmt.Sprintf("ajar:%s:%d", req, i),
			Principals:  []string{"ubuntu", "déploi"},
			Fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
			ValidAfter:  t0.Add(-time.Minute),
			ValidBefore: t0.Add(time.Duration(i)*time.Hour + 1),
			IssuedAt:    t0.Add(time.Duration(i) * time.Nanosecond),
			PublicKey:   fmt.Sprintf("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%d", i),
		}
	}
	// Issue order is not serial order; serials above 2^63 must survive.
	certs := []ajar.SSHCert{
		cert(1<<63+5, "req-a", 0),
		cert(3, "req-b", 1),
		cert(math.MaxUint64, "req-a", 2),
		cert(1<<63, "req-b", 3),
		cert(1<<63-1, "req-a", 4),
		cert(7, "req-a", 5),
	}
	certs[5].Principals = nil
	certs[5].PublicKey = ""
	h.update(t, func(tx ajar.Tx) error {
		for _, c := range certs {
			if err := tx.InsertSSHCert(t.Context(), c); err != nil {
				return err
			}
		}
		return nil
	})

	equal := func(a, b ajar.SSHCert) bool {
		return a.Serial == b.Serial && a.RequestID == b.RequestID && a.KeyID == b.KeyID &&
			slices.Equal(a.Principals, b.Principals) && a.Fingerprint == b.Fingerprint &&
			a.ValidAfter.Equal(b.ValidAfter) && a.ValidBefore.Equal(b.ValidBefore) && a.IssuedAt.Equal(b.IssuedAt) &&
			a.PublicKey == b.PublicKey
	}
	check := func(req string, want []ajar.SSHCert) {
		t.Helper()
		h.view(t, func(tx ajar.ReadTx) error {
			got, err := tx.ListSSHCerts(t.Context(), req)
			if err != nil {
				return err
			}
			if len(got) != len(want) {
				t.Fatalf("ListSSHCerts(%q) returned %d certs, want %d", req, len(got), len(want))
			}
			for i := range got {
				if !equal(got[i], want[i]) {
					t.Errorf("ListSSHCerts(%q)[%d] = %+v, want %+v", req, i, got[i], want[i])
				}
			}
			return nil
		})
	}
	check("", certs)
	check("req-a", []ajar.SSHCert{certs[0], certs[2], certs[4], certs[5]})
	check("req-b", []ajar.SSHCert{certs[1], certs[3]})
	check("req-none", nil)

	for _, serial := range []uint64{3, math.MaxUint64, 1 << 63} {
		err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
			return tx.InsertSSHCert(t.Context(), cert(serial, "req-c", 9))
		})
		wantCode(t, err, ajar.ECONFLICT)
	}
	check("req-c", nil)
}

// testFindSSHCerts pins FindSSHCerts: each filter field alone and together, issue
// order, ValidAfter strictly before ValidBefore, and certificates whose request
// does not exist matching no state.
func testFindSSHCerts(t *testing.T, h *harness) {
	h.create(t,
		simpleRequest("req-active", "alice", "web", ajar.StateActive, t0),
		simpleRequest("req-revoked", "alice", "web", ajar.StateRevoked, t0),
		simpleRequest("req-revoking", "bob", "db", ajar.StateRevoking, t0),
	)
	const fpA, fpB = "SHA256:aaaa", "SHA256:bbbb"
	type spec struct {
		serial uint64
		req    string
		fp     string
		until  time.Duration // ValidBefore - t0
	}
	specs := []spec{
		{11, "req-active", fpA, time.Hour},
		{1<<63 + 12, "req-revoked", fpA, time.Hour},
		{13, "req-revoked", fpB, -time.Minute},
		{14, "req-revoking", fpB, time.Second},
		{15, "req-missing", fpA, time.Hour},
		{16, "req-revoked", fpB, 0},
	}
	h.update(t, func(tx ajar.Tx) error {
		for i, sp := range specs {
			err := tx.InsertSSHCert(t.Context(), ajar.SSHCert{
				Serial: sp.serial, RequestID: sp.req, KeyID: "k", Fingerprint: sp.fp,
				ValidAfter: t0.Add(-time.Hour), ValidBefore: t0.Add(sp.until), IssuedAt: t0.Add(time.Duration(i)),
				PublicKey: "ssh-ed25519 AAAA" + sp.req,
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	serials := func(f ajar.SSHCertFilter) []uint64 {
		t.Helper()
		var out []uint64
		h.view(t, func(tx ajar.ReadTx) error {
			certs, err := tx.FindSSHCerts(t.Context(), f)
			if err != nil {
				return err
			}
			for _, c := range certs {
				out = append(out, c.Serial)
				if c.PublicKey != "ssh-ed25519 AAAA"+c.RequestID || c.Fingerprint == "" || c.KeyID != "k" {
					t.Errorf("FindSSHCerts returned a partial certificate: %+v", c)
				}
			}
			return nil
		})
		return out
	}
	for _, tc := range []struct {
		name string
		f    ajar.SSHCertFilter
		want []uint64
	}{
		{"all", ajar.SSHCertFilter{}, []uint64{11, 1<<63 + 12, 13, 14, 15, 16}},
		{"valid after t0", ajar.SSHCertFilter{ValidAfter: t0}, []uint64{11, 1<<63 + 12, 14, 15}},
		{"valid after t0 in another zone", ajar.SSHCertFilter{ValidAfter: t0.In(time.FixedZone("x", -7*3600))}, []uint64{11, 1<<63 + 12, 14, 15}},
		{"valid after t0+1s", ajar.SSHCertFilter{ValidAfter: t0.Add(time.Second)}, []uint64{11, 1<<63 + 12, 15}},
		{"fingerprint", ajar.SSHCertFilter{Fingerprint: fpB}, []uint64{13, 14, 16}},
		{"unknown fingerprint", ajar.SSHCertFilter{Fingerprint: "SHA256:none"}, nil},
		{"ended states", ajar.SSHCertFilter{RequestStates: []ajar.State{ajar.StateRevoked, ajar.StateRevoking, ajar.StateExpired}}, []uint64{1<<63 + 12, 13, 14, 16}},
		{"active", ajar.SSHCertFilter{RequestStates: []ajar.State{ajar.StateActive}}, []uint64{11}},
		{"no request matches no state", ajar.SSHCertFilter{RequestStates: []ajar.State{ajar.StatePending}}, nil},
		{"all together", ajar.SSHCertFilter{ValidAfter: t0, Fingerprint: fpA, RequestStates: []ajar.State{ajar.StateRevoked}}, []uint64{1<<63 + 12}},
	} {
		if got := serials(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: FindSSHCerts = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testClock(t *testing.T, h *harness) {
	// Every read of the clock advances it, so a store that reads it more than once
	// per transaction returns different times.
	h.clock.SetStep(time.Second)
	var first, second time.Time
	h.update(t, func(tx ajar.Tx) error {
		first = tx.Now()
		if !first.Equal(t0) {
			t.Errorf("Update Now() = %v, want the injected clock %v", first, t0)
		}
		for range 3 {
			if n := tx.Now(); !n.Equal(first) {
				t.Errorf("Now() changed within a transaction: %v then %v", first, n)
			}
		}
		return nil
	})
	h.view(t, func(tx ajar.ReadTx) error {
		second = tx.Now()
		if n := tx.Now(); !n.Equal(second) {
			t.Errorf("Now() changed within a View: %v then %v", second, n)
		}
		return nil
	})
	if !second.After(first) {
		t.Errorf("second transaction's Now() %v is not after the first %v", second, first)
	}
	if first.Location() != time.UTC || second.Location() != time.UTC {
		t.Errorf("Now() not in UTC: %v, %v", first.Location(), second.Location())
	}
	h.clock.SetStep(0)
	zone := time.FixedZone("x", 3*3600)
	h.clock.Set(t0.Add(time.Hour).In(zone))
	check := func(tx ajar.ReadTx) error {
		if n := tx.Now(); !n.Equal(t0.Add(time.Hour)) || n.Location() != time.UTC {
			t.Errorf("Now() = %v, want %v in UTC", n, t0.Add(time.Hour))
		}
		return nil
	}
	h.view(t, check)
	h.update(t, func(tx ajar.Tx) error { return check(tx) })
}

// testViewSnapshot checks that a View does not see writes committed after it
// started reading.
func testViewSnapshot(t *testing.T, h *harness) {
	h.create(t, simpleRequest("before", "u", "t", ajar.StatePending, t0))
	h.view(t, func(tx ajar.ReadTx) error {
		list := func() int {
			rs, err := tx.ListRequests(t.Context(), ajar.RequestFilter{})
			if err != nil {
				t.Fatalf("ListRequests: %v", err)
			}
			return len(rs)
		}
		if n := list(); n != 1 {
			t.Fatalf("View sees %d requests, want 1", n)
		}
		// Commit from another goroutine while the View is open; the writer must
		// not wait for readers.
		done := make(chan error, 1)
		go func() {
			done <- h.s.Update(t.Context(), func(tx ajar.Tx) error {
				if err := tx.CreateRequest(t.Context(), simpleRequest("during", "u", "t", ajar.StatePending, t0)); err != nil {
					return err
				}
				_, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: t0, Actor: "a", Action: "x", Subject: "during"})
				return err
			})
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Update during View: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Update waited for an open View")
		}
		if n := list(); n != 1 {
			t.Errorf("View sees %d requests after a concurrent commit, want 1 (a consistent snapshot)", n)
		}
		if _, err := tx.GetRequest(t.Context(), "during"); ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Errorf("View sees a request committed after it started: %v", err)
		}
		seq, _, err := tx.AuditHead(t.Context())
		if err != nil {
			return err
		}
		if seq != 0 {
			t.Errorf("View sees audit head %d committed after it started", seq)
		}
		return nil
	})
	if h.get(t, "during") == nil {
		t.Fatal("request committed during the View is missing afterwards")
	}
}

// testConcurrentUpdates runs many writers at once. Every Update that returns nil
// must be durable and in the audit chain, every one that fails must leave nothing,
// and the chain must stay linear.
func testConcurrentUpdates(t *testing.T, h *harness) {
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				fail := (w+i)%5 == 0
				err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
					r := simpleRequest(id, fmt.Sprintf("user%d", w), "web", ajar.StatePending, t0.Add(time.Duration(i)*time.Second))
					if err := tx.CreateRequest(t.Context(), r); err != nil {
						return err
					}
					if _, err := tx.AppendAudit(t.Context(), ajar.AuditEvent{Time: tx.Now(), Actor: r.Requester, Action: "request.created", Subject: id}); err != nil {
						return err
					}
					if fail {
						return errBoom
					}
					return nil
				})
				switch {
				case fail && !errors.Is(err, errBoom):
					errs <- fmt.Errorf("%s: Update returned %v, want errBoom", id, err)
				case !fail && err != nil:
					errs <- fmt.Errorf("%s: %w", id, err)
				case !fail:
					// Update returned nil, so the write is committed: every new
					// transaction sees it.
					err := h.s.View(t.Context(), func(tx ajar.ReadTx) error {
						_, err := tx.GetRequest(t.Context(), id)
						return err
					})
					if err != nil {
						errs <- fmt.Errorf("%s: not visible after Update returned: %w", id, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	var wantOK []string
	for w := range writers {
		for i := range each {
			if (w+i)%5 != 0 {
				wantOK = append(wantOK, fmt.Sprintf("w%02d-%02d", w, i))
			}
		}
	}
	wantOnlySuccessful(t, h, wantOK, len(wantOK))
}

// wantOnlySuccessful checks, after concurrent Updates of which those creating
// the requests wantOK (sorted) succeeded, that the audit chain is whole and
// holds exactly their events, and that pending requests are stored.
func wantOnlySuccessful(t *testing.T, h *harness, wantOK []string, pending int) {
	t.Helper()
	evs := h.auditAll(t)
	checkChain(t, evs)
	var subjects []string
	for _, e := range evs {
		subjects = append(subjects, e.Subject)
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, wantOK) {
		t.Fatalf("audit subjects: %d events, want exactly the %d successful updates", len(subjects), len(wantOK))
	}
	h.view(t, func(tx ajar.ReadTx) error {
		m, err := tx.CountByState(t.Context())
		if err != nil {
			return err
		}
		if m[ajar.StatePending] != pending {
			t.Errorf("%d requests stored, want %d", m[ajar.StatePending], pending)
		}
		return nil
	})
}

// testConcurrentCAS has many workers increment one counter with read (View),
// modify, compare-and-swap (Update), retrying on ECONFLICT. No increment may be
// lost and every successful write bumps the version once.
func testConcurrentCAS(t *testing.T, h *harness) {
	h.create(t, simpleRequest("counter", "u", "t", ajar.StateActive, t0))
	const workers, each = 8, 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conflicts int
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					var r *ajar.Request
					err := h.s.View(t.Context(), func(tx ajar.ReadTx) error {
						var err error
						r, err = tx.GetRequest(t.Context(), "counter")
						return err
					})
					if err != nil {
						errs <- err
						return
					}
					r.Attempts++
					err = h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.UpdateRequest(t.Context(), r) })
					if ajar.ErrorCode(err) == ajar.ECONFLICT {
						mu.Lock()
						conflicts++
						mu.Unlock()
						continue
					}
					if err != nil {
						errs <- err
						return
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
	got := h.get(t, "counter")
	if got.Attempts != workers*each {
		t.Fatalf("counter = %d after %d increments (%d conflicts retried): updates were lost", got.Attempts, workers*each, conflicts)
	}
	if got.Version != 1+workers*each {
		t.Fatalf("version = %d, want %d", got.Version, 1+workers*each)
	}
	t.Logf("%d conflicts retried", conflicts)
}
