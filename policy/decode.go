package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ajar-dev/ajar"
)

// maxNodes bounds the work done walking a file, so aliases that expand
// exponentially ("billion laughs") cannot stall start-up.
const maxNodes = 1_000_000

// decode reads the policy file into a Config. Structural problems (YAML syntax,
// unknown fields, wrong kinds of value, bad durations) come back with their field
// paths; the Config is only meaningful when there are none.
//
// yaml.v3 reports unknown fields and type errors only as text with a line number.
// Rather than parse that text for a field path, decode walks the node tree against
// the Config type itself; the yaml.v3 decoder, strict with KnownFields, then does
// the actual decoding and is the backstop should the walk ever miss something.
func decode(data []byte) (*Config, ajar.Problems) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ajar.Problems{{Message: "the policy file is empty"}}
		}
		return nil, ajar.Problems{{Message: err.Error()}}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, ajar.Problems{{Message: err.Error()}}
	default:
		return nil, ajar.Problems{{Message: fmt.Sprintf("line %d: a second YAML document; the policy file must hold exactly one", next.Line)}}
	}

	w := walker{}
	w.walk(&root, reflect.TypeFor[Config](), "")
	if len(w.problems) > 0 {
		return nil, w.problems
	}

	var cfg Config
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, ajar.Problems{{Message: err.Error()}}
	}
	cfg.src = strings.Split(string(data), "\n")
	return &cfg, nil
}

var (
	durationType = reflect.TypeFor[Duration]()
	exprType     = reflect.TypeFor[Expr]()
)

// walker checks a YAML node tree against a Go type, the way yaml.v3 decodes it
// with KnownFields, and records each mismatch with its field path.
type walker struct {
	problems ajar.Problems
	nodes    int
}

func (w *walker) add(path string, n *yaml.Node, format string, args ...any) {
	w.problems = append(w.problems, ajar.Problem{
		Field:   path,
		Message: fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...),
	})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	w.nodes++
	if w.nodes == maxNodes {
		w.add(path, n, "the file is too large or expands too many aliases")
	}
	if w.nodes >= maxNodes {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			w.walk(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		w.walk(n.Alias, t, path)
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value is the zero value, as in yaml.v3
	}
	if t == durationType {
		if _, err := parseDurationNode(n); err != nil {
			w.add(path, n, "%v", err)
		}
		return
	}
	if t == exprType {
		if n.Kind != yaml.ScalarNode {
			w.add(path, n, "must be a CEL expression (text), not %s", describeNode(n))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path)
	case reflect.Interface:
		w.raw(n, path)
	case reflect.Struct:
		w.structure(n, t, path)
	case reflect.Map:
		w.mapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(path, n, "must be a list, not %s", describeNode(n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			w.add(path, n, "must be %s, not %s", describeKind(t), describeNode(n))
		}
	}
}

// raw checks data kept as any (target config, notifications): any value will
// do, as long as mapping keys are scalars that can become JSON keys.
func (w *walker) raw(n *yaml.Node, path string) {
	w.nodes++
	if w.nodes >= maxNodes {
		return
	}
	switch n.Kind {
	case yaml.AliasNode:
		w.raw(n.Alias, path)
	case yaml.SequenceNode:
		for i, item := range n.Content {
			w.raw(item, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i]
			for key.Kind == yaml.AliasNode {
				key = key.Alias
			}
			if key.Kind != yaml.ScalarNode {
				w.add(path, key, "keys must be plain names, not %s", describeNode(key))
				continue
			}
			w.raw(n.Content[i+1], joinPath(path, key.Value))
		}
	}
}

// structure checks a mapping decoded into a struct: every key must be a field.
func (w *walker) structure(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.add(path, n, "must be a mapping (key: value), not %s", describeNode(n))
		return
	}
	fields := map[string]reflect.Type{}
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	w.pairs(n, path, func(key *yaml.Node, child string) (reflect.Type, bool) {
		ft, ok := fields[key.Value]
		if !ok {
			w.add(child, key, "unknown field; the fields here are %s", strings.Join(names, ", "))
		}
		return ft, ok
	}, t)
}

// mapping checks a mapping decoded into a map[string]T.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.add(path, n, "must be a mapping (key: value), not %s", describeNode(n))
		return
	}
	w.pairs(n, path, func(key *yaml.Node, child string) (reflect.Type, bool) {
		if key.Kind != yaml.ScalarNode {
			w.add(path, key, "keys must be plain names, not %s", describeNode(key))
			return nil, false
		}
		return t.Elem(), true
	}, t)
}

// pairs walks the key/value pairs of a mapping node, reporting keys given twice
// and following merge keys ("<<: *anchor") into the same type.
func (w *walker) pairs(n *yaml.Node, path string, field func(key *yaml.Node, child string) (reflect.Type, bool), self reflect.Type) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Kind == yaml.ScalarNode && key.Tag == "!!merge" {
			if val.Kind == yaml.SequenceNode {
				for _, m := range val.Content {
					w.walk(m, self, path)
				}
			} else {
				w.walk(val, self, path)
			}
			continue
		}
		if key.Kind == yaml.ScalarNode && (key.Tag == "!!null" || key.Value == "") {
			w.add(path, key, "a key is empty")
			continue
		}
		child := joinPath(path, key.Value)
		if line, dup := seen[key.Value]; dup {
			w.add(child, key, "given twice (first on line %d)", line)
			continue
		}
		seen[key.Value] = key.Line
		if t, ok := field(key, child); ok {
			w.walk(val, t, child)
		}
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// describeNode names a YAML value for a message.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return describeNode(n.Alias)
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	return fmt.Sprintf("%q", v)
}

// describeKind names what a Go scalar type accepts, in the file's terms.
func describeKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}
