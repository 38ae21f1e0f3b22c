package sshcert

import (
	"regexp"
	"strings"
)

// PrincipalPrefix starts every certificate principal ajar signs.
const PrincipalPrefix = "ajar-target:"

// Principal is the certificate principal that lets a certificate of target log in
// as login: "ajar-target:TARGET:LOGIN". Certificates never carry bare logins, so a
// certificate of one target is refused by the hosts of every other target: sshd on
// a host of target T accepts, for login L, only the principal Principal(T, L),
// which "ajar node principals" prints for sshd's AuthorizedPrincipalsCommand (see
// docs/security.md). Target names (letters, digits, '.', '_', '-') and logins
// (principalRE) hold no ':', so the encoding is unambiguous.
func Principal(target, login string) string {
	return PrincipalPrefix + target + ":" + login
}

// ParsePrincipal splits a principal Principal made; ok is false for anything else.
func ParsePrincipal(p string) (target, login string, ok bool) {
	rest, ok := strings.CutPrefix(p, PrincipalPrefix)
	if !ok {
		return "", "", false
	}
	target, login, ok = strings.Cut(rest, ":")
	if !ok || target == "" || login == "" || strings.Contains(login, ":") {
		return "", "", false
	}
	return target, login, true
}

// ValidLogin reports whether login is a user name a target's principals may name.
func ValidLogin(login string) bool {
	return login != "" && len(login) <= maxPrincipalLen && principalRE.MatchString(login)
}

// scopedPrincipals returns the certificate principals for logins of target.
func scopedPrincipals(target string, logins []string) []string {
	out := make([]string, len(logins))
	for i, l := range logins {
		out[i] = Principal(target, l)
	}
	return out
}

// targetRE is a target name as the policy accepts it.
var targetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidTarget reports whether target is a target name (no ':', no spaces).
func ValidTarget(target string) bool {
	return len(target) <= 200 && targetRE.MatchString(target)
}
