package ajar

import (
	"slices"
	"strings"
	"time"
)

// User is an authenticated identity: a user id (email-like) and its groups.
type User struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
	// Session is the id of the session or token u was authenticated with ("" when
	// u did not come from Authenticate).
	Session string `json:"-"`
	// MFAAt is the last MFA step-up in that session (zero: never).
	MFAAt time.Time `json:"-"`
	// SessionKind is that session's kind (SessionWeb, SessionCLI, SessionToken).
	SessionKind string `json:"-"`
}

// InGroup reports whether u is a member of group.
func (u User) InGroup(group string) bool { return slices.Contains(u.Groups, group) }

// Matches reports whether u is named by a subject: a user id (compared
// without case, see SameUser), or "group:NAME".
func (u User) Matches(subject string) bool {
	if g, ok := strings.CutPrefix(subject, "group:"); ok {
		return u.InGroup(g)
	}
	return SameUser(subject, u.ID)
}

// MatchesAny reports whether any subject names u.
func (u User) MatchesAny(subjects []string) bool {
	return slices.ContainsFunc(subjects, u.Matches)
}

// Problem is one thing wrong with a config file or an input, with its field path
// (for example "policies[0].approval.steps[1].count").
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problems is every problem found at once; it is an error so validation can return
// all of them together.
type Problems []Problem

func (p Problems) Error() string {
	var b strings.Builder
	for i, pr := range p {
		if i > 0 {
			b.WriteString("\n")
		}
		if pr.Field != "" {
			b.WriteString(pr.Field)
			b.WriteString(": ")
		}
		b.WriteString(pr.Message)
	}
	return b.String()
}

// Sealer encrypts small secrets (private keys) at rest with the master key. The name
// is bound to the ciphertext, so a sealed value cannot be moved to another name.
type Sealer interface {
	Seal(name string, plaintext []byte) ([]byte, error)
	Open(name string, sealed []byte) ([]byte, error)
}
