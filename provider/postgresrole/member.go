package postgresrole

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/dbx"
)

// The membership mode (existing_role_template / existing_roles): the requester
// logs in as their own standing role, and the grant makes it a member of
// grant_roles for the window. ajar only ever revokes memberships whose grantor
// is its own admin role, and refuses a grant when the person already holds a
// grant role through someone else. Overlapping requests of one person share
// the membership (ajar.Sharer): it goes when the last of them ends.

// memberRole returns the requester's own role in the membership mode, or an
// EINVALID error when the config names none or a name ajar refuses.
func (p *Provider) memberRole(requester string) (string, error) {
	role := p.cfg.Existing.Resolve(requester)
	switch {
	case role == "":
		return "", ajar.Errorf(ajar.EINVALID, "target %s names no database role for %s (existing_roles)", p.target, requester)
	case !validRole(role):
		return "", ajar.Errorf(ajar.EINVALID, "%q (the database role of %s) is not a role name ajar accepts", role, requester)
	}
	return role, nil
}

func validRole(role string) bool { return dbx.ValidIdent(role) && !isReserved(role) }

// ShareKey is the requester's role in the membership mode (all of a person's
// requests on the target are one membership), "" otherwise.
func (p *Provider) ShareKey(req ajar.GrantRequest) string {
	if p.cfg.Existing == nil {
		return ""
	}
	role, err := p.memberRole(req.Requester)
	if err != nil {
		return ""
	}
	return Name + ":" + p.target + ":" + role
}

// memberships returns, for each grant role the person's role is a member of,
// whether ajar's admin role granted it.
func memberships(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, role string) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT g.rolname, m.grantor = (SELECT oid FROM pg_roles WHERE rolname = current_user)
		FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1`, role)
	if err != nil {
		return nil, fmt.Errorf("read the memberships of %s: %w", role, err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var g string
		var ours bool
		if err := rows.Scan(&g, &ours); err != nil {
			rows.Close()
			return nil, err
		}
		out[g] = ours
	}
	return out, rows.Err()
}

func (p *Provider) grantMember(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	role, err := p.memberRole(req.Requester)
	if err != nil {
		return ajar.Handle{}, err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "member:"+role); err != nil {
			return err
		}
		var super bool
		err := tx.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = $1`, role).Scan(&super)
		if errors.Is(err, pgx.ErrNoRows) {
			return ajar.Errorf(ajar.EINVALID, "role %s (of %s) does not exist", role, req.Requester)
		} else if err != nil {
			return err
		}
		if super {
			return ajar.Errorf(ajar.EINVALID, "role %s is a superuser: ajar grants it nothing", role)
		}
		have, err := memberships(ctx, tx, role)
		if err != nil {
			return err
		}
		for _, g := range p.cfg.GrantRoles {
			ours, member := have[g]
			switch {
			case member && !ours:
				return ajar.Errorf(ajar.EINVALID, "role %s is a member of %s already, granted outside ajar: ajar leaves it alone", role, g)
			case member:
				continue
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", ident(g), ident(role))); err != nil {
				return classify(err, "grant %s to %s", g, role)
			}
		}
		return nil
	})
	if err != nil {
		if ajar.ErrorCode(err) == ajar.EINVALID {
			return ajar.Handle{}, err
		}
		return ajar.Handle{}, fmt.Errorf("grant %s: %w", req.RequestID, err)
	}
	data, err := json.Marshal(handleData{Role: role, Database: p.cfg.Database, Member: true})
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

// revokeMember revokes the grant roles ajar gave the person's role and ends
// its sessions (one may have SET ROLE to a grant role, which a revoked
// membership does not undo). A role that is gone is success.
func (p *Provider) revokeMember(ctx context.Context, h ajar.Handle) error {
	role, err := p.memberRole(h.Grant.Requester)
	if err != nil {
		return nil // a grant for such a requester never happened
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "member:"+role); err != nil {
			return err
		}
		have, err := memberships(ctx, tx, role)
		if err != nil {
			return err
		}
		revoked := false
		for _, g := range p.cfg.GrantRoles {
			if have[g] {
				if _, err := tx.Exec(ctx, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(role))); err != nil {
					return err
				}
				revoked = true
			}
		}
		if !revoked {
			return nil
		}
		_, err = tx.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", h.Grant.RequestID, err)
	}
	return nil
}

// verifyMember reports whether the person's role holds every grant role
// through ajar.
func (p *Provider) verifyMember(ctx context.Context, h ajar.Handle) (bool, error) {
	role, err := p.memberRole(h.Grant.Requester)
	if err != nil {
		return false, nil
	}
	have, err := memberships(ctx, p.pool, role)
	if err != nil {
		return false, fmt.Errorf("verify %s: %w", h.Grant.RequestID, err)
	}
	for _, g := range p.cfg.GrantRoles {
		if !have[g] {
			return false, nil
		}
	}
	return true, nil
}

// errNoLogin is IssueLogin's answer in the membership mode.
func (p *Provider) errNoLogin() error {
	return ajar.Errorf(ajar.EINVALID, "target %s grants roles to your own database role: log in as it (ajar keeps no password for it)", p.target)
}
