// Package mfa is ajar's second factor: security keys and passkeys (WebAuthn,
// with github.com/go-webauthn/webauthn). People register keys on the web's
// "Security keys" page; an assertion made with one marks the web session as
// stepped up, which a policy step with require_mfa asks for (within
// login.MFAFresh). Keys are bound to the server's public URL (the relying
// party), so a key registered here is useless to a look-alike site.
//
// A ceremony's challenge lives in the store as a one-use flow record keyed by
// the session, so any replica can finish what another began and a challenge
// answers once.
package mfa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity/login"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// ceremonyTTL bounds a ceremony, from its options to the browser's answer.
const ceremonyTTL = 5 * time.Minute

// maxKeys bounds the keys one person registers.
const maxKeys = 20

// Keys stores people's keys; every change is audited by the implementation in
// the transaction that makes it ("mfa.key_added", "mfa.key_removed").
type Keys interface {
	ListWebAuthnCredentials(ctx context.Context, userID string) ([]ajar.WebAuthnCredential, error)
	AddWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error
	// UpdateWebAuthnCredential saves a used key (its sign count, last use).
	UpdateWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error
	// DeleteWebAuthnCredential removes one of userID's keys; ENOTFOUND if none.
	DeleteWebAuthnCredential(ctx context.Context, userID string, id []byte) error
}

// Flows keeps ceremony state (the store's one-use AuthFlow records).
type Flows interface {
	Put(ctx context.Context, f ajar.AuthFlow) error
	Update(ctx context.Context, kind string, key []byte, fn func(f *ajar.AuthFlow) (*ajar.AuthFlow, error)) error
}

// Service runs registration and assertion ceremonies.
type Service struct {
	wa    *webauthn.WebAuthn
	keys  Keys
	flows Flows
	now   func() time.Time
}

// New returns a Service for the server at publicURL (its host is the relying
// party id, its origin the only origin accepted). An IP address cannot be a
// relying party id: use a name (localhost for a trial on one machine).
func New(publicURL string, keys Keys, flows Flows, now func() time.Time) (*Service, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mfa: server.public_url %q is not a URL", publicURL)
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: "ajar",
		RPOrigins:     []string{u.Scheme + "://" + u.Host},
	})
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Service{wa: wa, keys: keys, flows: flows, now: now}, nil
}

// person is a webauthn.User: the user handle is a hash of the canonical id, so
// it carries no personal data to the authenticator.
type person struct {
	id   string
	keys []webauthn.Credential
}

func (p person) WebAuthnID() []byte {
	h := sha256.Sum256([]byte("ajar-user:" + p.id))
	return h[:]
}
func (p person) WebAuthnName() string                       { return p.id }
func (p person) WebAuthnDisplayName() string                { return p.id }
func (p person) WebAuthnCredentials() []webauthn.Credential { return p.keys }

// load returns u as a webauthn user with their keys.
func (s *Service) load(ctx context.Context, u ajar.User) (person, []ajar.WebAuthnCredential, error) {
	stored, err := s.keys.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return person{}, nil, err
	}
	p := person{id: u.ID}
	for _, c := range stored {
		var k webauthn.Credential
		if err := json.Unmarshal(c.Data, &k); err != nil {
			return person{}, nil, fmt.Errorf("mfa: stored key %x: %w", c.ID, err)
		}
		p.keys = append(p.keys, k)
	}
	return p, stored, nil
}

// Key is a registered key as the "Security keys" page lists it.
type Key struct {
	ID         string    `json:"id"` // base64url of the credential id
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// List returns u's keys.
func (s *Service) List(ctx context.Context, u ajar.User) ([]Key, error) {
	stored, err := s.keys.ListWebAuthnCredentials(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Key, 0, len(stored))
	for _, c := range stored {
		out = append(out, Key{ID: base64.RawURLEncoding.EncodeToString(c.ID), Name: c.Name, CreatedAt: c.CreatedAt, LastUsedAt: c.LastUsedAt})
	}
	return out, nil
}

// Remove deletes one of u's keys, named by List's id. It needs a second factor
// made within login.MFAFresh (see mayChangeKeys); else EFORBIDDEN.
func (s *Service) Remove(ctx context.Context, u ajar.User, id string) error {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) == 0 || len(raw) > 1023 {
		return ajar.FieldErrorf("id", "is not a key id")
	}
	if err := s.mayChangeKeys(u, 1, "remove a key"); err != nil {
		return err
	}
	return s.keys.DeleteWebAuthnCredential(ctx, u.ID, raw)
}

