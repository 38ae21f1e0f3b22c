package storetest

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// testSession returns a valid session of kind token, created at t0, expiring a
// day later.
func testSession(id string, hash []byte, user string) ajar.Session {
	return ajar.Session{ID: id, Hash: hash, Kind: ajar.SessionToken, UserID: user, Name: "laptop ✓",
		CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
}

func (h *harness) getSession(t testing.TB, id string) *ajar.Session {
	t.Helper()
	var s *ajar.Session
	h.view(t, func(tx ajar.ReadTx) error {
		var err error
		s, err = tx.GetSessionByID(t.Context(), id)
		return err
	})
	return s
}

func sameSession(t testing.TB, got, want *ajar.Session) {
	t.Helper()
	times := func(s *ajar.Session) []time.Time {
		return []time.Time{s.CreatedAt, s.ExpiresAt, s.LastUsedAt, s.RefreshedAt, s.MFAAt, s.RevokedAt}
	}
	gt, wt := times(got), times(want)
	for i := range gt {
		if !gt[i].Equal(wt[i]) {
			t.Errorf("session %s: time %d = %v, want %v", want.ID, i, gt[i], wt[i])
		}
	}
	g, w := *got, *want
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RefreshedAt, g.MFAAt, g.RevokedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	w.CreatedAt, w.ExpiresAt, w.LastUsedAt, w.RefreshedAt, w.MFAAt, w.RevokedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("session = %+v, want %+v", g, w)
	}
}

func testSessions(t *testing.T, h *harness) {
	sum := sha256.Sum256([]byte("ajar_secret_token"))
	tok := testSession("tok_aaaa", sum[:], "alice@example.com")
	web := ajar.Session{ID: "ses_bbbb", Hash: []byte{0, 1, 0xff, 0}, Kind: ajar.SessionWeb, UserID: "bob@example.com",
		Name: "Firefox", Groups: []string{"ops", "dba"}, CreatedAt: t0, ExpiresAt: t0.Add(12 * time.Hour),
		LastUsedAt: t0.Add(time.Minute), RefreshedAt: t0.Add(2 * time.Minute), Refresh: []byte{9, 0, 8},
		MFAAt: t0.Add(3 * time.Minute), Parent: "tok_aaaa"}
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.CreateSession(t.Context(), tok); err != nil {
			return err
		}
		return tx.CreateSession(t.Context(), web)
	})
	h.view(t, func(tx ajar.ReadTx) error {
		got, err := tx.GetSession(t.Context(), sum[:])
		if err != nil {
			return err
		}
		sameSession(t, got, &tok)
		got, err = tx.GetSession(t.Context(), web.Hash)
		if err != nil {
			return err
		}
		sameSession(t, got, &web)
		other := sha256.Sum256([]byte("another"))
		_, err = tx.GetSession(t.Context(), other[:])
		wantCode(t, err, ajar.ENOTFOUND)
		// A prefix of a stored hash is not that hash.
		_, err = tx.GetSession(t.Context(), sum[:16])
		wantCode(t, err, ajar.ENOTFOUND)
		_, err = tx.GetSessionByID(t.Context(), "tok_nope")
		wantCode(t, err, ajar.ENOTFOUND)
		return nil
	})
	sameSession(t, h.getSession(t, "tok_aaaa"), &tok)

	// A duplicate hash or id is a conflict and changes nothing.
	for _, dup := range []ajar.Session{testSession("tok_cccc", sum[:], "mallory@example.com"), testSession("tok_aaaa", []byte("x"), "mallory@example.com")} {
		err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.CreateSession(t.Context(), dup) })
		wantCode(t, err, ajar.ECONFLICT)
	}
	if got := h.getSession(t, "tok_aaaa"); got.UserID != "alice@example.com" {
		t.Errorf("duplicate CreateSession changed the owner to %s", got.UserID)
	}
	// Required fields.
	for _, bad := range []ajar.Session{
		{Hash: []byte("1"), Kind: "token", UserID: "u", CreatedAt: t0, ExpiresAt: t0},
		{ID: "x", Kind: "token", UserID: "u", CreatedAt: t0, ExpiresAt: t0},
		{ID: "x", Hash: []byte("1"), Kind: "token", UserID: "u", CreatedAt: t0},
		{ID: "x", Hash: []byte("1"), UserID: "u", CreatedAt: t0, ExpiresAt: t0},
		{ID: "x", Hash: []byte("1"), Kind: "token", CreatedAt: t0, ExpiresAt: t0},
	} {
		err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.CreateSession(t.Context(), bad) })
		wantCode(t, err, ajar.EINVALID)
	}

	// UpdateSession writes the mutable fields and nothing else.
	upd := web
	upd.Hash, upd.Kind, upd.UserID, upd.Name, upd.CreatedAt, upd.Parent = []byte("other"), "cli", "mallory", "x", t0.Add(time.Hour), "tok_other"
	upd.Groups, upd.Refresh = []string{"ops"}, nil
	upd.LastUsedAt, upd.RefreshedAt, upd.MFAAt = t0.Add(5*time.Minute), t0.Add(6*time.Minute), time.Time{}
	upd.ExpiresAt = t0.Add(time.Hour)
	h.update(t, func(tx ajar.Tx) error { return tx.UpdateSession(t.Context(), upd) })
	want := web
	want.Groups, want.Refresh, want.LastUsedAt, want.RefreshedAt, want.MFAAt, want.ExpiresAt = upd.Groups, nil, upd.LastUsedAt, upd.RefreshedAt, time.Time{}, upd.ExpiresAt
	sameSession(t, h.getSession(t, web.ID), &want)

	// TouchSession moves LastUsedAt only.
	h.update(t, func(tx ajar.Tx) error { return tx.TouchSession(t.Context(), web.ID, t0.Add(9*time.Minute)) })
	want.LastUsedAt = t0.Add(9 * time.Minute)
	sameSession(t, h.getSession(t, web.ID), &want)

	h.update(t, func(tx ajar.Tx) error {
		missing := upd
		missing.ID = "ses_missing"
		wantCode(t, tx.UpdateSession(t.Context(), missing), ajar.ENOTFOUND)
		wantCode(t, tx.TouchSession(t.Context(), "ses_missing", t0), ajar.ENOTFOUND)
		// The transaction is still usable.
		return tx.TouchSession(t.Context(), tok.ID, t0.Add(time.Second))
	})
}

