package broker

import (
	"context"

	"github.com/ajar-dev/ajar"
)

// What package reconcile (the drift check and the report of grants of removed
// users) needs of the core: the provider calls that respect shared access
// (shared.go), and with package credentials the provider error count. See
// docs/architecture.md.

// ProviderGrant calls prov.Grant for h's grant (bounded by ProviderTimeout)
// under the lock of its access, if shared.
func (s *Service) ProviderGrant(ctx context.Context, prov ajar.Provider, h ajar.Handle) (ajar.Handle, error) {
	return s.providerGrant(ctx, prov, h)
}

// RevokeUnlessShared calls prov.Revoke for r unless other live requests hold
// the same shared access; it returns those holders.
func (s *Service) RevokeUnlessShared(ctx context.Context, prov ajar.Provider, r *ajar.Request) ([]string, error) {
	return s.revokeUnlessShared(ctx, prov, r)
}

// ProviderRevoke removes r's access, or audits that it stays for the other
// live requests that share it.
func (s *Service) ProviderRevoke(ctx context.Context, prov ajar.Provider, r *ajar.Request) error {
	return s.providerRevoke(ctx, prov, r)
}

// CountProviderError counts a failed provider call in
// ajar_provider_errors_total{provider, op}.
func (s *Service) CountProviderError(provider, op string) {
	s.metrics.providerErrors.WithLabelValues(provider, op).Inc()
}
