package mfa

import (
	"context"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// memKeys and memFlows are in-memory Keys and Flows.
type memKeys struct{ keys []ajar.WebAuthnCredential }

func (m *memKeys) ListWebAuthnCredentials(_ context.Context, userID string) ([]ajar.WebAuthnCredential, error) {
	var out []ajar.WebAuthnCredential
	for _, k := range m.keys {
		if k.UserID == userID {
			out = append(out, k)
		}
	}
	return out, nil
}
func (m *memKeys) AddWebAuthnCredential(_ context.Context, c ajar.WebAuthnCredential) error {
	m.keys = append(m.keys, c)
	return nil
}
func (m *memKeys) UpdateWebAuthnCredential(context.Context, ajar.WebAuthnCredential) error {
	return nil
}
func (m *memKeys) DeleteWebAuthnCredential(_ context.Context, userID string, id []byte) error {
	n := len(m.keys)
	m.keys = slices.DeleteFunc(m.keys, func(k ajar.WebAuthnCredential) bool { return k.UserID == userID && string(k.ID) == string(id) })
	if len(m.keys) == n {
		return ajar.Errorf(ajar.ENOTFOUND, "no such key")
	}
	return nil
}

type memFlows struct{ m map[string]ajar.AuthFlow }

func (f *memFlows) Put(_ context.Context, fl ajar.AuthFlow) error {
	f.m[fl.Kind+string(fl.KeyHash)] = fl
	return nil
}
func (f *memFlows) Update(_ context.Context, kind string, key []byte, fn func(*ajar.AuthFlow) (*ajar.AuthFlow, error)) error {
	cur, ok := f.m[kind+string(key)]
	if !ok {
		return ajar.Errorf(ajar.ENOTFOUND, "none")
	}
	delete(f.m, kind+string(key))
	next, err := fn(&cur)
	if err != nil {
		f.m[kind+string(key)] = cur
		return err
	}
	if next != nil {
		f.m[kind+string(key)] = *next
	}
	return nil
}

// TestChangingKeysNeedsASecondFactor: someone holding a person's session (a
// stolen cookie, or an API token signed in to the web) but not their key
// cannot add a key of their own, nor remove the person's key to register
// theirs as a "first" one, and so cannot pass require_mfa steps as them.
func TestChangingKeysNeedsASecondFactor(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	keys := &memKeys{}
	s, err := New("https://ajar.example.com", keys, &memFlows{m: map[string]ajar.AuthFlow{}}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	thief := ajar.User{ID: "carol@example.com", Session: "ses_1"} // no second factor
	// The first key: trust on first use.
	if _, err := s.BeginRegistration(ctx, thief); err != nil {
		t.Fatalf("first key: %v", err)
	}
	keys.keys = append(keys.keys, ajar.WebAuthnCredential{UserID: thief.ID, ID: []byte("carols-key"), Name: "Carol's key", Data: []byte(`{}`), CreatedAt: now})
	id := base64.RawURLEncoding.EncodeToString([]byte("carols-key"))

	for name, u := range map[string]ajar.User{
		"no second factor":         thief,
		"a second factor 6m old":   {ID: thief.ID, Session: "ses_1", MFAAt: now.Add(-6 * time.Minute)},
		"a second factor 2m ahead": {ID: thief.ID, Session: "ses_1", MFAAt: now.Add(2 * time.Minute)},
	} {
		if _, err := s.BeginRegistration(ctx, u); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
			t.Errorf("%s: adding a second key: %v, want forbidden", name, err)
		}
		if _, err := s.FinishRegistration(ctx, u, "thief", []byte(`{}`)); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
			t.Errorf("%s: finishing a second key: %v, want forbidden", name, err)
		}
		if err := s.Remove(ctx, u, id); ajar.ErrorCode(err) != ajar.EFORBIDDEN {
			t.Errorf("%s: removing the key: %v, want forbidden", name, err)
		}
	}
	if len(keys.keys) != 1 {
		t.Fatalf("keys changed without a second factor: %+v", keys.keys)
	}

	// With a second factor made a minute ago, both are allowed.
	fresh := ajar.User{ID: thief.ID, Session: "ses_1", MFAAt: now.Add(-time.Minute)}
	if _, err := s.BeginRegistration(ctx, fresh); err != nil {
		t.Errorf("adding a second key after verifying: %v", err)
	}
	if err := s.Remove(ctx, fresh, id); err != nil {
		t.Errorf("removing a key after verifying: %v", err)
	}
	if len(keys.keys) != 0 {
		t.Errorf("the key was not removed: %+v", keys.keys)
	}
}
