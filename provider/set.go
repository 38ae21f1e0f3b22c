package provider

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/ajar-dev/ajar"
)

// Target is what the set needs to know of a configured target.
type Target struct {
	Provider string
	Config   json.RawMessage
}

// Set holds the providers of the configured targets and rebuilds providers from
// saved handles, so a revocation uses the config the grant was made with.
type Set struct {
	deps     Deps
	targets  map[string]Target
	byTarget map[string]ajar.Provider

	mu      sync.Mutex
	rebuilt map[string]ajar.Provider // by kind + target + config, for handles
}

// NewSet builds every target's provider at once, so a bad config stops start-up.
func NewSet(targets map[string]Target, deps Deps) (*Set, error) {
	s := &Set{deps: deps, targets: targets, byTarget: map[string]ajar.Provider{}, rebuilt: map[string]ajar.Provider{}}
	for name, t := range targets {
		k, ok := Kinds[t.Provider]
		if !ok {
			return nil, fmt.Errorf("target %s: unknown provider %q", name, t.Provider)
		}
		p, err := k.New(name, t.Config, deps)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", name, err)
		}
		s.byTarget[name] = p
	}
	return s, nil
}

// ForTarget returns the provider of a configured target, or ENOTFOUND.
func (s *Set) ForTarget(target string) (ajar.Provider, error) {
	p, ok := s.byTarget[target]
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "no target %q", target)
	}
	return p, nil
}

// Kind returns the provider name of a configured target, or ENOTFOUND.
func (s *Set) Kind(target string) (string, error) {
	t, ok := s.targets[target]
	if !ok {
		return "", ajar.Errorf(ajar.ENOTFOUND, "no target %q", target)
	}
	return t.Provider, nil
}

// ForHandle returns a provider built from the kind and config saved in h. It does
// not look at today's config, so removing or changing a target never strands a
// grant made under the old one.
func (s *Set) ForHandle(h ajar.Handle) (ajar.Provider, error) {
	k, ok := Kinds[h.Provider]
	if !ok {
		return nil, fmt.Errorf("handle of request %s: unknown provider %q", h.Grant.RequestID, h.Provider)
	}
	key := h.Provider + "\x00" + h.Grant.Target + "\x00" + string(h.Grant.Config)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.rebuilt[key]; ok {
		return p, nil
	}
	p, err := k.New(h.Grant.Target, h.Grant.Config, s.deps)
	if err != nil {
		return nil, fmt.Errorf("rebuild %s provider for request %s: %w", h.Provider, h.Grant.RequestID, err)
	}
	s.rebuilt[key] = p
	return p, nil
}