func testSessionRevocationSticks(t *testing.T, h *harness) {
	s := testSession("tok_r", []byte("r"), "alice")
	h.update(t, func(tx ajar.Tx) error { return tx.CreateSession(t.Context(), s) })
	stale := *h.getSession(t, s.ID) // read before the revocation
	rev := stale
	rev.RevokedAt, rev.RevokedBy = t0.Add(time.Minute), "admin@example.com"
	h.update(t, func(tx ajar.Tx) error { return tx.UpdateSession(t.Context(), rev) })
	// An update from the stale copy must not undo it, nor a second revocation change it.
	stale.LastUsedAt = t0.Add(2 * time.Minute)
	again := rev
	again.RevokedAt, again.RevokedBy = t0.Add(time.Hour), "mallory"
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.UpdateSession(t.Context(), stale); err != nil {
			return err
		}
		return tx.UpdateSession(t.Context(), again)
	})
	got := h.getSession(t, s.ID)
	if !got.RevokedAt.Equal(rev.RevokedAt) || got.RevokedBy != "admin@example.com" {
		t.Fatalf("revocation = %v by %q, want %v by admin@example.com", got.RevokedAt, got.RevokedBy, rev.RevokedAt)
	}
	if !got.Ended(t0) {
		t.Fatal("a revoked session is not ended")
	}
}

