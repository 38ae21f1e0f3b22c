// Package provider lists every provider ajar has, in one explicit map (no init()
// registration), so the composition root and the config checker see the same set.
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider/sshcert"
)

// Deps are the shared services providers are built with. A provider that needs a
// dependency that is nil fails in New.
type Deps struct {
	SSHCA *sshcert.CA
}

// Kind is one provider type.
type Kind struct {
	// Check returns every problem with a target's config, with field paths
	// relative to the config. It needs no Deps, so config files can be checked
	// without starting anything.
	Check func(config json.RawMessage) ajar.Problems
	// New builds the provider for one target. It fails if Check finds problems.
	New func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error)
}

// Kinds maps the provider name used in the policy file to its Kind.
var Kinds = map[string]Kind{
	sshcert.Name: {
		Check: sshcert.CheckConfig,
		New: func(target string, config json.RawMessage, deps Deps) (ajar.Provider, error) {
			if deps.SSHCA == nil {
				return nil, errors.New("ssh-cert provider needs Deps.SSHCA")
			}
			p, err := sshcert.New(target, config, deps.SSHCA)
			if err != nil {
				return nil, err // not p: a nil *Provider in an interface is not nil
			}
			return p, nil
		},
	},
}

// CheckTarget checks a target's provider name and config (the signature of
// policy.CheckTarget). An unknown provider is one Problem with an empty Field (the
// caller adds its path) naming the known providers.
func CheckTarget(provider string, config json.RawMessage) ajar.Problems {
	k, ok := Kinds[provider]
	if !ok {
		return ajar.Problems{{
			Message: fmt.Sprintf("unknown provider %q (known: %s)", provider, strings.Join(names(), ", ")),
		}}
	}
	return k.Check(config)
}

// names returns the known provider names, sorted.
func names() []string {
	out := make([]string, 0, len(Kinds))
	for n := range Kinds {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
