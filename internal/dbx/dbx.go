// Package dbx holds what the database providers (postgres-role, mysql-user)
// share: the login name rule, random passwords and the env-var check of
// admin_dsn_env. It imports no driver.
package dbx

import (
	"crypto/rand"
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/ajar-dev/ajar"
)

// Prefix starts the name of every login ajar creates. Together with the
// providers' ownership marks (a role comment, a marker table) it keeps ajar
// away from logins a person made.
const Prefix = "ajar_"

// requestIDRE is what a request id looks like once lower-cased; anything else
// never reaches SQL, even quoted.
var requestIDRE = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// DefaultTemplate names a request's login after the request alone.
const DefaultTemplate = Prefix + "{request}"

var (
	templateRE = regexp.MustCompile(`^ajar_([a-z0-9_]|\{request\}|\{local\})*$`)
	notName    = regexp.MustCompile(`[^a-z0-9_]+`)
)

// CheckTemplate returns what is wrong with a login name template, or "": it
// must start with "ajar_", contain {request} (one login per request, and the
// mark ajar knows its own logins by) and otherwise only a-z, 0-9, _ and
// {local} (the requester's id before "@", lower-cased, other characters as _,
// at most 16 of them).
func CheckTemplate(t string) string {
	switch {
	case !strings.HasPrefix(t, Prefix):
		return "must start with " + Prefix
	case !strings.Contains(t, "{request}"):
		return "must contain {request}"
	case !templateRE.MatchString(t):
		return "may hold only a-z, 0-9, _, {request} and {local}"
	}
	return ""
}

// LoginNameFor returns the login name of a request under template (checked
// with CheckTemplate), or an EINVALID error when the request id cannot be one
// or the name would be longer than maxLen.
func LoginNameFor(template, requestID, requester string, maxLen int) (string, error) {
	id := strings.ToLower(requestID)
	if !requestIDRE.MatchString(id) {
		return "", ajar.FieldErrorf("request_id", "%q cannot name a database login (want up to 40 of a-z, 0-9 and _)", requestID)
	}
	local, _, _ := strings.Cut(strings.ToLower(requester), "@")
	local = notName.ReplaceAllString(local, "_")
	if len(local) > 16 {
		local = local[:16]
	}
	local = strings.Trim(local, "_")
	name := strings.NewReplacer("{request}", id, "{local}", local).Replace(template)
	if len(name) > maxLen {
		return "", ajar.Errorf(ajar.EINVALID, "login name %s is longer than the %d characters the server allows", name, maxLen)
	}
	return name, nil
}

// Password returns a new random password: 32 bytes from crypto/rand, URL-safe
// base64 without padding (43 characters, nothing a shell or a DSN must escape).
func Password() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidEnvName reports whether s can name an environment variable.
func ValidEnvName(s string) bool { return envNameRE.MatchString(s) }

// identRE is a conservative SQL identifier for config values (database,
// role and user names): ajar quotes them anyway, this keeps typos and tricks out
// of the config.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$-]{0,62}$`)

// ValidIdent reports whether s is an identifier a database config may name.
func ValidIdent(s string) bool { return identRE.MatchString(s) }
