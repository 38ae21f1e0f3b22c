package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ajar-dev/ajar"
)

const msgUnknown = "unknown API token or session"

// Unknown reports whether err is Authenticate's answer for a secret that is
// no token or session at all (as opposed to one that expired or was revoked).
// Sign-in pages audit refusals of known credentials only, so that guesses
// cannot flood the audit log.
func Unknown(err error) bool {
	var e *ajar.Error
	return errors.As(err, &e) && e.Code == ajar.EUNAUTH && e.Message == msgUnknown
}

// what names a session's kind in messages.
func what(sess *ajar.Session) string {
	if sess.Kind == ajar.SessionToken {
		return "API token"
	}
	return "session"
}

// Authenticate returns the user a bearer token or web cookie secret belongs
// to, with User.Session set to its id. Errors:
//   - EUNAUTH, with a message saying which: a missing or malformed secret, an
//     unknown one, one that expired, one that was revoked (or signed out), a
//     user no longer known (neither in the policy file nor vouched for by the
//     IdP), or a session whose groups the IdP refused to refresh (the session
//     is ended then, audited "session.ended");
//   - any other error: the store failed.
//
// The user's groups are the static ones of the policy file and the groups of
// the session (or, for a session without its own, the IdP's last known ones).
// A session's groups are read again from the IdP once they are older than
// Config.Refresh; a change is audited "session.groups_changed". LastUsedAt is
// written at most once a minute.
func (s *Service) Authenticate(ctx context.Context, secret string) (ajar.User, error) {
	if secret == "" || len(secret) > maxSecret {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, "missing or malformed API token or session")
	}
	var sess, parent *ajar.Session
	var now time.Time
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now = tx.Now()
		var err error
		if sess, err = tx.GetSession(ctx, HashSecret(secret)); err != nil || sess.Parent == "" {
			return err
		}
		parent, err = tx.GetSessionByID(ctx, sess.Parent)
		return err
	})
	if ajar.ErrorCode(err) == ajar.ENOTFOUND && sess == nil {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, msgUnknown)
	} else if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, "the API token this session was signed in with no longer exists")
	} else if err != nil {
		return ajar.User{}, fmt.Errorf("authenticate: %w", err)
	}
	if err := usable(sess, now); err != nil {
		return ajar.User{}, err
	}
	if parent != nil && parent.Ended(now) {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, "the API token this session was signed in with was revoked or expired; sign in again")
	}
	if s.groups != nil && sess.Groups != nil && len(sess.Refresh) > 0 && now.Sub(sess.RefreshedAt) >= s.refresh {
		if sess, err = s.refreshGroups(ctx, sess); err != nil {
			return ajar.User{}, err
		}
	}
	u, err := s.userOf(ctx, sess)
	if err != nil {
		return ajar.User{}, err
	}
	if now.Sub(sess.LastUsedAt) >= touchEvery {
		err := s.store.Update(ctx, func(tx ajar.Tx) error { return tx.TouchSession(ctx, sess.ID, tx.Now()) })
		if err != nil && ctx.Err() == nil {
			// Last use is bookkeeping: failing to write it does not refuse the caller.
			s.log.WarnContext(ctx, "cannot record a session's last use", "session", sess.ID, "err", err)
		}
	}
	return u, nil
}

