package ajar

import (
	"strings"
	"testing"
)

// TestCheckText checks what free text is refused at the edge: control
// characters, bidirectional controls and invalid UTF-8, in one-line and
// multi-line fields.
func TestCheckText(t *testing.T) {
	cases := []struct {
		s          string
		line, many bool // accepted by CheckText, by CheckLines
	}{
		{"deploy 1.2.3 | hotfix (OPS-7) <b>", true, true},
		{"über café 日本", true, true},
		{"", true, true},
		{"two\nlines", false, true},
		{"windows\r\nline", false, true},
		{"tab\there", false, true},
		{"overwrite\rline", false, false},
		{"ansi \x1b[31mred", false, false},
		{"nul \x00", false, false},
		{"del \x7f", false, false},
		{"c1 \u0085 \u009b", false, false},
		{"rlo \u202egnp.exe", false, false},
		{"lri \u2066x\u2069", false, false},
		{"lrm \u200e", false, false},
		{"alm \u061c", false, false},
		{"ls \u2028", false, false},
		{"bom \ufeff", false, false},
		{"bad utf-8 \xff", false, false},
		{strings.Repeat("a", 101), false, false},
	}
	for _, c := range cases {
		err := CheckText("reason", c.s, 100)
		if (err == nil) != c.line {
			t.Errorf("CheckText(%q) = %v, want accepted %v", c.s, err, c.line)
		}
		if err != nil && (ErrorCode(err) != EINVALID || ErrorField(err) != "reason") {
			t.Errorf("CheckText(%q) = %#v, want EINVALID on field reason", c.s, err)
		}
		err = CheckLines("reason", c.s, 100)
		if (err == nil) != c.many {
			t.Errorf("CheckLines(%q) = %v, want accepted %v", c.s, err, c.many)
		}
	}
}

func TestEscapeUnsafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain <b> text":       "plain <b> text",
		"esc \x1b[2J":          `esc \x1b[2J`,
		"rlo \u202eabc":        `rlo \u202eabc`,
		"line\nbreak\ttab":     `line\nbreak\ttab`,
		"bad \xff byte":        `bad \xff byte`,
		"c1 \u009b1m":          `c1 \u009b1m`,
		"ümlaut and 日本":        "ümlaut and 日本",
		"separator \u2028 end": `separator \u2028 end`,
	} {
		if got := EscapeUnsafe(in, false); got != want {
			t.Errorf("EscapeUnsafe(%q) = %q, want %q", in, got, want)
		}
	}
	if got := EscapeUnsafe("a\nb\x1b", true); got != "a\nb\\x1b" {
		t.Errorf("EscapeUnsafe keeping newlines = %q", got)
	}
}

func TestSameUser(t *testing.T) {
	if !SameUser("Alice@Example.com", "alice@example.com") || SameUser("alice@example.com", "alice@example.org") {
		t.Error("SameUser does not compare ids without case")
	}
	if CanonicalUserID("Alice@Example.COM") != "alice@example.com" {
		t.Error("CanonicalUserID is not lower case")
	}
}
