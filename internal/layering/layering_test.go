package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the project's module path; rules name packages relative to it.
const module = "github.com/ajar-dev/ajar"

// A rule constrains what the packages matching From may import. Patterns are
// relative to the module: "." is the root package ajar, "x" is exactly x and
// "x/..." is x and everything below it.
//
// A rule is checked against every package the importer depends on, directly
// or not (go list's Deps), unless Direct is set: then only against its own
// import declarations.
type rule struct {
	From   []string
	Except []string // packages matching From that the rule does not apply to
	Only   []string // if non-nil: the only project packages From may import
	Never  []string // project packages From must not import
	Direct bool
	Why    string
}

// rules is the Layers section of docs/architecture.md as a table. Keep the two
// in step.
var rules = []rule{
	{
		From: []string{"."},
		Only: []string{},
		Why:  "the root package holds the domain types and contracts: it imports no project package but the leaves",
	},
	{
		From: leaves,
		Only: []string{},
		Why:  "a leaf imports no project package, so any package may use it",
	},
	{
		From:  []string{"store/...", "provider/..."},
		Never: []string{"broker/...", "readmodel/...", "reconcile/...", "sshaccess/...", "credentials/...", "events/...", "api/...", "web/...", "cmd/...", "node/..."},
		Why:   "stores and providers implement the root contracts; they know nothing of the core or its callers",
	},
	{
		From:  []string{"node/..."},
		Never: []string{"broker/...", "web/...", "cmd/...", "store/...", "sshhost"},
		// node imports api's client, and package api also holds the server
		// that imports broker: only node's own imports are checked.
		Direct: true,
		Why:    "the host agent talks to the server only through api's client and wire types",
	},
	{
		From:   []string{"sshhost/..."},
		Except: []string{"sshhost/wire"},
		Never: []string{
			"api/...", "web/...", "cmd/...", "node/...",
			"store/sqlite/...", "store/postgres/...", "store/internal/...",
			"provider/...",
		},
		Why: "the host-agent protocol sits beside the core and works on the ajar.Store and ajar.Provider contracts",
	},
	{
		From: []string{"sshhost/wire"},
		Only: []string{},
		Why:  "the host-agent messages import no project package, so the agent links nothing of the server through them",
	},
	{
		From:  []string{"notify/..."},
		Never: []string{"policy/...", "broker/..."},
		Why:   "notification sinks and their delivery (notify/outbox) are below the policy and the core",
	},
	{
		From:  []string{"policy/..."},
		Never: []string{"broker/...", "readmodel/...", "reconcile/...", "sshaccess/...", "credentials/...", "events/...", "api/...", "web/...", "cmd/...", "store/...", "provider/...", "node/..."},
		Why:   "the policy depends only on the domain types",
	},
	{
		From: []string{"audit/..."},
		Only: []string{"."},
		Why:  "the audit chain depends only on the domain types",
	},
	{
		From:  []string{"api/...", "web/..."},
		Never: []string{"store/...", "provider/..."},
		Why:   "the HTTP layers call the broker, never a store or a provider directly",
	},
	{
		From:  []string{"api/..."},
		Never: []string{"broker/..."},
		// api imports readmodel, which imports broker: only api's own
		// imports are checked.
		Direct: true,
		Why:    "the API serves the core through its Core interfaces and speaks the root's wire types (wire.go); its client, which the CLI and node link, names nothing of broker",
	},
	{
		From: []string{"readmodel/..."},
		Never: []string{
			"api/...", "web/...", "cmd/...", "node/...", "sshhost/...",
			"store/sqlite/...", "store/postgres/...", "store/internal/...",
			"provider/...",
		},
		Why: "the read model sits above the core, beside the HTTP layers that render it; it reads through broker and the ajar.Store contract",
	},
	{
		From: []string{"metrics/..."},
		Only: []string{"."},
		Why:  "the metrics registry and its store gauges depend only on the ajar.Store contract; the packages that count register in it",
	},
	{
		From: []string{"events/..."},
		Only: []string{".", "policy/...", "notify"},
		Why:  "what notifications read is built below the core, which writes them to the outbox; it needs only the domain types, the policy's event names and notify",
	},
	{
		From: []string{"sshaccess/...", "credentials/..."},
		Never: []string{
			"readmodel/...", "reconcile/...", "sshhost/...", "api/...", "web/...", "cmd/...", "node/...",
			"store/sqlite/...", "store/postgres/...", "store/internal/...",
			"provider/...",
		},
		Why: "ajar ssh's one round trip and cloud credentials use the core's operations from above it, on the ajar.Store and ajar.Provider contracts",
	},
	{
		From: []string{"reconcile/..."},
		Never: []string{
			"readmodel/...", "sshhost/...", "api/...", "web/...", "cmd/...", "node/...",
			"store/sqlite/...", "store/postgres/...", "store/internal/...",
			"provider/...",
		},
		Why: "the drift check and the orphan report sit above the core and work on the ajar.Store and ajar.Provider contracts",
	},
	{
		From: []string{"broker/..."},
		Never: []string{
			"readmodel/...", "reconcile/...", "sshaccess/...", "credentials/...", "sshhost/...", "api/...", "web/...", "cmd/...", "node/...",
			"store/sqlite/...", "store/postgres/...", "store/internal/...",
			"provider/...",
		},
		Why: "the core works on the ajar.Store and ajar.Provider contracts; cmd/ajar wires the concrete ones in",
	},
	{
		From: []string{"identity/oidc/..."},
		Only: []string{".", "policy"},
		Why:  "the OIDC client knows the identity provider and the domain types; sessions, the store and HTTP call it, never the reverse",
	},
	{
		From: []string{"identity/..."},
		Never: []string{
			"broker/...", "readmodel/...", "sshhost/...", "api/...", "web/...", "cmd/...", "node/...",
			"store/sqlite/...", "store/postgres/...", "store/internal/...", "provider/...",
		},
		Why: "identity sits beside the core: it works on the ajar.Store contract and the policy; api, web and cmd/ajar call it",
	},
	{
		From:  []string{"broker/..."},
		Never: []string{"identity/..."},
		Why:   "the core asks who a user is through broker.Config.Users, a function cmd/ajar wires to identity",
	},
	{
		From:   []string{"..."},
		Except: testHelpers,
		Never:  testHelpers,
		Why:    "test helpers are imported by tests only",
	},
}

