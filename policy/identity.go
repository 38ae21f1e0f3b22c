package policy

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// IdentityConfig is the optional "identity" section: where people sign in and
// how long their sessions last. Without an oidc block there is no single
// sign-on and the static users sign in with tokens, as before.
type IdentityConfig struct {
	OIDC *OIDCConfig `yaml:"oidc"`
	// SessionTTL is how long a web or CLI session lasts; default 12h.
	SessionTTL Duration `yaml:"session_ttl"`
	// Refresh is how often a session's groups are read again from the
	// identity provider; default 10m. At most SessionTTL.
	Refresh Duration `yaml:"refresh"`
	// RevokeOnLoss ends the grants of a requester who lost the right to
	// request them (left the group); false lists them as orphaned only.
	RevokeOnLoss bool `yaml:"revoke_on_loss"`
}

// OIDCConfig is identity.oidc: ajar as an OpenID Connect client of the
// company's identity provider. The redirect URI to register there is
// server.public_url + "/auth/oidc/callback".
type OIDCConfig struct {
	// Issuer is the provider's issuer URL: https, or http on a loopback
	// address only.
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecretEnv names the environment variable holding the client
	// secret; the secret itself is never written in the file.
	ClientSecretEnv string `yaml:"client_secret_env"`
	// Scopes requested; default openid, email, profile. Must include openid.
	Scopes []string `yaml:"scopes"`
	// UserClaim names the user (lower-cased); default email, in which case
	// email_verified must be true.
	UserClaim string `yaml:"user_claim"`
	// GroupsClaim holds the groups (a list of strings or one string); default
	// groups.
	GroupsClaim string `yaml:"groups_claim"`
}

// Defaults of the "identity" section.
const (
	DefaultSessionTTL      = 12 * time.Hour
	DefaultIdentityRefresh = 10 * time.Minute
	DefaultUserClaim       = "email"
	DefaultGroupsClaim     = "groups"
)

// DefaultScopes are the OIDC scopes requested when identity.oidc.scopes is
// absent.
var DefaultScopes = []string{"openid", "email", "profile"}

// Identity is the validated "identity" section, defaults applied.
type Identity struct {
	// OIDC is nil when single sign-on is not set up.
	OIDC         *OIDC
	SessionTTL   time.Duration
	Refresh      time.Duration
	RevokeOnLoss bool
}

// OIDC is the validated identity.oidc block, with the client secret read from
// the environment variable named by ClientSecretEnv when the policy was
// parsed. String and GoString leave the secret out (and so does slog).
type OIDC struct {
	Issuer          string
	ClientID        string
	ClientSecretEnv string
	ClientSecret    string `json:"-"`
	Scopes          []string
	UserClaim       string
	GroupsClaim     string
}

// String describes o without its secret.
func (o OIDC) String() string {
	return fmt.Sprintf("oidc{issuer: %s, client_id: %s, client_secret_env: %s, scopes: %v, user_claim: %s, groups_claim: %s}",
		o.Issuer, o.ClientID, o.ClientSecretEnv, o.Scopes, o.UserClaim, o.GroupsClaim)
}

// GoString is String, so %#v does not print the secret either.
func (o OIDC) GoString() string { return o.String() }

// Identity returns the "identity" section, defaults applied. Its OIDC is nil
// when the file sets up no single sign-on.
func (p *Policy) Identity() Identity {
	id := p.identity
	if id.OIDC != nil {
		o := *id.OIDC
		o.Scopes = slices.Clone(o.Scopes)
		id.OIDC = &o
	}
	return id
}

func (c *IdentityConfig) applyDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = Duration(DefaultSessionTTL)
	}
	if c.Refresh == 0 {
		c.Refresh = Duration(DefaultIdentityRefresh)
	}
	if o := c.OIDC; o != nil {
		if o.Scopes == nil {
			o.Scopes = slices.Clone(DefaultScopes)
		}
		if o.UserClaim == "" {
			o.UserClaim = DefaultUserClaim
		}
		if o.GroupsClaim == "" {
			o.GroupsClaim = DefaultGroupsClaim
		}
	}
}

