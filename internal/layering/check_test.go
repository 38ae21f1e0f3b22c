package layering

import (
	"slices"
	"testing"
)

// fake builds a package set from module-relative import edges; Deps is the
// transitive closure, as go list reports it.
func fake(edges map[string][]string) map[string]pkg {
	abs := func(n string) string {
		if n == "." {
			return module
		}
		return module + "/" + n
	}
	pkgs := map[string]pkg{}
	for from, tos := range edges {
		p := pkg{ImportPath: abs(from)}
		for _, to := range tos {
			p.Imports = append(p.Imports, abs(to))
		}
		pkgs[from] = p
	}
	for from, p := range pkgs {
		seen := map[string]bool{}
		stack := slices.Clone(edges[from])
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[n] {
				continue
			}
			seen[n] = true
			p.Deps = append(p.Deps, abs(n))
			stack = append(stack, edges[n]...)
		}
		p.Deps = append(p.Deps, "context") // outside the module: ignored
		pkgs[from] = p
	}
	return pkgs
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{".", ".", true},
		{".", "broker", false},
		{"broker", "broker", true},
		{"broker", "broker/x", false},
		{"broker/...", "broker", true},
		{"broker/...", "broker/x/y", true},
		{"broker/...", "brokerx", false},
		{"store/sqlite/...", "store/sqlitex", false},
		{"...", ".", true},
		{"...", "a/b", true},
	} {
		if got := match(c.pattern, c.name); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// TestCheckFindsBreaches proves the checker reports each kind of breach: a
// direct upward import, one through an intermediate package, an import
// outside an Only list, and that Direct rules ignore indirect ones.
func TestCheckFindsBreaches(t *testing.T) {
	pkgs := fake(map[string][]string{
		".":                {"internal/jsonenc"}, // a leaf: allowed everywhere
		"internal/jsonenc": nil,
		"broker":           {"."},
		"api":              {"readmodel", "."}, // broker only through readmodel: fine (Direct)
		"readmodel":        {"broker", "."},
		"store/sqlite":     {"helper"}, // reaches broker through helper
		"helper":           {"broker"},
		"provider/awssg":   {"broker", "."},       // direct
		"audit":            {".", "store/sqlite"}, // outside Only
		"node":             {"api", "."},          // broker only through api: fine (Direct)
		"policy":           {"."},
	})
	got := map[[2]string][]string{}
	for _, b := range check(pkgs, rules) {
		got[[2]string{b.from, b.to}] = b.path
	}
	for key, path := range map[[2]string][]string{
		{"store/sqlite", "broker"}:   {"store/sqlite", "helper", "broker"},
		{"provider/awssg", "broker"}: {"provider/awssg", "broker"},
		{"audit", "store/sqlite"}:    {"audit", "store/sqlite"},
		{"audit", "helper"}:          {"audit", "store/sqlite", "helper"},
		{"audit", "broker"}:          {"audit", "store/sqlite", "helper", "broker"},
	} {
		if !slices.Equal(got[key], path) {
			t.Errorf("breach %s -> %s: path %v, want %v", key[0], key[1], got[key], path)
		}
		delete(got, key)
	}
	for key := range got {
		t.Errorf("unexpected breach %s -> %s", key[0], key[1])
	}
	// A leaf that imports a project package is no longer one.
	leaf := fake(map[string][]string{".": {"internal/jsonenc"}, "internal/jsonenc": {"policy"}, "policy": nil})
	var found []string
	for _, b := range check(leaf, rules) {
		found = append(found, b.from+" -> "+b.to)
	}
	if !slices.Contains(found, "internal/jsonenc -> policy") {
		t.Errorf("a leaf importing policy: breaches %q, want internal/jsonenc -> policy", found)
	}
}