func testListSessions(t *testing.T, h *harness) {
	h.clock.Set(t0.Add(2 * time.Hour))
	mk := func(id, kind, user string, created time.Time, expires time.Duration, revoked bool) ajar.Session {
		s := ajar.Session{ID: id, Hash: []byte(id), Kind: kind, UserID: user, CreatedAt: created, ExpiresAt: t0.Add(expires)}
		if revoked {
			s.RevokedAt, s.RevokedBy = t0, "admin"
		}
		return s
	}
	all := []ajar.Session{
		mk("ses_1", "web", "alice", t0, 12*time.Hour, false),
		mk("tok_2", "token", "alice", t0.Add(time.Minute), 90*24*time.Hour, false),
		mk("ses_3", "cli", "bob", t0.Add(2*time.Minute), 12*time.Hour, false),
		mk("ses_4", "web", "bob", t0.Add(3*time.Minute), time.Hour, false),        // expired at Now
		mk("tok_5", "token", "bob", t0.Add(4*time.Minute), 90*24*time.Hour, true), // revoked
		mk("ses_6", "web", "alice", t0.Add(time.Minute), 2*time.Hour, false),      // expires exactly at Now
		mk("ses_0", "web", "carol", t0.Add(time.Minute), 3*time.Hour, false),      // same CreatedAt as tok_2: ID order
	}
	h.update(t, func(tx ajar.Tx) error {
		for _, s := range all {
			if err := tx.CreateSession(t.Context(), s); err != nil {
				return err
			}
		}
		return nil
	})
	cases := []struct {
		f    ajar.SessionFilter
		want []string
	}{
		{ajar.SessionFilter{}, []string{"ses_3", "tok_2", "ses_0", "ses_1"}},
		{ajar.SessionFilter{IncludeEnded: true}, []string{"tok_5", "ses_4", "ses_3", "tok_2", "ses_6", "ses_0", "ses_1"}},
		{ajar.SessionFilter{UserID: "alice"}, []string{"tok_2", "ses_1"}},
		{ajar.SessionFilter{Kinds: []string{"web", "cli"}}, []string{"ses_3", "ses_0", "ses_1"}},
		{ajar.SessionFilter{Kinds: []string{"token"}, IncludeEnded: true}, []string{"tok_5", "tok_2"}},
		{ajar.SessionFilter{IncludeEnded: true, Limit: 2}, []string{"tok_5", "ses_4"}},
	}
	h.view(t, func(tx ajar.ReadTx) error {
		for _, c := range cases {
			got, err := tx.ListSessions(t.Context(), c.f)
			if err != nil {
				return err
			}
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ID)
			}
			if !slices.Equal(ids, c.want) {
				t.Errorf("ListSessions(%+v) = %v, want %v", c.f, ids, c.want)
			}
		}
		return nil
	})
}

func testClaimSessionRefresh(t *testing.T, h *harness) {
	s := testSession("ses_c", []byte("c"), "alice")
	h.update(t, func(tx ajar.Tx) error { return tx.CreateSession(t.Context(), s) })
	claim := func(seen, at time.Time) bool {
		var ok bool
		h.update(t, func(tx ajar.Tx) error {
			var err error
			ok, err = tx.ClaimSessionRefresh(t.Context(), s.ID, seen, at)
			return err
		})
		return ok
	}
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	if !claim(time.Time{}, t1) {
		t.Fatal("first claim of a never-refreshed session failed")
	}
	if claim(time.Time{}, t2) {
		t.Fatal("a second claim from the same stale read succeeded")
	}
	if !claim(t1, t2) {
		t.Fatal("a claim from the current read failed")
	}
	if got := h.getSession(t, s.ID); !got.RefreshedAt.Equal(t2) {
		t.Fatalf("RefreshedAt = %v, want %v", got.RefreshedAt, t2)
	}
	h.update(t, func(tx ajar.Tx) error {
		ok, err := tx.ClaimSessionRefresh(t.Context(), "ses_missing", time.Time{}, t1)
		if ok {
			t.Error("claimed a missing session")
		}
		return err
	})
}

