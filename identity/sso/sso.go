// Package sso puts ajar's identity pieces together as the policy asks: the
// session and token service (package identity), the OIDC client and the
// sign-in flows that use it when the policy has identity.oidc (packages
// identity/oidc and identity/login), and security keys when it has
// server.public_url (package identity/mfa). The composition root and tests
// build them the same way. docs/sso.md.
package sso

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/identity"
	"github.com/ajar-dev/ajar/identity/login"
	"github.com/ajar-dev/ajar/identity/mfa"
	"github.com/ajar-dev/ajar/identity/oidc"
	"github.com/ajar-dev/ajar/policy"
)

// Parts are what Build made; Login and MFA are nil when not configured.
type Parts struct {
	IDs   *identity.Service
	Login *login.Service
	MFA   *Keys
}

// Build builds the identity service and, as the policy asks, single
// sign-on and security keys. An unreachable issuer stops start-up with its URL.
func Build(ctx context.Context, pol *policy.Policy, st ajar.Store, sealer ajar.Sealer, clock func() time.Time, log *slog.Logger) (*Parts, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idc := pol.Identity()
	var client *oidc.Client
	var groups identity.GroupSource
	if idc.OIDC != nil {
		cfg := oidc.ConfigFrom(*idc.OIDC)
		cfg.Now = clock
		var err error
		client, err = oidc.New(ctx, cfg, oidc.RedirectURL(pol.Server().PublicURL))
		if err != nil {
			return nil, fmt.Errorf("identity.oidc: %w", err)
		}
		groups = oidc.GroupSource{Client: client}
	}
	ids, err := identity.New(identity.Config{
		Store: st, Policy: pol, Sealer: sealer, Groups: groups,
		Refresh: idc.Refresh, SessionTTL: idc.SessionTTL, Now: clock, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	parts := &Parts{IDs: ids}
	flows := identity.Flows{Store: st}
	if client != nil {
		parts.Login, err = login.New(login.Config{
			IdP: idpAdapter{client}, Sessions: sessionsAdapter{ids}, Flows: flows,
			PublicURL: pol.Server().PublicURL, Now: clock,
		})
		if err != nil {
			return nil, err
		}
	}
	if public := pol.Server().PublicURL; public == "" {
		log.Info("security keys are off: they need server.public_url")
	} else if u, err := url.Parse(public); err == nil && net.ParseIP(u.Hostname()) != nil {
		// WebAuthn binds keys to a domain name; an address cannot be one.
		log.Warn("security keys are off: server.public_url names an IP address, not a host name", "public_url", public)
	} else {
		keys, err := mfa.New(public, storeKeys{st: st}, flows, clock)
		if err != nil {
			return nil, err
		}
		parts.MFA = &Keys{Service: keys, ids: ids, sso: client != nil, now: clock}
	}
	return parts, nil
}

// idpAdapter is the OIDC client as the sign-in flows see it.
type idpAdapter struct{ c *oidc.Client }

func (a idpAdapter) AuthURL(state, nonce, verifier string, stepUp bool) string {
	var o oidc.AuthOptions
	if stepUp {
		zero := time.Duration(0)
		o.MaxAge = &zero // a fresh authentication: max_age=0, prompt=login
	}
	return a.c.AuthURL(state, nonce, verifier, o)
}

func (a idpAdapter) Exchange(ctx context.Context, code, verifier, nonce string) (*login.Identity, error) {
	id, err := a.c.Exchange(ctx, code, verifier, nonce)
	if err != nil {
		return nil, err
	}
	return &login.Identity{UserID: id.UserID, Groups: id.Groups, AMR: id.AMR, AuthTime: id.AuthTime, RefreshToken: id.RefreshToken}, nil
}

func (a idpAdapter) HasSecondFactor(amr []string) bool { return oidc.HasSecondFactor(amr) }

// sessionsAdapter is the identity service as the sign-in flows see it.
type sessionsAdapter struct{ ids *identity.Service }

func (a sessionsAdapter) SignIn(ctx context.Context, kind, name string, id *login.Identity, mfa bool) (string, time.Time, error) {
	secret, sess, err := a.ids.SignIn(ctx, identity.SignIn{
		Kind: kind, UserID: id.UserID, Name: name, Groups: id.Groups, RefreshToken: id.RefreshToken, MFA: mfa, Source: "oidc",
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return secret, sess.ExpiresAt, nil
}

func (a sessionsAdapter) Refused(ctx context.Context, userID, reason string, details map[string]any) error {
	return a.ids.SignInRefused(ctx, userID, reason, details)
}

func (a sessionsAdapter) MarkMFA(ctx context.Context, sessionID, userID string) error {
	return a.ids.MarkMFA(ctx, ajar.User{ID: userID, Session: sessionID})
}

// storeKeys keeps security keys in the store, each change audited with it.
type storeKeys struct{ st ajar.Store }

func (k storeKeys) ListWebAuthnCredentials(ctx context.Context, userID string) ([]ajar.WebAuthnCredential, error) {
	var out []ajar.WebAuthnCredential
	err := k.st.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		out, err = tx.ListWebAuthnCredentials(ctx, userID)
		return err
	})
	return out, err
}

func (k storeKeys) AddWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error {
	return k.st.Update(ctx, func(tx ajar.Tx) error {
		if err := tx.PutWebAuthnCredential(ctx, c); err != nil {
			return err
		}
		return ajar.AppendAudit(ctx, tx, c.UserID, "mfa.key_added", c.UserID, map[string]any{"name": c.Name})
	})
}

func (k storeKeys) UpdateWebAuthnCredential(ctx context.Context, c ajar.WebAuthnCredential) error {
	return k.st.Update(ctx, func(tx ajar.Tx) error { return tx.UpdateWebAuthnCredential(ctx, c) })
}

func (k storeKeys) DeleteWebAuthnCredential(ctx context.Context, userID string, id []byte) error {
	return k.st.Update(ctx, func(tx ajar.Tx) error {
		if err := tx.DeleteWebAuthnCredential(ctx, userID, id); err != nil {
			return err
		}
		return ajar.AppendAudit(ctx, tx, userID, "mfa.key_removed", userID, nil)
	})
}

// Keys is what the web's security key pages need: the ceremonies and the
// session's step-up mark.
type Keys struct {
	*mfa.Service
	ids *identity.Service
	sso bool             // the server has single sign-on
	now func() time.Time // nil: time.Now
}

// BeginRegistration is mfa.Service's, under mayRegister.
func (m *Keys) BeginRegistration(ctx context.Context, u ajar.User) (json.RawMessage, error) {
	if err := m.mayRegister(ctx, u); err != nil {
		return nil, err
	}
	return m.Service.BeginRegistration(ctx, u)
}

// FinishRegistration is mfa.Service's, under mayRegister.
func (m *Keys) FinishRegistration(ctx context.Context, u ajar.User, name string, credential []byte) (*mfa.Key, error) {
	if err := m.mayRegister(ctx, u); err != nil {
		return nil, err
	}
	return m.Service.FinishRegistration(ctx, u, name, credential)
}

// mayRegister: on a server with single sign-on, keys are registered only from
// a session the IdP vouched for, not from an API token or a web session
// signed in with one, and only within login.MFAFresh of that sign-in or of a
// second factor (EFORBIDDEN). Otherwise whoever holds a person's token (made
// for a script, say) or an old session cookie of theirs could register a key
// of their own as that person's first one and pass require_mfa steps as them
// (docs/security.md). Someone who holds only the cookie cannot sign in at the
// IdP again.
func (m *Keys) mayRegister(ctx context.Context, u ajar.User) error {
	if !m.sso {
		return nil
	}
	sess, err := m.ids.Current(ctx, u)
	if err != nil {
		return err
	}
	if sess.Kind == ajar.SessionToken || sess.Parent != "" {
		return ajar.Errorf(ajar.EFORBIDDEN, "security keys are added from a session signed in with SSO, not with an API token; sign out and use Sign in with SSO")
	}
	now := time.Now()
	if m.now != nil {
		now = m.now()
	}
	recent := func(t time.Time) bool {
		return !t.IsZero() && !t.After(now.Add(time.Minute)) && now.Sub(t) <= login.MFAFresh
	}
	if !recent(sess.CreatedAt) && !recent(u.MFAAt) {
		return ajar.Errorf(ajar.EFORBIDDEN, "security keys are added within 5 minutes of signing in: sign out, sign in with SSO again and add the key then")
	}
	return nil
}

// MarkMFA records the second factor on u's session.
func (m *Keys) MarkMFA(ctx context.Context, u ajar.User) error { return m.ids.MarkMFA(ctx, u) }
