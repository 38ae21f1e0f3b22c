package oidc

import (
	"strings"

	"github.com/ajar-dev/ajar/policy"
)

// ConfigFrom is the client Config of the policy's identity.oidc block (its
// secret already read from the environment). The HTTP client and clock are
// left to their defaults.
func ConfigFrom(o policy.OIDC) Config {
	return Config{
		Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		Scopes: o.Scopes, UserClaim: o.UserClaim, GroupsClaim: o.GroupsClaim,
	}
}

// RedirectURL is the redirect URI registered at the identity provider for a
// server reached at publicURL (server.public_url): publicURL + CallbackPath.
func RedirectURL(publicURL string) string {
	return strings.TrimRight(publicURL, "/") + CallbackPath
}
