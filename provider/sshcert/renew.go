package sshcert

import (
	"context"
	"time"

	"github.com/ajar-dev/ajar"
)

var (
	_ ajar.Renewer      = (*Provider)(nil)
	_ ajar.LocalGranter = (*Provider)(nil)
)

// Renew moves the grant's expiry to expiresAt (an extension): certificates and
// authorized keys issued from now on last until then. Those already issued keep
// their own expiry (a certificate cannot be changed); "ajar ssh" simply gets a new
// one, and host agents let open sessions run to the request's new expiry. There
// is nothing on any host to change, so it cannot fail for a grant of this
// provider; it returns EINVALID for another provider's handle, a zero time, or
// one past the grant's NotAfter.
func (p *Provider) Renew(ctx context.Context, h ajar.Handle, expiresAt time.Time) (ajar.Handle, error) {
	if h.Provider != Name {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "ssh-cert cannot renew a %q grant", h.Provider)
	}
	if expiresAt.IsZero() {
		return ajar.Handle{}, ajar.FieldErrorf("expires_at", "is required: certificates must expire")
	}
	if err := h.Grant.CheckExpiry(expiresAt); err != nil {
		return ajar.Handle{}, err
	}
	h.Grant.ExpiresAt = expiresAt
	return h, nil
}