// usable returns EUNAUTH if sess was revoked or has expired at now.
func usable(sess *ajar.Session, now time.Time) error {
	switch {
	case !sess.RevokedAt.IsZero() && sess.Kind == ajar.SessionToken:
		return ajar.Errorf(ajar.EUNAUTH, "this API token was revoked")
	case !sess.RevokedAt.IsZero():
		return ajar.Errorf(ajar.EUNAUTH, "this session has ended (signed out or revoked); sign in again")
	case !now.Before(sess.ExpiresAt):
		return ajar.Errorf(ajar.EUNAUTH, "this %s expired at %s", what(sess), sess.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// userOf returns the user of a valid session: known from the policy file, from
// the IdP through this session (its Groups are set), or from the IdP's last
// word (an ajar.Identity).
func (s *Service) userOf(ctx context.Context, sess *ajar.Session) (ajar.User, error) {
	u, known, err := s.Lookup(ctx, sess.UserID)
	if err != nil {
		return ajar.User{}, fmt.Errorf("authenticate: %w", err)
	}
	if sess.Groups != nil {
		static, _ := s.pol.User(sess.UserID)
		u = ajar.User{ID: ajar.CanonicalUserID(sess.UserID), Groups: union(static.Groups, sess.Groups)}
		known = true
	}
	if !known {
		return ajar.User{}, ajar.Errorf(ajar.EUNAUTH, "the %s's user %s is no longer known", what(sess), sess.UserID)
	}
	u.Session, u.MFAAt, u.SessionKind = sess.ID, sess.MFAAt, sess.Kind
	return u, nil
}

// refreshHold is how long a claimed group refresh holds off the others beyond
// identity.refresh: longer than the IdP's client lets one refresh take
// (identity/oidc: 30 s). Without it, a refresh slower than identity.refresh
// let a second caller claim the session again with the refresh token the
// first was rotating at the IdP, which refused it as reused, and the session
// was ended.
const refreshHold = time.Minute

// refreshGroups re-reads sess's groups from the IdP. Of several replicas that
// see the same stale groups, one does (ClaimSessionRefresh); the others go on
// with what they read. When the IdP refuses, the session is ended and the
// error is EUNAUTH.
func (s *Service) refreshGroups(ctx context.Context, sess *ajar.Session) (*ajar.Session, error) {
	// Once claimed, the refresh is finished even if the caller goes away: a
	// request dropped mid-refresh would otherwise leave the claim moved on
	// and the old groups in place for another identity.refresh, and someone
	// taken out of a group could keep it by dropping a request each time the
	// refresh came due. (The IdP's HTTP client bounds the call.)
	ctx = context.WithoutCancel(ctx)
	var claimed bool
	err := s.store.Update(ctx, func(tx ajar.Tx) error {
		var err error
		// The claim holds for refreshHold beyond identity.refresh: nobody
		// else finds the groups stale while this call is at the IdP, whose
		// answer rotates the refresh token they would use. (Were this
		// process to die mid-refresh, the next would come refreshHold late.)
		claimed, err = tx.ClaimSessionRefresh(ctx, sess.ID, sess.RefreshedAt, tx.Now().Add(refreshHold))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if !claimed {
		return sess, nil // another request or replica is reading them
	}
	var rt []byte
	if s.sealer == nil {
		err = fmt.Errorf("no sealer to open the refresh token")
	} else {
		rt, err = s.sealer.Open(refreshKeyName(sess.ID), sess.Refresh)
	}
	var groups []string
	var rotated string
	if err == nil {
		groups, rotated, err = s.groups.Refresh(ctx, sess.UserID, string(rt))
	}
	if err != nil {
		reason := "the identity provider no longer vouches for the user: " + err.Error()
		if eerr := s.endRefused(ctx, sess, reason); eerr != nil {
			return nil, fmt.Errorf("end session %s: %w", sess.ID, eerr)
		}
		s.log.InfoContext(ctx, "session ended: group refresh failed", "session", sess.ID, "user", sess.UserID, "err", err)
		return nil, ajar.Errorf(ajar.EUNAUTH, "your session ended: the identity provider did not confirm your groups; sign in again")
	}
	if groups == nil {
		groups = []string{}
	}
	var out *ajar.Session
	err = s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetSessionByID(ctx, sess.ID)
		if err != nil {
			return err
		}
		if err := usable(cur, tx.Now()); err != nil {
			return err
		}
		before := cur.Groups
		cur.Groups, cur.RefreshedAt = groups, tx.Now()
		if rotated != "" {
			if cur.Refresh, err = s.sealer.Seal(refreshKeyName(cur.ID), []byte(rotated)); err != nil {
				return fmt.Errorf("seal refresh token: %w", err)
			}
		}
		if err := tx.UpdateSession(ctx, *cur); err != nil {
			return err
		}
		if err := tx.PutIdentity(ctx, ajar.Identity{UserID: cur.UserID, Groups: groups, Source: "oidc", UpdatedAt: tx.Now()}); err != nil {
			return err
		}
		if !sameGroups(before, groups) {
			if err := ajar.AppendAudit(ctx, tx, ajar.ActorSystem, "session.groups_changed", cur.UserID,
				map[string]any{"session": cur.ID, "before": nonNil(before), "after": groups}); err != nil {
				return err
			}
		}
		out = cur
		return nil
	})
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EUNAUTH {
			return nil, err
		}
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	return out, nil
}

// endRefused ends sess, whose groups the IdP refused to confirm, and makes the
// directory forget what the IdP last said about its user, in one transaction:
// else an API token made for that person would go on working with their last
// groups (Lookup) long after the IdP dropped them. Their other sessions keep
// their own groups until their own refresh; a later sign-in or successful
// refresh vouches for them again.
func (s *Service) endRefused(ctx context.Context, sess *ajar.Session, reason string) error {
	return s.store.Update(ctx, func(tx ajar.Tx) error {
		cur, err := tx.GetSessionByID(ctx, sess.ID)
		if err != nil {
			return err
		}
		if cur.Ended(tx.Now()) {
			return nil
		}
		if err := tx.PutIdentity(ctx, ajar.Identity{UserID: cur.UserID, Groups: []string{}, Source: sourceRefused, UpdatedAt: tx.Now()}); err != nil {
			return err
		}
		return s.endTx(ctx, tx, cur, ajar.ActorSystem, "refresh_failed", reason)
	})
}

// refreshKeyName binds a sealed refresh token to its session.
func refreshKeyName(id string) string { return "session-refresh:" + id }

func sameGroups(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// RefreshIdle re-reads, at the IdP, the groups of every live session whose
// groups are older than Config.Refresh, so that the directory learns of a
// person taken out of a group even while they do not use ajar (the orphan
// check and identity.revoke_on_loss depend on it). A session the IdP no longer
// vouches for is ended, as at Authenticate. It returns how many it read. A
// no-op without an IdP.
func (s *Service) RefreshIdle(ctx context.Context) (int, error) {
	if s.groups == nil {
		return 0, nil
	}
	var live []*ajar.Session
	var now time.Time
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now = tx.Now()
		var err error
		live, err = tx.ListSessions(ctx, ajar.SessionFilter{Kinds: []string{ajar.SessionWeb, ajar.SessionCLI}, Limit: 1 << 20})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("refresh idle sessions: %w", err)
	}
	n := 0
	for _, sess := range live {
		if err := ctx.Err(); err != nil {
			return n, err // shutting down: each refresh itself runs to its end
		}
		if sess.Groups == nil || len(sess.Refresh) == 0 || now.Sub(sess.RefreshedAt) < s.refresh {
			continue
		}
		if _, err := s.refreshGroups(ctx, sess); err != nil && ajar.ErrorCode(err) != ajar.EUNAUTH {
			return n, err
		}
		n++
	}
	return n, nil
}
