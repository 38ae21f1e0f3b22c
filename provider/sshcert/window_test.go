package sshcert

import (
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// TestNotAfterBoundsCertsAndRenew: whatever the handle's expiry says, no
// certificate, authorized key or renewal passes the grant's NotAfter, and no
// certificate is longer than ajar.MaxWindow.
func TestNotAfterBoundsCertsAndRenew(t *testing.T) {
	p := testProvider(t, requestConfig)
	h := grant(t, p, "203.0.113.7")
	notAfter := testExpires.Add(time.Hour)
	h.Grant.NotAfter = notAfter
	if _, err := p.Renew(t.Context(), h, notAfter.Add(time.Second)); ajar.ErrorCode(err) != ajar.EINVALID {
		t.Fatalf("Renew past NotAfter: %v, want invalid", err)
	}
	h2, err := p.Renew(t.Context(), h, notAfter)
	if err != nil || !h2.Grant.ExpiresAt.Equal(notAfter) {
		t.Fatalf("Renew to NotAfter: %+v, %v", h2, err)
	}

	h2.Grant.ExpiresAt = testNow.Add(300 * 24 * time.Hour) // a handle moved past its bound
	_, line := userKey(t, 2)
	cert, info, err := p.SignCert(h2, line, 7, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if vb := time.Unix(int64(parseCert(t, cert).ValidBefore), 0); !vb.Equal(notAfter) || !info.ValidBefore.Equal(notAfter) {
		t.Errorf("certificate valid before %v (recorded %v), want NotAfter %v", vb, info.ValidBefore, notAfter)
	}

	// A handle from before NotAfter existed, with an absurd expiry: capped at
	// MaxWindow from now.
	h2.Grant.NotAfter = time.Time{}
	h2.Grant.ExpiresAt = testNow.AddDate(293, 0, 0)
	cert, _, err = p.SignCert(h2, line, 8, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if vb := time.Unix(int64(parseCert(t, cert).ValidBefore), 0); vb.After(testNow.Add(ajar.MaxWindow)) {
		t.Errorf("certificate valid before %v, more than MaxWindow from now", vb)
	}
}
