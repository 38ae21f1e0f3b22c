package identity

import (
	"context"
	"fmt"
	"time"

	"github.com/ajar-dev/ajar"
)

// SignIn describes a sign-in someone vouched for: the IdP (Source "oidc") or
// a valid API token (Source "token").
type SignIn struct {
	Kind   string // ajar.SessionWeb or ajar.SessionCLI
	UserID string
	Name   string // a short description: "ajar login", a user agent
	// Groups are the IdP's groups (Source "oidc"; nil is stored as none).
	// A token sign-in has none: its user's groups come from the directory.
	Groups       []string
	RefreshToken string // the IdP's refresh token, sealed at rest; "" if none
	MFA          bool   // the sign-in itself was a second-factor authentication
	Source       string // "oidc" or "token"
	// Parent is the id of the API token of a token sign-in (User.Session of
	// the token's user): the session works only while that token does.
	Parent string
}

// SignIn starts a web or CLI session and returns its secret (shown once) and
// the stored session. It lasts Config.SessionTTL. Audited "signin". Errors:
// EINVALID for a bad kind, source, user or name; EUNAUTH for a token sign-in
// of a user no longer known.
func (s *Service) SignIn(ctx context.Context, in SignIn) (string, *ajar.Session, error) {
	if in.Kind != ajar.SessionWeb && in.Kind != ajar.SessionCLI {
		return "", nil, ajar.FieldErrorf("kind", "must be %s or %s", ajar.SessionWeb, ajar.SessionCLI)
	}
	if in.Source != "oidc" && in.Source != "token" {
		return "", nil, ajar.FieldErrorf("source", "must be oidc or token")
	}
	if err := ajar.CheckText("user", in.UserID, 320); err != nil || in.UserID == "" {
		return "", nil, ajar.FieldErrorf("user", "a user id is required (at most 320 characters)")
	}
	in.Name = truncate(in.Name, 200)
	userID := ajar.CanonicalUserID(in.UserID)
	groups := in.Groups
	if in.Source == "oidc" {
		if groups == nil {
			groups = []string{}
		}
	} else {
		groups = nil
		if _, known, err := s.Lookup(ctx, userID); err != nil {
			return "", nil, fmt.Errorf("sign in: %w", err)
		} else if !known {
			return "", nil, ajar.Errorf(ajar.EUNAUTH, "user %s is no longer known", userID)
		}
	}
	secret, err := newSecret()
	if err != nil {
		return "", nil, err
	}
	id, err := newID("ses_")
	if err != nil {
		return "", nil, err
	}
	sess := &ajar.Session{ID: id, Hash: HashSecret(secret), Kind: in.Kind, UserID: userID, Name: in.Name, Groups: groups, Parent: in.Parent}
	if in.RefreshToken != "" {
		if s.sealer == nil {
			return "", nil, fmt.Errorf("sign in: no sealer for the refresh token")
		}
		if sess.Refresh, err = s.sealer.Seal(refreshKeyName(id), []byte(in.RefreshToken)); err != nil {
			return "", nil, fmt.Errorf("sign in: seal refresh token: %w", err)
		}
	}
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		now := tx.Now()
		sess.CreatedAt, sess.ExpiresAt, sess.LastUsedAt = now, now.Add(s.sessionTTL), now
		if in.Source == "oidc" && in.RefreshToken == "" && s.groups != nil && s.refresh < s.sessionTTL {
			// Without a refresh token the groups cannot be read again, so the
			// session lasts only as long as they may be trusted (identity.refresh).
			sess.ExpiresAt = now.Add(s.refresh)
		}
		if in.Source == "oidc" {
			sess.RefreshedAt = now
			if err := tx.PutIdentity(ctx, ajar.Identity{UserID: userID, Groups: groups, Source: "oidc", UpdatedAt: now}); err != nil {
				return err
			}
		}
		if in.MFA {
			sess.MFAAt = now
		}
		if err := tx.CreateSession(ctx, *sess); err != nil {
			return err
		}
		return ajar.AppendAudit(ctx, tx, userID, "signin", userID, map[string]any{
			"session": id, "kind": in.Kind, "source": in.Source, "name": in.Name,
			"groups": groups, "mfa": in.MFA, "expires_at": sess.ExpiresAt, "parent": in.Parent,
		})
	})
	if err != nil {
		return "", nil, fmt.Errorf("sign in: %w", err)
	}
	return secret, sess, nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		r = r[:n]
	}
	return string(r)
}

// SignInRefused audits a refused sign-in ("signin.refused") with its reason;
// userID may be empty when nobody was identified.
func (s *Service) SignInRefused(ctx context.Context, userID, reason string, details map[string]any) error {
	d := map[string]any{"reason": reason}
	for k, v := range details {
		if k != "reason" {
			d[k] = v
		}
	}
	actor, subject := ajar.ActorSystem, ""
	if userID != "" {
		actor, subject = ajar.CanonicalUserID(userID), ajar.CanonicalUserID(userID)
	}
	return s.store.Update(ctx, func(tx ajar.Tx) error {
		return ajar.AppendAudit(ctx, tx, actor, "signin.refused", subject, d)
	})
}

