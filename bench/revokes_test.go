package bench

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider"
)

// revokeLog records, for every grant whose provider Revoke returned without
// error, how long after the grant's expiry that was (its revocation lag).
type revokeLog struct {
	mu  sync.Mutex
	lag map[string]time.Duration // by request id: the first successful revoke
}

func (l *revokeLog) record(h ajar.Handle, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lag == nil {
		l.lag = map[string]time.Duration{}
	}
	if _, ok := l.lag[h.Grant.RequestID]; !ok {
		l.lag[h.Grant.RequestID] = at.Sub(h.Grant.ExpiresAt)
	}
}

func (l *revokeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lag)
}

// lags returns the recorded lags, sorted.
func (l *revokeLog) lags() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]time.Duration, 0, len(l.lag))
	for _, d := range l.lag {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// timedProviders is the provider set with the Revoke of providers rebuilt from
// handles (what the scheduler revokes with) timed into log. These benchmarks
// issue no certificates, so the wrapper need not keep ajar.SSHCertIssuer.
type timedProviders struct {
	*provider.Set
	log *revokeLog
}

func (p *timedProviders) ForHandle(h ajar.Handle) (ajar.Provider, error) {
	prov, err := p.Set.ForHandle(h)
	if err != nil {
		return nil, err
	}
	return timedProvider{prov, p.log}, nil
}

// timedProvider is one provider with its Revoke timed.
type timedProvider struct {
	ajar.Provider
	log *revokeLog
}

func (p timedProvider) Revoke(ctx context.Context, h ajar.Handle) error {
	err := p.Provider.Revoke(ctx, h)
	if err == nil {
		p.log.record(h, time.Now())
	}
	return err
}
