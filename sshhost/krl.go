package sshhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
)

const (
	// krlSkew keeps a serial in the KRL this long after its certificate expired,
	// for hosts whose clocks run behind ajar's: such a host still takes the
	// certificate until its own clock reaches ValidBefore.
	krlSkew = 5 * time.Minute
	// krlCacheTTL is how long a built KRL is served before the store is read
	// again; it bounds the store load of many hosts polling.
	krlCacheTTL = time.Second
)

// endedStates are the states in which a request's certificates must no longer
// work: every state but active.
var endedStates = func() []ajar.State {
	var out []ajar.State
	for _, st := range ajar.States {
		if st != ajar.StateActive {
			out = append(out, st)
		}
	}
	return out
}()

// SSHKRL is the revocation list hosts install as sshd's RevokedKeys.
type SSHKRL struct {
	Data      []byte    // the binary KRL
	ETag      string    // a strong HTTP entity tag of Data
	Serials   int       // how many serials it revokes
	Generated time.Time // when this content was first built
}

// krlCache holds the last KRL built, so a quiet fleet of polling hosts reads the
// store at most once per krlCacheTTL and gets the same bytes (and ETag) until
// the set of revoked serials changes.
type krlCache struct {
	mu      sync.Mutex
	builtAt time.Time // local time of the last store read
	serials []uint64
	out     *SSHKRL
}

// SSHKRL returns the KRL of the SSH CA: the serials of every certificate whose
// request is no longer active (revoked, expired, being revoked...) and that is
// still within krlSkew of its ValidBefore. A serial enters it as soon as its
// request leaves the active state, and leaves it once the certificate has expired
// even on hosts with a slow clock, so the list stays small. ENOTFOUND if the
// server has no SSH CA.
func (s *Service) SSHKRL(ctx context.Context) (*SSHKRL, error) {
	if s.sshKRL == nil {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "this server has no SSH CA")
	}
	c := &s.krl
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out != nil && time.Since(c.builtAt) < krlCacheTTL {
		return c.out, nil
	}
	var serials []uint64
	var now time.Time
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now = tx.Now()
		certs, err := tx.FindSSHCerts(ctx, ajar.SSHCertFilter{ValidAfter: now.Add(-krlSkew), RequestStates: endedStates})
		if err != nil {
			return err
		}
		serials = make([]uint64, 0, len(certs))
		for _, cert := range certs {
			serials = append(serials, cert.Serial)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ssh krl: %w", err)
	}
	slices.Sort(serials)
	serials = slices.Compact(serials)
	c.builtAt = time.Now()
	if c.out != nil && slices.Equal(serials, c.serials) {
		return c.out, nil
	}
	data, err := s.sshKRL(serials, now)
	if err != nil {
		return nil, fmt.Errorf("ssh krl: %w", err)
	}
	sum := sha256.Sum256(data)
	c.serials = serials
	c.out = &SSHKRL{Data: data, ETag: `"` + hex.EncodeToString(sum[:16]) + `"`, Serials: len(serials), Generated: now}
	return c.out, nil
}