// mayChangeKeys is the one rule for changing someone's keys: a person who
// has keys (have > 0) adds or removes one only with a second factor made
// within login.MFAFresh (a key's assertion, or an SSO re-authentication whose
// amr names one). Otherwise whoever holds their session cookie, or an API
// token that signs in to the web, could swap in a key of their own and then
// pass every require_mfa step as them (docs/security.md). The first key is
// trust on first use. EFORBIDDEN, saying what to do, when not allowed.
func (s *Service) mayChangeKeys(u ajar.User, have int, what string) error {
	now := s.now()
	if have == 0 || !u.MFAAt.IsZero() && !u.MFAAt.After(now.Add(time.Minute)) && now.Sub(u.MFAAt) <= login.MFAFresh {
		return nil
	}
	return ajar.Errorf(ajar.EFORBIDDEN,
		"to %s, first verify with one of your security keys (Verify on the Security keys page) or sign in again with SSO using a second factor; it counts for 5 minutes", what)
}

func (s *Service) flowKey(purpose string, u ajar.User) []byte {
	h := sha256.Sum256([]byte(purpose + "\x00" + u.Session + "\x00" + u.ID))
	return h[:]
}

func (s *Service) saveCeremony(ctx context.Context, kind string, u ajar.User, sd *webauthn.SessionData) error {
	if u.Session == "" {
		return ajar.Errorf(ajar.EFORBIDDEN, "security keys are used from a signed-in web session")
	}
	b, err := json.Marshal(sd)
	if err != nil {
		return err
	}
	return s.flows.Put(ctx, ajar.AuthFlow{Kind: kind, KeyHash: s.flowKey(kind, u), Data: b, ExpiresAt: s.now().Add(ceremonyTTL)})
}

func (s *Service) takeCeremony(ctx context.Context, kind string, u ajar.User) (*webauthn.SessionData, error) {
	var sd webauthn.SessionData
	err := s.flows.Update(ctx, kind, s.flowKey(kind, u), func(f *ajar.AuthFlow) (*ajar.AuthFlow, error) {
		return nil, json.Unmarshal(f.Data, &sd)
	})
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, ajar.Errorf(ajar.EUNAUTH, "this security key prompt expired or was already answered; try again")
	} else if err != nil {
		return nil, err
	}
	return &sd, nil
}

// BeginRegistration returns the options for navigator.credentials.create.
// Someone who has a key needs a recent second factor to add another
// (mayChangeKeys): EFORBIDDEN.
func (s *Service) BeginRegistration(ctx context.Context, u ajar.User) (json.RawMessage, error) {
	p, stored, err := s.load(ctx, u)
	if err != nil {
		return nil, err
	}
	if len(stored) >= maxKeys {
		return nil, ajar.Errorf(ajar.ETOOMANY, "you have %d security keys, the most one person may register; remove one first", maxKeys)
	}
	if err := s.mayChangeKeys(u, len(stored), "add another key"); err != nil {
		return nil, err
	}
	exclude := make([]protocol.CredentialDescriptor, 0, len(p.keys))
	for _, k := range p.keys {
		exclude = append(exclude, k.Descriptor())
	}
	opts, sd, err := s.wa.BeginRegistration(p,
		webauthn.WithExclusions(exclude),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementDiscouraged),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationPreferred}))
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if err := s.saveCeremony(ctx, "webauthn_register", u, sd); err != nil {
		return nil, err
	}
	return json.Marshal(opts)
}

