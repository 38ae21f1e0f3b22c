package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ajar-dev/ajar"
)

// Per-user limits (the policy's "limits" section). They are counted from the
// store, inside the write transaction that would exceed them and after its first
// write: SQLite runs one writer at a time, and PostgreSQL's first write takes the
// audit head lock (see store/postgres), so every replica's earlier write has
// committed when the count runs. A refusal rolls the write back; nothing of a
// refused request or certificate is stored.
//
// Refusals are not audited: an attacker could otherwise grow the audit log, which
// is never pruned, as fast as they can send requests. They are counted in
// ajar_limit_refusals_total and logged once per user and limit per minute (see
// docs/security.md).

// openStates are the states counted by limits.open_requests_per_user: what a
// requester waits for or holds. Active grants count too, so that the SSH
// certificates one person can hold at once are bounded by
// open_requests_per_user × certificates_per_request.
var openStates = []ajar.State{ajar.StatePending, ajar.StateApproved, ajar.StateActive}

// rateWindow is the window of limits.requests_per_minute_per_user.
const rateWindow = time.Minute

// Names of the limits, as in the policy file and the metric's label.
const (
	limitOpen  = "open_requests_per_user"
	limitRate  = "requests_per_minute_per_user"
	limitCerts = "certificates_per_request"
)

// createWithinLimits inserts r in tx and refuses it with ETOOMANY if its
// requester now has more requests created in the last minute, or more open
// requests, than the policy allows. The counts come with the insert
// (CreateRequestCounting: one round trip to a database server) and run after
// it, as the first write of tx or a later one.
func (s *Service) createWithinLimits(ctx context.Context, tx ajar.Tx, r *ajar.Request) error {
	lim := s.pol.Limits()
	// Bounded counts, in one statement: each reads at most one row more than
	// its limit.
	counts, err := tx.CreateRequestCounting(ctx, r,
		ajar.RequestFilter{Requester: r.Requester, CreatedSince: tx.Now().Add(-rateWindow), Limit: lim.RequestsPerMinutePerUser + 1},
		ajar.RequestFilter{Requester: r.Requester, States: openStates, Limit: lim.OpenRequestsPerUser + 1})
	if err != nil {
		return err
	}
	if n := counts[0]; n > lim.RequestsPerMinutePerUser {
		return s.refuseLimit(ctx, r.Requester, limitRate, ajar.Errorf(ajar.ETOOMANY,
			"you have made %d requests in the last minute, the most the policy allows (limits.%s); try again in a minute",
			lim.RequestsPerMinutePerUser, limitRate))
	}
	if open := counts[1]; open > lim.OpenRequestsPerUser {
		return s.refuseLimit(ctx, r.Requester, limitOpen, ajar.Errorf(ajar.ETOOMANY,
			"you have %d requests pending, approved or active, the most the policy allows (limits.%s); cancel one or wait until one ends",
			lim.OpenRequestsPerUser, limitOpen))
	}
	return nil
}

// CheckCertLimit refuses with ETOOMANY the certificate for request id that tx
// has just inserted if the request now has more than the policy allows
// (counted and logged as other limits are). Package sshaccess, which issues
// the certificates, calls it after tx.InsertSSHCert. created says that tx
// also created the request, so that certificate is its only one and nothing
// needs counting.
func (s *Service) CheckCertLimit(ctx context.Context, tx ajar.Tx, requester, id string, created bool) error {
	max := s.pol.Limits().CertificatesPerRequest
	n := 1
	if !created {
		certs, err := tx.ListSSHCerts(ctx, id)
		if err != nil {
			return err
		}
		n = len(certs)
	}
	if n > max {
		return s.refuseLimit(ctx, requester, limitCerts, ajar.Errorf(ajar.ETOOMANY,
			"request %s already has %d SSH certificates, the most the policy allows (limits.%s); make a new request",
			id, max, limitCerts))
	}
	return nil
}

// refuseLimit counts and logs a refusal and returns err.
func (s *Service) refuseLimit(ctx context.Context, user, limit string, err error) error {
	s.metrics.limits.WithLabelValues(limit).Inc()
	if s.limitLog.First(user+"\x00"+limit, s.now()) { // once a minute per user and limit
		s.log.WarnContext(ctx, "per-user limit reached; further refusals of this user for this limit are not logged for a minute",
			"user", user, "limit", limit)
	}
	return err
}

func newLimitCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ajar_limit_refusals_total",
		Help: "Requests and SSH certificates refused because a per-user limit of the policy was reached, by limit.",
	}, []string{"limit"})
	reg.MustRegister(c)
	return c
}