func testIdentities(t *testing.T, h *harness) {
	h.view(t, func(tx ajar.ReadTx) error {
		_, err := tx.GetIdentity(t.Context(), "alice")
		wantCode(t, err, ajar.ENOTFOUND)
		return nil
	})
	for _, i := range []ajar.Identity{
		{UserID: "alice", Groups: []string{"ops", "dba"}, Source: "oidc", UpdatedAt: t0},
		{UserID: "alice", Groups: []string{}, Source: "oidc", UpdatedAt: t0.Add(time.Hour)},
	} {
		h.update(t, func(tx ajar.Tx) error { return tx.PutIdentity(t.Context(), i) })
		h.view(t, func(tx ajar.ReadTx) error {
			got, err := tx.GetIdentity(t.Context(), "alice")
			if err != nil {
				return err
			}
			if got.UserID != i.UserID || got.Source != i.Source || !got.UpdatedAt.Equal(i.UpdatedAt) || len(got.Groups) != len(i.Groups) || !slices.Equal(got.Groups, i.Groups) {
				t.Errorf("GetIdentity = %+v, want %+v", got, i)
			}
			return nil
		})
	}
	err := h.s.Update(t.Context(), func(tx ajar.Tx) error { return tx.PutIdentity(t.Context(), ajar.Identity{UpdatedAt: t0}) })
	wantCode(t, err, ajar.EINVALID)
}

func testAuthFlows(t *testing.T, h *harness) {
	h.clock.Set(t0)
	live := ajar.AuthFlow{Kind: "oidc_state", KeyHash: []byte{1, 2, 0}, Data: []byte(`{"nonce":"n"}`), ExpiresAt: t0.Add(10 * time.Minute)}
	stale := ajar.AuthFlow{Kind: "oidc_state", KeyHash: []byte{3}, Data: []byte(`{}`), ExpiresAt: t0}
	other := ajar.AuthFlow{Kind: "cli_code", KeyHash: []byte{1, 2, 0}, Data: []byte(`{"x":1}`), ExpiresAt: t0.Add(time.Minute)}
	h.update(t, func(tx ajar.Tx) error {
		for _, f := range []ajar.AuthFlow{live, stale, other} {
			if err := tx.PutAuthFlow(t.Context(), f); err != nil {
				return err
			}
		}
		wantCode(t, tx.PutAuthFlow(t.Context(), live), ajar.ECONFLICT)
		wantCode(t, tx.PutAuthFlow(t.Context(), ajar.AuthFlow{Kind: "x", ExpiresAt: t0}), ajar.EINVALID)
		return nil
	})
	take := func(kind string, key []byte) (*ajar.AuthFlow, error) {
		var f *ajar.AuthFlow
		err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
			var err error
			f, err = tx.TakeAuthFlow(t.Context(), kind, key)
			if ajar.ErrorCode(err) == ajar.ENOTFOUND {
				return nil // commit: an expired step is deleted
			}
			return err
		})
		if err == nil && f == nil {
			err = ajar.Errorf(ajar.ENOTFOUND, "not found")
		}
		return f, err
	}
	f, err := take("oidc_state", live.KeyHash)
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != live.Kind || !bytes.Equal(f.KeyHash, live.KeyHash) || !bytes.Equal(f.Data, live.Data) || !f.ExpiresAt.Equal(live.ExpiresAt) {
		t.Errorf("TakeAuthFlow = %+v, want %+v", f, live)
	}
	_, err = take("oidc_state", live.KeyHash) // replayed
	wantCode(t, err, ajar.ENOTFOUND)
	_, err = take("oidc_state", stale.KeyHash) // expired at Now
	wantCode(t, err, ajar.ENOTFOUND)
	if f, err := take("cli_code", other.KeyHash); err != nil || !bytes.Equal(f.Data, other.Data) {
		t.Errorf("the same key of another kind: %+v, %v", f, err)
	}
	testAuthFlowsPurged(t, h)
}