// FinishRegistration checks the browser's answer and stores the new key, under
// BeginRegistration's rule, checked again.
func (s *Service) FinishRegistration(ctx context.Context, u ajar.User, name string, body []byte) (*Key, error) {
	if err := ajar.CheckText("name", name, 60); err != nil {
		return nil, err
	}
	if name == "" {
		name = "Security key"
	}
	p, stored, err := s.load(ctx, u)
	if err != nil {
		return nil, err
	}
	if err := s.mayChangeKeys(u, len(stored), "add another key"); err != nil {
		return nil, err // a key was added, or the second factor went stale, since the prompt
	}
	sd, err := s.takeCeremony(ctx, "webauthn_register", u)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return nil, ajar.Errorf(ajar.EINVALID, "the browser's answer is not a WebAuthn registration: %s", webauthnReason(err))
	}
	cred, err := s.wa.CreateCredential(p, *sd, parsed)
	if err != nil {
		return nil, ajar.Errorf(ajar.EUNAUTH, "the security key's registration was not accepted: %s", webauthnReason(err))
	}
	data, err := json.Marshal(cred)
	if err != nil {
		return nil, err
	}
	now := s.now()
	c := ajar.WebAuthnCredential{UserID: u.ID, ID: cred.ID, Name: name, Data: data, CreatedAt: now}
	if err := s.keys.AddWebAuthnCredential(ctx, c); err != nil {
		return nil, err
	}
	return &Key{ID: base64.RawURLEncoding.EncodeToString(cred.ID), Name: name, CreatedAt: now}, nil
}

// ErrNoKeys is BeginAssertion's answer to someone with no key registered.
var ErrNoKeys = ajar.Errorf(ajar.ENOTFOUND, "you have no security key registered: add one on the Security keys page first")

// BeginAssertion returns the options for navigator.credentials.get.
func (s *Service) BeginAssertion(ctx context.Context, u ajar.User) (json.RawMessage, error) {
	p, _, err := s.load(ctx, u)
	if err != nil {
		return nil, err
	}
	if len(p.keys) == 0 {
		return nil, ErrNoKeys
	}
	opts, sd, err := s.wa.BeginLogin(p)
	if err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if err := s.saveCeremony(ctx, "webauthn_assert", u, sd); err != nil {
		return nil, err
	}
	return json.Marshal(opts)
}

// FinishAssertion checks an assertion made with one of u's keys. On success the
// caller marks the session (identity.Service.MarkMFA). A cloned key (its sign
// count went backwards) is refused.
func (s *Service) FinishAssertion(ctx context.Context, u ajar.User, body []byte) error {
	sd, err := s.takeCeremony(ctx, "webauthn_assert", u)
	if err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return ajar.Errorf(ajar.EINVALID, "the browser's answer is not a WebAuthn assertion: %s", webauthnReason(err))
	}
	p, stored, err := s.load(ctx, u)
	if err != nil {
		return err
	}
	cred, err := s.wa.ValidateLogin(p, *sd, parsed)
	if err != nil {
		return ajar.Errorf(ajar.EUNAUTH, "the security key's answer was not accepted: %s", webauthnReason(err))
	}
	if cred.Authenticator.CloneWarning {
		return ajar.Errorf(ajar.EUNAUTH, "this security key's counter went backwards: it may have been cloned; remove it and register a new one")
	}
	for _, c := range stored {
		if bytes.Equal(c.ID, cred.ID) {
			data, err := json.Marshal(cred)
			if err != nil {
				return err
			}
			c.Data, c.LastUsedAt = data, s.now()
			return s.keys.UpdateWebAuthnCredential(ctx, c)
		}
	}
	return ajar.Errorf(ajar.EUNAUTH, "this security key is not registered to you")
}

// webauthnReason is a library error's short, safe text.
func webauthnReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return ajar.SafeMessage(errors.New(pe.Details))
	}
	return ajar.SafeMessage(err)
}
