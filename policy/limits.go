package policy

// LimitsConfig is the optional "limits" section: per-user caps that keep one
// requester (or a stolen token) from flooding approvers, the store and the SSH
// revocation list. An absent field takes its default; a field that is present
// must be between 1 and its maximum, so a limit cannot be switched off by
// accident.
type LimitsConfig struct {
	// OpenRequestsPerUser caps a requester's requests that are pending,
	// approved or active (default 50).
	OpenRequestsPerUser *int `yaml:"open_requests_per_user"`
	// RequestsPerMinutePerUser caps how many requests a requester creates in
	// any minute, by the store's clock (default 30). Break-glass requests count
	// but are never refused: they are the way in when everything else fails,
	// and each one alerts and opens a review.
	RequestsPerMinutePerUser *int `yaml:"requests_per_minute_per_user"`
	// CertificatesPerRequest caps the SSH certificates (or authorized keys)
	// issued for one request (default 20).
	CertificatesPerRequest *int `yaml:"certificates_per_request"`
}

// UserLimits are the "limits" section with defaults applied.
type UserLimits struct {
	OpenRequestsPerUser      int
	RequestsPerMinutePerUser int
	CertificatesPerRequest   int
}

// Default limits, used for the fields the policy file leaves out.
const (
	DefaultOpenRequestsPerUser      = 50
	DefaultRequestsPerMinutePerUser = 30
	DefaultCertificatesPerRequest   = 20
)

// Upper bounds of the limits, for load tests and service accounts; the limits
// cannot be switched off.
const (
	MaxOpenRequestsPerUser      = 1_000_000
	MaxRequestsPerMinutePerUser = 1_000_000
	MaxCertificatesPerRequest   = 10_000
)

// Limits returns the "limits" section, defaults applied.
func (p *Policy) Limits() UserLimits { return p.limits }

// limits checks the "limits" section and resolves its defaults.
func (c *compiler) limits(l LimitsConfig) {
	fields := []struct {
		name     string
		v        *int
		def, max int
	}{
		{"open_requests_per_user", l.OpenRequestsPerUser, DefaultOpenRequestsPerUser, MaxOpenRequestsPerUser},
		{"requests_per_minute_per_user", l.RequestsPerMinutePerUser, DefaultRequestsPerMinutePerUser, MaxRequestsPerMinutePerUser},
		{"certificates_per_request", l.CertificatesPerRequest, DefaultCertificatesPerRequest, MaxCertificatesPerRequest},
	}
	var got [3]int
	for i, f := range fields {
		got[i] = f.def
		if f.v == nil {
			continue
		}
		if *f.v < 1 || *f.v > f.max {
			c.add("limits."+f.name, "must be between 1 and %d, not %d", f.max, *f.v)
			continue
		}
		got[i] = *f.v
	}
	c.p.limits = UserLimits{OpenRequestsPerUser: got[0], RequestsPerMinutePerUser: got[1], CertificatesPerRequest: got[2]}
}