// CreateToken mints an API token for userID, a user of the directory (see
// Lookup), and returns it (shown once) with its stored session. ttl 0 means
// DefaultTokenTTL. Audited "token.created". Errors: EFORBIDDEN when actor is
// not an admin (the zero actor is the host CLI: allowed); EINVALID for an
// unknown user, a name too long, a ttl under a minute or over MaxTokenTTL.
func (s *Service) CreateToken(ctx context.Context, actor ajar.User, userID, name string, ttl time.Duration) (string, *ajar.Session, error) {
	if !s.isAdmin(actor) {
		return "", nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can create API tokens")
	}
	if err := CheckTokenTTL(ttl); err != nil {
		return "", nil, err
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if err := ajar.CheckText("name", name, maxNameLen); err != nil {
		return "", nil, err
	}
	if userID == "" {
		return "", nil, ajar.FieldErrorf("user", "is required")
	}
	u, known, err := s.Lookup(ctx, userID)
	if err != nil {
		return "", nil, fmt.Errorf("create token: %w", err)
	}
	if !known {
		return "", nil, ajar.FieldErrorf("user", "no user %q in the policy file or signed in through the identity provider", userID)
	}
	secret, err := newSecret()
	if err != nil {
		return "", nil, err
	}
	id, err := newID("tok_")
	if err != nil {
		return "", nil, err
	}
	sess := &ajar.Session{ID: id, Hash: HashSecret(secret), Kind: ajar.SessionToken, UserID: u.ID, Name: name}
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		now := tx.Now()
		sess.CreatedAt, sess.ExpiresAt = now, now.Add(ttl)
		if err := tx.CreateSession(ctx, *sess); err != nil {
			return err
		}
		return ajar.AppendAudit(ctx, tx, actorID(actor), "token.created", u.ID,
			map[string]any{"id": id, "name": name, "expires_at": sess.ExpiresAt})
	})
	if err != nil {
		return "", nil, fmt.Errorf("create token: %w", err)
	}
	return secret, sess, nil
}

// CheckTokenTTL returns EINVALID (field "ttl") unless ttl is 0 (the default)
// or between a minute and MaxTokenTTL.
func CheckTokenTTL(ttl time.Duration) error {
	if ttl != 0 && (ttl < MinTokenTTL || ttl > MaxTokenTTL) {
		return ajar.FieldErrorf("ttl", "must be between 1m and %s (366 days)", MaxTokenTTL)
	}
	return nil
}

// List returns the sessions and tokens f selects, newest first. Admins see
// everyone's; anyone else only their own (f.UserID must name them, else
// EFORBIDDEN).
func (s *Service) List(ctx context.Context, actor ajar.User, f ajar.SessionFilter) ([]*ajar.Session, error) {
	if !s.isAdmin(actor) && !(f.UserID != "" && ajar.SameUser(f.UserID, actor.ID)) {
		return nil, ajar.Errorf(ajar.EFORBIDDEN, "only admins can list other people's sessions and tokens")
	}
	if f.UserID != "" {
		f.UserID = ajar.CanonicalUserID(f.UserID)
	}
	var out []*ajar.Session
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		out, err = tx.ListSessions(ctx, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// Current returns the session u was authenticated with (ENOTFOUND if none).
func (s *Service) Current(ctx context.Context, u ajar.User) (*ajar.Session, error) {
	if u.Session == "" {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "not authenticated with a session")
	}
	var sess *ajar.Session
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		var err error
		sess, err = tx.GetSessionByID(ctx, u.Session)
		return err
	})
	return sess, err
}

// Revoke ends a session or token by id, at once: the next request made with
// it gets EUNAUTH. Admins may revoke any; anyone may revoke their own.
// Audited "token.revoked" or "session.ended". Errors: ENOTFOUND for an
// unknown id, EFORBIDDEN for someone else's, ECONFLICT if it already ended.
func (s *Service) Revoke(ctx context.Context, actor ajar.User, id string) error {
	if id == "" || len(id) > 64 {
		return ajar.FieldErrorf("id", "a session or token id is required")
	}
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetSessionByID(ctx, id)
		if err != nil {
			return err
		}
		if !s.isAdmin(actor) && !ajar.SameUser(cur.UserID, actor.ID) {
			return ajar.Errorf(ajar.EFORBIDDEN, "only admins can revoke other people's sessions and tokens")
		}
		if cur.Ended(tx.Now()) {
			return ajar.Errorf(ajar.ECONFLICT, "%s %s has already ended", what(cur), id)
		}
		return s.endTx(ctx, tx, cur, actorID(actor), "revoked", "")
	})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	return nil
}

