package sshhost

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	"github.com/ajar-dev/ajar"
)

// SSHAuthorizedKeys returns the authorized_keys lines that let user log in to a
// host of target now: the keys of its active requests in authorized-keys mode
// that allow user, each with an expiry-time option. It is what sshd's
// AuthorizedKeysCommand ("ajar node keys") prints. Only the target's host agents
// may ask (EFORBIDDEN otherwise).
func (s *Service) SSHAuthorizedKeys(ctx context.Context, node ajar.User, target, user string) ([]string, error) {
	if err := checkLogin("user", user); err != nil {
		return nil, err
	}
	if _, err := s.nodeOf(node, target); err != nil {
		return nil, err
	}
	var out []string
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now := tx.Now()
		rs, err := tx.ListRequests(ctx, ajar.RequestFilter{Target: target, States: []ajar.State{ajar.StateActive}, Limit: maxKeyRequests})
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Handle == nil || r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) {
				continue
			}
			prov, err := s.providers.ForHandle(*r.Handle)
			if err != nil {
				return err
			}
			hosts, ok := prov.(ajar.SSHHosts)
			if !ok || !hosts.TakesPlainKeys(*r.Handle) {
				continue
			}
			keys, err := tx.ListSSHCerts(ctx, r.ID)
			if err != nil {
				return err
			}
			lines, err := hosts.AuthorizedKeys(*r.Handle, keys, user, now)
			if err != nil {
				return err
			}
			out = append(out, lines...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("authorized keys for %s on %s: %w", user, target, err)
	}
	return out, nil
}

// nodeOf returns the target's provider if u is one of its host agents.
func (s *Service) nodeOf(u ajar.User, target string) (ajar.SSHHosts, error) {
	if strings.TrimSpace(target) == "" || len(target) > maxTargetLen {
		return nil, ajar.FieldErrorf("target", "a target name is required")
	}
	forbidden := ajar.Errorf(ajar.EFORBIDDEN, "%s is not a host agent of target %s", u.ID, target)
	prov, err := s.providers.ForTarget(target)
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, forbidden // do not tell non-agents which targets exist
	} else if err != nil {
		return nil, err
	}
	hosts, ok := prov.(ajar.SSHHosts)
	if !ok || !hosts.AllowsNode(u) {
		return nil, forbidden
	}
	return hosts, nil
}

// checkLogin validates a Unix login name from a host.
func checkLogin(field, user string) error {
	switch {
	case user == "":
		return ajar.FieldErrorf(field, "a user name is required")
	case len(user) > maxUserLen:
		return ajar.FieldErrorf(field, "longer than %d characters", maxUserLen)
	case strings.HasPrefix(user, "-") || strings.ContainsFunc(user, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == ','
	}):
		return ajar.FieldErrorf(field, "%q is not a user name", user)
	}
	return nil
}
