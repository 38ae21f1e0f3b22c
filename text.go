package ajar

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Free text from people (reasons, tickets, comments) is shown to other people
// in terminals, Slack, Markdown evidence and web pages. It is checked at the
// edge by CheckText and CheckLines, and every renderer still escapes it for its
// medium, because the store may hold text written before these checks (see
// docs/security.md, "Free text").

// CheckText checks a one-line free-text field: at most max bytes of valid
// UTF-8 with no control characters (C0, DEL, C1, so no tab or line break) and
// no Unicode bidirectional controls, which can make text read differently
// from what it says. The error is EINVALID naming field.
func CheckText(field, s string, max int) error {
	return checkText(field, s, max, false)
}

// CheckLines is CheckText for multi-line fields (reasons and comments, typed
// in a textarea): line feeds, CR LF pairs and tabs are allowed too; a lone
// carriage return, which can overwrite a line on a terminal, is not.
func CheckLines(field, s string, max int) error {
	return checkText(field, s, max, true)
}

func checkText(field, s string, max int, lines bool) error {
	if len(s) > max {
		return FieldErrorf(field, "longer than %d characters", max)
	}
	if !utf8.ValidString(s) {
		return FieldErrorf(field, "is not valid UTF-8")
	}
	for i, r := range s {
		switch {
		case lines && (r == '\n' || r == '\t'):
		case lines && r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
		case UnsafeRune(r):
			return FieldErrorf(field, "contains the control character %s at byte %d; use plain text", runeName(r), i)
		}
	}
	return nil
}

// UnsafeRune reports whether r must never reach a reader unescaped: a C0 or C1
// control character (tab and line feed included), DEL, a Unicode bidirectional
// control (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), a line or
// paragraph separator (U+2028, U+2029), or the byte-order mark U+FEFF.
func UnsafeRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028, r == 0x2029, r == 0xfeff:
		return true
	}
	return false
}

// EscapeUnsafe replaces every UnsafeRune in s (line feeds too, unless
// keepNewlines) and every invalid UTF-8 byte with a visible Go-style escape
// such as \x1b or \u202e, so stored text is shown for what it is.
func EscapeUnsafe(s string, keepNewlines bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
		case keepNewlines && r == '\n':
			b.WriteByte('\n')
		case UnsafeRune(r):
			b.WriteString(runeName(r))
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// runeName is r as a Go escape: \x1b, \u202e.
func runeName(r rune) string {
	q := strconv.QuoteRuneToASCII(r)
	return q[1 : len(q)-1]
}

// CanonicalUserID is the form in which user ids are stored and compared:
// lower case, so that Alice@Example.com and alice@example.com are one person
// (email addresses are case-insensitive in practice).
func CanonicalUserID(id string) string { return strings.ToLower(id) }

// SameUser reports whether two user ids name the same person. Every
// comparison of user ids (requester against approver, and so on) uses it, so
// ids stored before canonicalisation still compare right.
func SameUser(a, b string) bool { return CanonicalUserID(a) == CanonicalUserID(b) }

// FormatDuration prints a duration the way users type it: "30m", "2h",
// "1h30m" rather than "30m0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}
