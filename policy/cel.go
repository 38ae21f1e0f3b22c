package policy

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// Vars are the values a Condition is evaluated with.
type Vars struct {
	Request   RequestVars
	Requester RequesterVars
	Now       time.Time
}

// RequestVars is the variable "request" in a condition. Its fields have the CEL
// names in their tags: request.duration is a CEL duration, request.start a
// timestamp, request.params a map(string, string).
type RequestVars struct {
	Target   string            `cel:"target"`
	Duration time.Duration     `cel:"duration"`
	Reason   string            `cel:"reason"`
	Ticket   string            `cel:"ticket"`
	Params   map[string]string `cel:"params"`
	// Start is when the access would begin: the requested start, or the time of
	// the request when none was given. For an extension, when the window began.
	Start time.Time `cel:"start"`
	// End is when the access would end: Start + Duration.
	End time.Time `cel:"end"`
	// Kind is what is being asked for: "access" (a request), "breakglass", or
	// "extension" (then Duration is the whole window once extended).
	Kind string `cel:"kind"`
}

// RequesterVars is the variable "requester" in a condition.
type RequesterVars struct {
	ID     string   `cel:"id"`
	Groups []string `cel:"groups"`
}

// costLimit bounds the work one evaluation may do. Conditions are written by the
// operator, so this guards against mistakes (a comprehension over a huge list),
// not attacks; hitting it fails closed like any other evaluation error.
const costLimit = 100_000

// celEnv is the one CEL environment every condition is compiled in. A cel.Env is
// immutable and safe for concurrent use.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		nativeTypes(reflect.TypeFor[RequestVars](), reflect.TypeFor[RequesterVars](), types.ParseStructTags(true)),
		cel.Variable("request", cel.ObjectType(celTypeName(reflect.TypeFor[RequestVars]()))),
		cel.Variable("requester", cel.ObjectType(celTypeName(reflect.TypeFor[RequesterVars]()))),
		cel.Variable("now", cel.TimestampType),
	)
})

// nativeTypes exposes Go structs to CEL. It is what cel-go's ext.NativeTypes does,
// without the ext package's other dependencies (golang.org/x/text).
func nativeTypes(args ...any) cel.EnvOption {
	return func(env *cel.Env) (*cel.Env, error) {
		p, a, err := types.ComposeTypes(env.CELTypeProvider(), env.CELTypeAdapter(), args...)
		if err != nil {
			return nil, err
		}
		env, err = cel.CustomTypeAdapter(a)(env)
		if err != nil {
			return nil, err
		}
		return cel.CustomTypeProvider(p)(env)
	}
}

// celTypeName is the name cel-go gives a Go struct: its package's last path
// element and its type name.
func celTypeName(t reflect.Type) string { return path.Base(t.PkgPath()) + "." + t.Name() }

// Condition is a compiled CEL expression that yields a bool, such as a rule's
// auto_approve. It is safe for concurrent use.
//
// The expression can use:
//
//	request.target    string
//	request.duration  duration   e.g. request.duration <= duration("10m")
//	request.reason    string
//	request.ticket    string
//	request.params    map(string, string)
//	request.start     timestamp  when the access would begin
//	request.end       timestamp  when it would end (start + duration)
//	request.kind      string   "access", "breakglass" or "extension"
//	requester.id      string
//	requester.groups  list(string)   e.g. "oncall" in requester.groups
//	now               timestamp  the start of the window for a request (its
//	                             requested start, if any); the time of asking
//	                             for an extension; the real time when the
//	                             broker checks again as the grant comes due
//
// and CEL's standard functions.
type Condition struct {
	src string
	prg cel.Program
}

// NewCondition compiles and type-checks src. The error names each problem with
// its line and column in src, and says so when src is not a bool expression.
func NewCondition(src string) (*Condition, error) {
	c, issues, err := compileCondition(src)
	if err != nil {
		return nil, err
	}
	if len(issues) > 0 {
		msgs := make([]string, 0, len(issues))
		for _, e := range issues {
			if e.line == 0 {
				msgs = append(msgs, e.msg)
				continue
			}
			msgs = append(msgs, fmt.Sprintf("line %d, column %d: %s", e.line, e.col, e.msg))
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return c, nil
}

// celIssue is one problem with an expression, at its line and column (both
// 1-based) in the expression's text; line 0 for a problem with the whole
// expression (its type).
type celIssue struct {
	line, col int
	msg       string
}

// compileCondition compiles src and returns the problems a user can fix as
// issues; err is for failures that are not the expression's fault.
func compileCondition(src string) (*Condition, []celIssue, error) {
	env, err := celEnv()
	if err != nil {
		return nil, nil, fmt.Errorf("CEL environment: %w", err) // a bug, not the user's
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		out := make([]celIssue, 0, len(iss.Errors()))
		for _, e := range iss.Errors() {
			out = append(out, celIssue{line: e.Location.Line(), col: e.Location.Column() + 1, msg: e.Message})
		}
		return nil, out, nil
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, []celIssue{{msg: fmt.Sprintf("must be true or false, but this expression gives a %s", ast.OutputType())}}, nil
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, nil, err
	}
	return &Condition{src: src, prg: prg}, nil, nil
}

// String returns the source text, for explanations.
func (c *Condition) String() string { return c.src }

// Eval evaluates the condition. Any error (a missing map key, an overflow, the
// cost limit) gives false and the error: a condition that cannot be evaluated
// never grants anything.
func (c *Condition) Eval(v Vars) (bool, error) {
	if v.Request.Params == nil {
		v.Request.Params = map[string]string{}
	}
	if v.Requester.Groups == nil {
		v.Requester.Groups = []string{}
	}
	if v.Request.Kind == "" {
		v.Request.Kind = KindAccess
	}
	out, _, err := c.prg.Eval(map[string]any{
		"request":   v.Request,
		"requester": v.Requester,
		"now":       v.Now,
	})
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", c.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("evaluate %q: got %s, not a bool", c.src, out.Type())
	}
	return b, nil
}
