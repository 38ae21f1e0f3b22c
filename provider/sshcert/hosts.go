package sshcert

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// AllowsNode reports whether u is one of the target's host agents (Config.Nodes).
// It reads today's config: who runs a host is not part of any grant.
func (p *Provider) AllowsNode(u ajar.User) bool {
	return len(p.cfg.Nodes) > 0 && u.MatchesAny(p.cfg.Nodes)
}

// TakesPlainKeys reports whether h is a grant in authorized-keys mode.
func (p *Provider) TakesPlainKeys(h ajar.Handle) bool {
	if h.Provider != Name || len(h.Data) == 0 {
		return false
	}
	var d handleData
	return json.Unmarshal(h.Data, &d) == nil && d.Mode == ModeAuthorizedKeys
}

// keyOptions maps certificate extensions to the authorized_keys options that
// grant the same after "restrict", which turns everything off.
var keyOptions = map[string]string{
	"permit-pty":              "pty",
	"permit-user-rc":          "user-rc",
	"permit-port-forwarding":  "port-forwarding",
	"permit-agent-forwarding": "agent-forwarding",
	"permit-X11-forwarding":   "X11-forwarding",
	"no-touch-required":       "no-touch-required",
}

// AuthorizedKeys returns, for a grant in authorized-keys mode that allows user,
// one authorized_keys line per key recorded for it that has not expired at now:
//
//	expiry-time="20260102150405Z",restrict,pty,user-rc,from="203.0.113.7" ssh-ed25519 AAAA... ajar:REQ:alice@example.com
//
// expiry-time is the key's ValidBefore (the grant's expiry), enforced by sshd
// itself; "restrict" turns off everything the grant's extensions do not allow, and
// from= pins the key to the request's source address like the certificate's
// source-address option. It returns no lines for a certificate-mode grant, a user
// the grant does not allow, or keys of another request.
func (p *Provider) AuthorizedKeys(h ajar.Handle, keys []ajar.SSHCert, user string, now time.Time) ([]string, error) {
	if h.Provider != Name || h.Version != HandleVersion || len(h.Data) == 0 {
		return nil, nil
	}
	var d handleData
	if err := json.Unmarshal(h.Data, &d); err != nil {
		return nil, fmt.Errorf("ssh-cert: decode handle of request %s: %w", h.Grant.RequestID, err)
	}
	if d.Mode != ModeAuthorizedKeys || !slices.Contains(d.Principals, user) {
		return nil, nil
	}
	opts := []string{"restrict"}
	for _, e := range d.Extensions {
		if o, ok := keyOptions[e]; ok {
			opts = append(opts, o)
		}
	}
	if d.SourceAddress != "" {
		opts = append(opts, `from="`+d.SourceAddress+`"`)
	}
	var out []string
	for _, k := range keys {
		until := k.ValidBefore
		if g := h.Grant.Until(); until.After(g) {
			until = g
		}
		if k.RequestID != h.Grant.RequestID || k.PublicKey == "" || !now.Before(until) {
			continue
		}
		pub, err := parseUserKey([]byte(k.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("ssh-cert: stored key of request %s, serial %d: %w", k.RequestID, k.Serial, err)
		}
		// sshd refuses a key from expiry-time on, to the second; round down so it
		// never outlives the grant.
		expiry := `expiry-time="` + until.UTC().Format("20060102150405") + `Z"`
		line := strings.Join(append([]string{expiry}, opts...), ",") + " " +
			strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + keyComment(k.KeyID)
		out = append(out, line)
	}
	return out, nil
}

// keyComment makes a key id safe as the comment of an authorized_keys line.
func keyComment(id string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, id)
}
