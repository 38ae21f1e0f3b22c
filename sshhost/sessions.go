package sshhost

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/sshhost/wire"
)

// sessionKey is the key a session logged in with, as the server judges it.
type sessionKey struct {
	fingerprint string // SHA256 of the (certified) key
	cert        bool
	serial      uint64
	keyID       string
	ca          string // the CA's SHA256 fingerprint
}

// ReportSSHSessions judges the sessions a host agent of target reports and
// records the logins (wire.SessionOpened) and the sessions the agent ended
// (wire.SessionEnded) in the audit log, subject the request the session belongs to, in
// one transaction. A certificate signed by ajar's CA whose request is not active,
// that ajar has no record of, or that belongs to another target, is to be ended;
// so is a plain key of an authorized-keys grant that is no longer active. Only the
// target's host agents may report (EFORBIDDEN otherwise), and a report is only
// ever recorded on requests of that target: a session whose key belongs to a
// request of another target is judged to end, its event is recorded without a
// request, and the verdict names no request of the other target (see
// docs/security.md). The event's actor is the node's own identity; host and
// reason are recorded as the node reported them.
func (s *Service) ReportSSHSessions(ctx context.Context, node ajar.User, rep wire.SSHSessionReport) (*wire.SSHSessionsOutput, error) {
	if _, err := s.nodeOf(node, rep.Target); err != nil {
		return nil, err
	}
	var ca ssh.PublicKey
	if s.sshCA != nil {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.sshCA())); err == nil {
			ca = k
		}
	}
	keys, err := checkReport(rep, ca)
	if err != nil {
		return nil, err
	}
	judge := func(tx ajar.ReadTx) (*wire.SSHSessionsOutput, error) {
		out := &wire.SSHSessionsOutput{Sessions: make([]wire.SSHSessionVerdict, len(rep.Sessions))}
		for i, sess := range rep.Sessions {
			v, err := s.judgeSession(ctx, tx, ca, rep.Target, sess, keys[i])
			if err != nil {
				return nil, err
			}
			out.Sessions[i] = v
		}
		return out, nil
	}
	audited := slices.ContainsFunc(rep.Sessions, func(x wire.SSHSession) bool { return x.Event != wire.SessionOpen })
	var out *wire.SSHSessionsOutput
	if !audited {
		err = s.store.View(ctx, func(tx ajar.ReadTx) error {
			out, err = judge(tx)
			return err
		})
	} else {
		err = s.store.Update(ctx, func(tx ajar.Tx) error {
			var err error
			if out, err = judge(tx); err != nil {
				return err
			}
			for i, sess := range rep.Sessions {
				if sess.Event == wire.SessionOpen {
					continue
				}
				v, k := out.Sessions[i], keys[i]
				details := map[string]any{
					"target": rep.Target, "host": rep.Host, "node": node.ID, "session": sess.ID, "user": sess.User,
					"source": sess.Source, "pid": sess.PID, "fingerprint": k.fingerprint, "known": v.Known,
				}
				if sess.Started != nil {
					details["started"] = sess.Started.UTC()
				}
				if k.cert {
					details["serial"] = k.serial
					details["key_id"] = k.keyID
				} else if v.Serial != 0 {
					details["serial"] = v.Serial
				}
				if v.End {
					details["verdict"] = v.Reason
				}
				action := "ssh.session.opened"
				if sess.Event == wire.SessionEnded {
					action = "ssh.session.ended"
					details["reason"] = sess.Reason
				}
				if err := s.audit(ctx, tx, node.ID, action, v.RequestID, details); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("ssh sessions of %s: %w", rep.Host, err)
	}
	for _, sess := range rep.Sessions {
		if sess.Event != wire.SessionOpen {
			s.sessions.WithLabelValues(sess.Event).Inc()
		}
	}
	return out, nil
}

// fingerprintRE is an OpenSSH SHA256 fingerprint.
var fingerprintRE = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`)

// checkReport validates a report at the edge and works out each session's key.
// A certificate given whole counts as signed by a CA only if its signature by
// that CA verifies.
func checkReport(rep wire.SSHSessionReport, ca ssh.PublicKey) ([]sessionKey, error) {
	if rep.Host == "" || len(rep.Host) > maxHostLen || strings.ContainsFunc(rep.Host, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) {
		return nil, ajar.FieldErrorf("host", "must be a host name of at most %d printable characters", maxHostLen)
	}
	if len(rep.Sessions) > maxSessionsPerReport {
		return nil, ajar.FieldErrorf("sessions", "at most %d sessions per report", maxSessionsPerReport)
	}
	keys := make([]sessionKey, len(rep.Sessions))
	for i, sess := range rep.Sessions {
		field := fmt.Sprintf("sessions[%d]", i)
		if sess.ID == "" || len(sess.ID) > maxSessionID || strings.ContainsFunc(sess.ID, unicode.IsControl) {
			return nil, ajar.FieldErrorf(field+".id", "must be 1 to %d printable characters", maxSessionID)
		}
		switch sess.Event {
		case wire.SessionOpened, wire.SessionOpen, wire.SessionEnded:
		default:
			return nil, ajar.FieldErrorf(field+".event", "must be %s, %s or %s", wire.SessionOpened, wire.SessionOpen, wire.SessionEnded)
		}
		if err := checkLogin(field+".user", sess.User); err != nil {
			return nil, err
		}
		if sess.Source != "" {
			if _, err := netip.ParseAddr(sess.Source); err != nil {
				return nil, ajar.FieldErrorf(field+".source", "must be an IP address")
			}
		}
		if sess.PID < 0 {
			return nil, ajar.FieldErrorf(field+".pid", "must not be negative")
		}
		if len(sess.Reason) > maxReasonText || strings.ContainsFunc(sess.Reason, unicode.IsControl) {
			return nil, ajar.FieldErrorf(field+".reason", "must be at most %d printable characters", maxReasonText)
		}
		if sess.Key == "" {
			k, err := checkLoggedKey(field, sess)
			if err != nil {
				return nil, err
			}
			keys[i] = k
			continue
		}
		if len(sess.Key) > 16<<10 {
			return nil, ajar.FieldErrorf(field+".key", "too large")
		}
		key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(sess.Key))
		if err != nil || len(bytes.TrimSpace(rest)) > 0 {
			return nil, ajar.FieldErrorf(field+".key", "must be one public key or certificate as TYPE BASE64")
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			k := sessionKey{cert: true, fingerprint: ssh.FingerprintSHA256(cert.Key), serial: cert.Serial, keyID: cert.KeyId, ca: "unverified"}
			if ca != nil && signedBy(cert, ca) {
				k.ca = ssh.FingerprintSHA256(ca)
			}
			keys[i] = k
		} else {
			keys[i] = sessionKey{fingerprint: ssh.FingerprintSHA256(key)}
		}
	}
	return keys, nil
}

// checkLoggedKey validates a key given as sshd logs it. A session the agent
// ended because it could not tie it to any key is reported without one.
func checkLoggedKey(field string, sess wire.SSHSession) (sessionKey, error) {
	if sess.Event == wire.SessionEnded && sess.Fingerprint == "" && sess.CA == "" && sess.Serial == 0 && sess.KeyID == "" {
		return sessionKey{}, nil
	}
	if !fingerprintRE.MatchString(sess.Fingerprint) {
		return sessionKey{}, ajar.FieldErrorf(field+".fingerprint", "must be a SHA256 key fingerprint (or give key)")
	}
	k := sessionKey{fingerprint: sess.Fingerprint}
	if sess.CA == "" {
		if sess.Serial != 0 || sess.KeyID != "" {
			return k, ajar.FieldErrorf(field+".ca", "is required with a serial or key id")
		}
		return k, nil
	}
	if !fingerprintRE.MatchString(sess.CA) {
		return k, ajar.FieldErrorf(field+".ca", "must be the SHA256 fingerprint of the certificate's CA")
	}
	if len(sess.KeyID) > 1024 || strings.ContainsFunc(sess.KeyID, unicode.IsControl) {
		return k, ajar.FieldErrorf(field+".key_id", "must be at most 1024 printable characters")
	}
	k.cert, k.serial, k.keyID, k.ca = true, sess.Serial, sess.KeyID, sess.CA
	return k, nil
}

// judgeSession works out whether one session's access is still granted.
func (s *Service) judgeSession(ctx context.Context, tx ajar.ReadTx, ca ssh.PublicKey, target string, sess wire.SSHSession, key sessionKey) (wire.SSHSessionVerdict, error) {
	v := wire.SSHSessionVerdict{ID: sess.ID}
	now := tx.Now()
	if key.fingerprint == "" {
		return v, nil // no key: nobody's
	}
	if key.cert {
		if ca == nil || key.ca != ssh.FingerprintSHA256(ca) {
			return v, nil // not ajar's certificate
		}
		v.Known, v.Serial = true, key.serial
		var record *ajar.SSHCert
		if reqID, ok := requestOfKeyID(key.keyID); ok {
			certs, err := tx.ListSSHCerts(ctx, reqID)
			if ajar.ErrorCode(err) != ajar.ENOTFOUND && err != nil {
				return v, err
			}
			for i := range certs {
				if certs[i].Serial == key.serial && certs[i].Fingerprint == key.fingerprint {
					record = &certs[i]
				}
			}
		}
		if record == nil {
			v.End, v.Reason = true, fmt.Sprintf("ajar has no record of certificate serial %d", key.serial)
			return v, nil
		}
		v.RequestID = record.RequestID
		return v, s.judgeRequest(ctx, tx, &v, target, now)
	}

	// A plain key: ajar's only if an authorized-keys grant of this target has it.
	records, err := tx.FindSSHCerts(ctx, ajar.SSHCertFilter{Fingerprint: key.fingerprint})
	if err != nil {
		return v, err
	}
	var ended *wire.SSHSessionVerdict
	for i := len(records) - 1; i >= 0; i-- { // newest first
		rec := records[i]
		r, err := tx.GetRequest(ctx, rec.RequestID)
		if ajar.ErrorCode(err) == ajar.ENOTFOUND {
			continue
		} else if err != nil {
			return v, err
		}
		if r.Target != target || r.Handle == nil {
			continue
		}
		prov, err := s.providers.ForHandle(*r.Handle)
		if err != nil {
			return v, err
		}
		if hosts, ok := prov.(ajar.SSHHosts); !ok || !hosts.TakesPlainKeys(*r.Handle) {
			continue
		}
		cand := wire.SSHSessionVerdict{ID: sess.ID, Known: true, Serial: rec.Serial, RequestID: rec.RequestID}
		if err := s.judgeRequest(ctx, tx, &cand, target, now); err != nil {
			return v, err
		}
		if !cand.End {
			return cand, nil // one active grant is enough
		}
		if ended == nil {
			ended = &cand
		}
	}
	if ended != nil {
		return *ended, nil
	}
	return v, nil
}

// judgeRequest sets v.End (with a reason) unless v's request is active,
// unexpired and for target. A request of another target is not the reporting
// node's business: v then names no request and no expiry, so that nothing is
// recorded on it. v.EndsAt is the request's expiry: a session lasts as long as
// its request, even past its certificate's expiry when the request was extended.
func (s *Service) judgeRequest(ctx context.Context, tx ajar.ReadTx, v *wire.SSHSessionVerdict, target string, now time.Time) error {
	r, err := tx.GetRequest(ctx, v.RequestID)
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		v.End, v.Reason, v.RequestID = true, fmt.Sprintf("request %s does not exist", v.RequestID), ""
		return nil
	} else if err != nil {
		return err
	}
	if r.Target != target {
		v.End, v.Reason, v.RequestID = true, fmt.Sprintf("the certificate is not for target %s", target), ""
		return nil
	}
	var until time.Time
	if r.ExpiresAt != nil {
		until = r.ExpiresAt.UTC()
		v.EndsAt = &until
	}
	switch {
	case r.State != ajar.StateActive:
		v.End, v.Reason = true, fmt.Sprintf("request %s is %s", r.ID, r.State)
	case r.ExpiresAt == nil || !now.Before(until):
		v.End, v.Reason = true, fmt.Sprintf("access of request %s expired at %s", r.ID, until.Format(time.RFC3339))
	}
	return nil
}

// requestOfKeyID returns the request id in a key id ajar wrote:
// "ajar:REQUEST:REQUESTER".
func requestOfKeyID(keyID string) (string, bool) {
	rest, ok := strings.CutPrefix(keyID, "ajar:")
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ":")
	if !ok || id == "" {
		return "", false
	}
	return id, true
}

// signedBy reports whether cert carries a valid signature by ca.
func signedBy(cert *ssh.Certificate, ca ssh.PublicKey) bool {
	if cert.SignatureKey == nil || cert.Signature == nil || !bytes.Equal(cert.SignatureKey.Marshal(), ca.Marshal()) {
		return false
	}
	// The signed bytes are the certificate without its signature field (and
	// that field's length prefix), as x/crypto/ssh computes them.
	c := *cert
	c.Signature = nil
	b := c.Marshal()
	if len(b) < 4 {
		return false
	}
	return ca.Verify(b[:len(b)-4], cert.Signature) == nil
}