// testAuthFlowsPurged: steps nobody takes (abandoned sign-ins, unauthenticated
// device starts) are deleted once expired, when the next step is stored, so
// they cannot fill the store.
func testAuthFlowsPurged(t *testing.T, h *harness) {
	h.clock.Set(t0)
	h.update(t, func(tx ajar.Tx) error {
		for i := range 50 {
			f := ajar.AuthFlow{Kind: "device", KeyHash: []byte{0xab, byte(i)}, Data: []byte(`{}`), ExpiresAt: t0.Add(10 * time.Minute)}
			if err := tx.PutAuthFlow(t.Context(), f); err != nil {
				return err
			}
		}
		return nil
	})
	h.clock.Set(t0.Add(10 * time.Minute)) // all of them expired
	h.update(t, func(tx ajar.Tx) error {
		return tx.PutAuthFlow(t.Context(), ajar.AuthFlow{Kind: "oidc_state", KeyHash: []byte{0xcd}, Data: []byte(`{}`), ExpiresAt: t0.Add(20 * time.Minute)})
	})
	h.clock.Set(t0) // back before their expiry: a row still stored would be found
	for i := range 50 {
		err := h.s.Update(t.Context(), func(tx ajar.Tx) error {
			_, err := tx.TakeAuthFlow(t.Context(), "device", []byte{0xab, byte(i)})
			return err
		})
		if ajar.ErrorCode(err) != ajar.ENOTFOUND {
			t.Fatalf("expired step %d still stored after a new step was put (err %v)", i, err)
		}
	}
}

func testWebAuthnCredentials(t *testing.T, h *harness) {
	a1 := ajar.WebAuthnCredential{UserID: "alice", ID: []byte{1, 0, 2}, Name: "yubikey", Data: []byte(`{"k":1}`), CreatedAt: t0}
	a2 := ajar.WebAuthnCredential{UserID: "alice", ID: []byte{2}, Name: "phone", Data: []byte(`{"k":2}`), CreatedAt: t0.Add(time.Minute)}
	b1 := ajar.WebAuthnCredential{UserID: "bob", ID: []byte{3}, Name: "key", Data: []byte(`{}`), CreatedAt: t0}
	h.update(t, func(tx ajar.Tx) error {
		for _, c := range []ajar.WebAuthnCredential{a2, a1, b1} {
			if err := tx.PutWebAuthnCredential(t.Context(), c); err != nil {
				return err
			}
		}
		dup := b1
		dup.UserID = "mallory"
		wantCode(t, tx.PutWebAuthnCredential(t.Context(), dup), ajar.ECONFLICT)
		return nil
	})
	list := func(user string) []ajar.WebAuthnCredential {
		var out []ajar.WebAuthnCredential
		h.view(t, func(tx ajar.ReadTx) error {
			var err error
			out, err = tx.ListWebAuthnCredentials(t.Context(), user)
			return err
		})
		return out
	}
	got := list("alice")
	if len(got) != 2 || got[0].Name != "yubikey" || got[1].Name != "phone" || !bytes.Equal(got[0].ID, a1.ID) ||
		!bytes.Equal(got[0].Data, a1.Data) || !got[1].CreatedAt.Equal(a2.CreatedAt) || !got[0].LastUsedAt.IsZero() {
		t.Fatalf("ListWebAuthnCredentials(alice) = %+v", got)
	}
	a1.Data, a1.LastUsedAt = []byte(`{"k":1,"count":5}`), t0.Add(time.Hour)
	h.update(t, func(tx ajar.Tx) error {
		if err := tx.UpdateWebAuthnCredential(t.Context(), a1); err != nil {
			return err
		}
		wrong := b1
		wrong.UserID = "alice" // another user's credential is not found
		wantCode(t, tx.UpdateWebAuthnCredential(t.Context(), wrong), ajar.ENOTFOUND)
		wantCode(t, tx.DeleteWebAuthnCredential(t.Context(), "alice", b1.ID), ajar.ENOTFOUND)
		return tx.DeleteWebAuthnCredential(t.Context(), "alice", a2.ID)
	})
	got = list("alice")
	if len(got) != 1 || !bytes.Equal(got[0].Data, a1.Data) || !got[0].LastUsedAt.Equal(a1.LastUsedAt) {
		t.Fatalf("after update and delete: %+v", got)
	}
	if got := list("bob"); len(got) != 1 {
		t.Fatalf("bob's credentials: %+v", got)
	}
}