// Logout ends the session or token u was authenticated with. Errors:
// EINVALID when u has none, ECONFLICT when it already ended.
func (s *Service) Logout(ctx context.Context, u ajar.User) error {
	if u.Session == "" {
		return ajar.Errorf(ajar.EINVALID, "not signed in with a session or token")
	}
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetSessionByID(ctx, u.Session)
		if err != nil {
			return err
		}
		if cur.Ended(tx.Now()) {
			return ajar.Errorf(ajar.ECONFLICT, "%s %s has already ended", what(cur), cur.ID)
		}
		return s.endTx(ctx, tx, cur, u.ID, "logout", "")
	})
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

// endTx revokes cur in tx and audits it: "token.revoked" for a token,
// "session.ended" for a sign-in.
func (s *Service) endTx(ctx context.Context, tx ajar.Tx, cur *ajar.Session, actor, reason, message string) error {
	cur.RevokedAt, cur.RevokedBy = tx.Now(), actor
	if err := tx.UpdateSession(ctx, *cur); err != nil {
		return err
	}
	action := "session.ended"
	if cur.Kind == ajar.SessionToken {
		action = "token.revoked"
	}
	details := map[string]any{"id": cur.ID, "kind": cur.Kind, "name": cur.Name, "reason": reason}
	if message != "" {
		details["message"] = message
	}
	return ajar.AppendAudit(ctx, tx, actor, action, cur.UserID, details)
}

// MarkMFA records an MFA step-up now in the session u was authenticated
// with (audited "session.mfa"). EINVALID when u has none; EUNAUTH when it
// ended; EFORBIDDEN when it is an API token (docs/security.md: tokens never
// carry a second factor).
func (s *Service) MarkMFA(ctx context.Context, u ajar.User) error {
	if u.Session == "" {
		return ajar.Errorf(ajar.EINVALID, "not signed in with a session")
	}
	return s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetSessionByID(ctx, u.Session)
		if err != nil {
			return err
		}
		if err := usable(cur, tx.Now()); err != nil {
			return err
		}
		if cur.Kind == ajar.SessionToken {
			// A token put in a browser's cookie by its holder: a bearer secret
			// that lives for months never carries a second factor.
			return ajar.Errorf(ajar.EFORBIDDEN, "an API token cannot carry a second factor; sign in to the web page")
		}
		cur.MFAAt = tx.Now()
		if err := tx.UpdateSession(ctx, *cur); err != nil {
			return err
		}
		return ajar.AppendAudit(ctx, tx, u.ID, "session.mfa", cur.UserID, map[string]any{"id": cur.ID})
	})
}

// Flows keeps the one-use sign-in steps (ajar.AuthFlow) in the store: the OIDC
// state, the CLI's one-time code, the device code, a security key ceremony.
// Package identity/login and identity/mfa use it; so do PutFlow and TakeFlow.
type Flows struct{ Store ajar.Store }

// Put stores f, replacing a step of the same kind and key.
func (f Flows) Put(ctx context.Context, fl ajar.AuthFlow) error {
	return f.Store.Update(ctx, func(tx ajar.Tx) error {
		if _, err := tx.TakeAuthFlow(ctx, fl.Kind, fl.KeyHash); err != nil && ajar.ErrorCode(err) != ajar.ENOTFOUND {
			return err
		}
		return tx.PutAuthFlow(ctx, fl)
	})
}

// Update takes the step and stores what fn returns in its place, in one
// transaction; fn's error rolls the take back.
func (f Flows) Update(ctx context.Context, kind string, key []byte, fn func(*ajar.AuthFlow) (*ajar.AuthFlow, error)) error {
	var missing error
	err := f.Store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.TakeAuthFlow(ctx, kind, key)
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			missing = err // commit: an expired step is deleted
			return nil
		} else if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if next != nil {
			return tx.PutAuthFlow(ctx, *next)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return missing
}

// PutFlow stores a one-use sign-in step under the hash of secret, valid for
// ttl, replacing one with the same kind and secret.
func (s *Service) PutFlow(ctx context.Context, kind, secret string, data []byte, ttl time.Duration) error {
	if secret == "" || ttl <= 0 {
		return ajar.Errorf(ajar.EINVALID, "a sign-in step needs a secret and a positive lifetime")
	}
	return Flows{Store: s.store}.Put(ctx, ajar.AuthFlow{Kind: kind, KeyHash: HashSecret(secret), Data: data, ExpiresAt: s.now().Add(ttl)})
}

// TakeFlow returns and deletes the sign-in step of secret: ENOTFOUND when it
// does not exist, was used already or has expired.
func (s *Service) TakeFlow(ctx context.Context, kind, secret string) (*ajar.AuthFlow, error) {
	if secret == "" || len(secret) > maxSecret {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "sign-in step not found")
	}
	var f *ajar.AuthFlow
	err := Flows{Store: s.store}.Update(ctx, kind, HashSecret(secret), func(cur *ajar.AuthFlow) (*ajar.AuthFlow, error) {
		f = cur
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}