// identity checks the "identity" section (defaults applied) and the
// server.public_url single sign-on needs, and reads the client secret.
func (c *compiler) identity(cfg *Config) {
	ic := cfg.Identity
	c.p.identity = Identity{SessionTTL: time.Duration(ic.SessionTTL), Refresh: time.Duration(ic.Refresh), RevokeOnLoss: ic.RevokeOnLoss}
	c.positive("identity.session_ttl", time.Duration(ic.SessionTTL))
	c.positive("identity.refresh", time.Duration(ic.Refresh))
	if ic.Refresh > 0 && ic.SessionTTL > 0 && ic.Refresh > ic.SessionTTL {
		c.add("identity.refresh", "%s is longer than session_ttl %s, so groups would never be read again", ic.Refresh, ic.SessionTTL)
	}
	o := ic.OIDC
	if o == nil {
		return
	}
	const f = "identity.oidc"
	if msg := checkLoopbackOrHTTPS(o.Issuer); o.Issuer == "" {
		c.add(f+".issuer", "required: the identity provider's issuer URL, such as https://idp.example.com")
	} else if msg != "" {
		c.add(f+".issuer", "%s, not %q", msg, o.Issuer)
	}
	if o.ClientID == "" {
		c.add(f+".client_id", "required: the client id ajar has at the identity provider")
	}
	secret := ""
	switch v, ok := c.env(o.ClientSecretEnv); {
	case o.ClientSecretEnv == "":
		c.add(f+".client_secret_env", "required: the environment variable holding the client secret")
	case !envName.MatchString(o.ClientSecretEnv):
		c.add(f+".client_secret_env", "must be an environment variable name, not %q", o.ClientSecretEnv)
	case !ok || v == "":
		c.add(f+".client_secret_env", "the environment variable %s is not set: it must hold the client secret", o.ClientSecretEnv)
	default:
		secret = v
	}
	if !slices.Contains(o.Scopes, "openid") {
		c.add(f+".scopes", "must include openid, not %v", o.Scopes)
	}
	for i, s := range o.Scopes {
		switch {
		case s == "" || strings.ContainsFunc(s, isSpace):
			c.add(fmt.Sprintf("%s.scopes[%d]", f, i), "must be a scope name without spaces, not %q", s)
		case slices.Index(o.Scopes, s) < i:
			c.add(fmt.Sprintf("%s.scopes[%d]", f, i), "%q is already scopes[%d]", s, slices.Index(o.Scopes, s))
		}
	}
	if strings.ContainsFunc(o.UserClaim, isSpace) {
		c.add(f+".user_claim", "must be a claim name without spaces, not %q", o.UserClaim)
	}
	if strings.ContainsFunc(o.GroupsClaim, isSpace) {
		c.add(f+".groups_claim", "must be a claim name without spaces, not %q", o.GroupsClaim)
	}
	switch u := cfg.Server.PublicURL; {
	case u == "":
		c.add("server.public_url", "required with identity.oidc: the identity provider sends people back to PUBLIC_URL/auth/oidc/callback")
	case checkLoopbackOrHTTPS(u) != "":
		c.add("server.public_url", "with identity.oidc, %s, not %q", checkLoopbackOrHTTPS(u), u)
	}
	c.p.identity.OIDC = &OIDC{
		Issuer: o.Issuer, ClientID: o.ClientID, ClientSecretEnv: o.ClientSecretEnv, ClientSecret: secret,
		Scopes: slices.Clone(o.Scopes), UserClaim: o.UserClaim, GroupsClaim: o.GroupsClaim,
	}
}

// checkLoopbackOrHTTPS returns why u is not an https URL (or an http one on
// a loopback address), or "".
func checkLoopbackOrHTTPS(u string) string {
	const rule = "must be an https:// URL (http:// only on a loopback address such as 127.0.0.1)"
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" || pu.Opaque != "" {
		return rule
	}
	if pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" {
		return rule + " without credentials, query or fragment"
	}
	switch pu.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopback(pu.Hostname()) {
			return ""
		}
	}
	return rule
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