// leaves are helpers that import no project package (a rule checks it):
// every package may import them, the root included, whatever its Only list
// says.
var leaves = []string{"internal/jsonenc"}

// testHelpers are the packages only tests import.
var testHelpers = []string{"store/storetest/...", "store/postgres/pgtest/...", "provider/providertest/...", "internal/mototest/...", "internal/sshtest/...", "internal/oidctest/...", "internal/dbtest/..."}

// allowed lists today's known breaches of the rules, each as importer and
// imported package (relative to the module). Every entry is a debt with a
// reason; the test fails when an entry is no longer needed, so delete it then.
var allowed = map[[2]string]string{
	// audit loads its checkpoint signing key with keys.LoadOrCreate. keys is
	// itself a leaf (it imports only the root package), so this is not an
	// upward import, but the rule says audit imports only root: either pass
	// the key in from cmd/ajar or widen the rule in docs/architecture.md.
	{"audit", "keys"}: "audit loads its checkpoint key through keys",
}

// pkg is what the test needs of `go list -json`.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// rel turns an import path into a module-relative name ("." for the root);
// ok is false outside the module.
func rel(path string) (name string, ok bool) {
	if path == module {
		return ".", true
	}
	name, ok = strings.CutPrefix(path, module+"/")
	return name, ok
}

// match reports whether the module-relative name matches pattern.
func match(pattern, name string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return name == base || strings.HasPrefix(name, base+"/")
	}
	return name == pattern
}

func matchAny(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, name) })
}

// breach is one package importing what a rule forbids.
type breach struct {
	from, to string
	path     []string // from ... to, along import declarations
	why      string
}

func (b breach) String() string {
	return fmt.Sprintf("%s imports %s (%s): %s", b.from, b.to, strings.Join(b.path, " -> "), b.why)
}

// check applies rules to pkgs (the project's packages, by module-relative
// name) and returns every breach.
func check(pkgs map[string]pkg, rules []rule) []breach {
	var out []breach
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, from := range names {
		p := pkgs[from]
		for _, r := range rules {
			if !matchAny(r.From, from) || matchAny(r.Except, from) {
				continue
			}
			deps := p.Deps
			if r.Direct {
				deps = p.Imports
			}
			for _, d := range deps {
				to, ok := rel(d)
				if !ok || to == from {
					continue
				}
				if (r.Only != nil && !matchAny(r.Only, to) && !matchAny(leaves, to)) || matchAny(r.Never, to) {
					out = append(out, breach{from: from, to: to, path: importPath(pkgs, from, to), why: r.Why})
				}
			}
		}
	}
	return out
}

// importPath finds a shortest chain of import declarations from one project
// package to another, for the error message.
func importPath(pkgs map[string]pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for n := to; n != ""; n = prev[n] {
				path = append(path, n)
			}
			slices.Reverse(path)
			return path
		}
		for _, imp := range pkgs[cur].Imports {
			n, ok := rel(imp)
			if _, seen := prev[n]; ok && !seen {
				prev[n] = cur
				queue = append(queue, n)
			}
		}
	}
	return []string{from, "?", to}
}

// list runs `go list -json` over the whole module.
func list(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		name, ok := rel(p.ImportPath)
		if !ok {
			t.Fatalf("go list returned %s, outside %s", p.ImportPath, module)
		}
		pkgs[name] = p
	}
	// Fail closed: a listing that misses the core would pass vacuously.
	for _, must := range []string{".", "broker", "api", "web", "node", "notify", "policy", "audit", "readmodel", "store/sqlite", "provider/sshcert", "cmd/ajar", "sshhost", "sshhost/wire"} {
		if _, ok := pkgs[must]; !ok {
			t.Fatalf("go list did not return package %q; got %d packages", must, len(pkgs))
		}
	}
	return pkgs
}

// TestLayering fails when a package imports one a layer above it, as
// docs/architecture.md (Layers) describes; known breaches are in allowed.
func TestLayering(t *testing.T) {
	pkgs := list(t)
	used := map[[2]string]bool{}
	for _, b := range check(pkgs, rules) {
		key := [2]string{b.from, b.to}
		if _, ok := allowed[key]; ok {
			used[key] = true
			continue
		}
		t.Errorf("layering: %s", b)
	}
	for key, why := range allowed {
		if !used[key] {
			t.Errorf("layering: allowed breach %s -> %s (%s) no longer occurs: delete it from allowed", key[0], key[1], why)
		}
	}
}
