package policy

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Kinds of request, the value of request.kind in a condition.
const (
	KindAccess     = "access"     // a request for access
	KindBreakglass = "breakglass" // break-glass: no approval
	KindExtension  = "extension"  // an extension of granted access
)

// Expr is a CEL expression as written in the policy file, with where it was
// written, so that a problem in it is reported at its line and column in the
// file rather than in the expression.
type Expr struct {
	Src string
	// Where the YAML value starts (1-based) and how it is quoted.
	line, col int
	style     yaml.Style
}

// String returns the expression's text.
func (e Expr) String() string { return e.Src }

// Empty reports whether no expression was written.
func (e Expr) Empty() bool { return strings.TrimSpace(e.Src) == "" }

// UnmarshalYAML reads any scalar as the expression's text ("true" is a valid
// expression); anything else is a *yaml.TypeError, so decoding goes on and
// every problem is found.
func (e *Expr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a CEL expression (text), not %s", n.Line, describeNode(n))}}
	}
	*e = Expr{Src: n.Value, line: n.Line, col: n.Column, style: n.Style}
	return nil
}

// MarshalYAML writes the expression's text.
func (e Expr) MarshalYAML() (any, error) { return e.Src, nil }

// compileExpr compiles e and, for each problem, returns a message that starts
// with its position in the file: "line 12, column 31: ..." when that position
// is exact (an expression on one line, or a literal block), and otherwise the
// line of the value and the position inside the expression.
func compileExpr(e Expr, src []string) (*Condition, []string, error) {
	c, issues, err := compileCondition(e.Src)
	if err != nil || len(issues) == 0 {
		return c, nil, err
	}
	msgs := make([]string, 0, len(issues))
	for _, is := range issues {
		msgs = append(msgs, e.position(is, src)+is.msg)
	}
	return nil, msgs, nil
}

// position renders where issue is in the file.
func (e Expr) position(is celIssue, src []string) string {
	if e.line == 0 { // not from a file (built in Go)
		if is.line == 0 {
			return ""
		}
		return fmt.Sprintf("line %d, column %d of the expression: ", is.line, is.col)
	}
	if is.line == 0 {
		return fmt.Sprintf("line %d, column %d: ", e.line, e.col)
	}
	oneLine := !strings.Contains(e.Src, "\n")
	switch {
	case oneLine && e.style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0:
		col := e.col + is.col - 1
		if e.style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
			col++ // the opening quote
		}
		return fmt.Sprintf("line %d, column %d: ", e.line, col)
	case e.style&yaml.LiteralStyle != 0:
		// The expression's line N is the file's line after the "|" plus N;
		// its columns start after the block's indentation.
		fl := e.line + is.line
		if ind, ok := blockIndent(src, e.line); ok && fl-1 < len(src) {
			return fmt.Sprintf("line %d, column %d: ", fl, ind+is.col)
		}
	}
	return fmt.Sprintf("line %d (line %d, column %d of the expression): ", e.line, is.line, is.col)
}

// blockIndent returns the indentation of the first non-blank line after the
// block scalar indicator on line (1-based).
func blockIndent(src []string, line int) (int, bool) {
	for i := line; i < len(src); i++ {
		l := src[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		return len(l) - len(strings.TrimLeft(l, " ")), true
	}
	return 0, false
}
