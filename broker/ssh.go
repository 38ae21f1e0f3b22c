package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

// SSH hosts: the revocation list they install, the one-round-trip access that
// "ajar ssh" uses, the authorized keys sshd asks for in authorized-keys mode, and
// the sessions their agents report (and end).

const (
	// krlSkew keeps a serial in the KRL this long after its certificate expired,
	// for hosts whose clocks run behind ajar's: such a host still takes the
	// certificate until its own clock reaches ValidBefore.
	krlSkew = 5 * time.Minute
	// krlCacheTTL is how long a built KRL is served before the store is read
	// again; it bounds the store load of many hosts polling.
	krlCacheTTL = time.Second
	// minReuseLeft is the least time an active request must have left for "ajar
	// ssh" to reuse it rather than ask for a new one.
	minReuseLeft = 30 * time.Second
	// maxSessionsPerReport bounds one session report.
	maxSessionsPerReport = 500
	// maxKeyRequests bounds the active requests of one target read for
	// AuthorizedKeysCommand; beyond it the oldest ones cannot log in (fail closed).
	maxKeyRequests = 10000
	maxHostLen     = 255
	maxUserLen     = 256
	maxSessionID   = 128
	maxReasonText  = 500
)

// Session events a host agent reports.
const (
	SessionOpened = "opened" // first seen: a login, audited
	SessionOpen   = "open"   // still open, seen before: only judged
	SessionEnded  = "ended"  // the agent ended it (Reason says why): audited
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

// SSHAccessInput asks for SSH access to a target in one round trip: reuse the
// caller's request for it or create one, and certify PublicKey if the request is
// active. The request fields are CreateInput's.
type SSHAccessInput struct {
	Target    string            `json:"target"`
	Duration  string            `json:"duration,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Ticket    string            `json:"ticket,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
	PublicKey string            `json:"public_key,omitempty"` // authorized_keys format
}

// SSHAccessOutput is the request SSHAccess found or created and, when it is
// active and a public key was sent, the certificate (or authorized key) for it.
type SSHAccessOutput struct {
	Request *ajar.Request  `json:"request"`
	Reused  bool           `json:"reused"`
	Cert    *SSHCertOutput `json:"ssh_cert,omitempty"`
}

// SSHAccess finds the caller's own request for in.Target that can still be used
// (active with at least minReuseLeft to go, else pending or approved) and whose
// parameters equal in.Params, or creates one exactly as CreateRequest does. If the
// request is active and in.PublicKey is set, it certifies the key as IssueSSHCert
// does. Nothing is stored if the target does not issue SSH certificates or the
// key is malformed.
func (s *Service) SSHAccess(ctx context.Context, u ajar.User, in SSHAccessInput) (*SSHAccessOutput, error) {
	create := CreateInput{Target: in.Target, Duration: in.Duration, Reason: in.Reason, Ticket: in.Ticket, Params: in.Params}
	if _, err := validateCreate(create); err != nil {
		return nil, err
	}
	if _, err := s.pol.Match(u, in.Target); err != nil {
		return nil, err
	}
	prov, err := s.providers.ForTarget(in.Target)
	if err != nil {
		return nil, fmt.Errorf("provider for %s: %w", in.Target, err)
	}
	issuer, ok := prov.(ajar.SSHCertIssuer)
	if !ok {
		return nil, ajar.FieldErrorf("target", "target %s does not give SSH access", in.Target)
	}
	if in.PublicKey != "" {
		if len(in.PublicKey) > 16<<10 {
			return nil, ajar.FieldErrorf("public_key", "too large")
		}
		if err := issuer.CheckPublicKey([]byte(in.PublicKey)); err != nil {
			return nil, err
		}
	}
	out := &SSHAccessOutput{}
	out.Request, err = s.reusable(ctx, u, in.Target, in.Params)
	if err != nil {
		return nil, err
	}
	if out.Request != nil {
		out.Reused = true
	} else if out.Request, err = s.CreateRequest(ctx, u, create); err != nil {
		return nil, err
	}
	if out.Request.State == ajar.StateActive && in.PublicKey != "" {
		if out.Cert, err = s.IssueSSHCert(ctx, u, out.Request.ID, []byte(in.PublicKey)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// reusable returns u's newest request for target with exactly params that is
// active with minReuseLeft to go, or else the newest pending or approved one, or
// nil.
func (s *Service) reusable(ctx context.Context, u ajar.User, target string, params map[string]string) (*ajar.Request, error) {
	var found *ajar.Request
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now := tx.Now()
		rs, err := tx.ListRequests(ctx, ajar.RequestFilter{
			Requester: u.ID, Target: target,
			States: []ajar.State{ajar.StateActive, ajar.StateApproved, ajar.StatePending},
		})
		if err != nil {
			return err
		}
		var waiting *ajar.Request
		for _, r := range rs {
			if !ajar.SameUser(r.Requester, u.ID) || r.Target != target || !sameParams(r.Params, params) {
				continue
			}
			switch {
			case r.State == ajar.StateActive && r.ExpiresAt != nil && r.ExpiresAt.Sub(now) >= minReuseLeft:
				found = r
				return nil
			case r.State != ajar.StateActive && waiting == nil:
				waiting = r
			}
		}
		found = waiting
		return nil
	})
	return found, err
}

func sameParams(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

// SSHAuthorizedKeys returns the authorized_keys lines that let user log in to a
// host of target now: the keys of its active requests in authorized-keys mode
// that allow user, each with an expiry-time option. It is what sshd's
// AuthorizedKeysCommand ("ajar node keys") prints. Only the target's host agents
// may ask (EFORBIDDEN otherwise).
func (s *Service) SSHAuthorizedKeys(ctx context.Context, node ajar.User, target, user string) ([]string, error) {
	if err := checkLogin("user", user); err != nil {
		return nil, err
	}
	if _, err := s.nodeOf(node, target); err != nil {
		return nil, err
	}
	var out []string
	err := s.store.View(ctx, func(tx ajar.ReadTx) error {
		now := tx.Now()
		rs, err := tx.ListRequests(ctx, ajar.RequestFilter{Target: target, States: []ajar.State{ajar.StateActive}, Limit: maxKeyRequests})
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Handle == nil || r.ExpiresAt == nil || !now.Before(*r.ExpiresAt) {
				continue
			}
			prov, err := s.providers.ForHandle(*r.Handle)
			if err != nil {
				return err
			}
			hosts, ok := prov.(ajar.SSHHosts)
			if !ok || !hosts.TakesPlainKeys(*r.Handle) {
				continue
			}
			keys, err := tx.ListSSHCerts(ctx, r.ID)
			if err != nil {
				return err
			}
			lines, err := hosts.AuthorizedKeys(*r.Handle, keys, user, now)
			if err != nil {
				return err
			}
			out = append(out, lines...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("authorized keys for %s on %s: %w", user, target, err)
	}
	return out, nil
}

// nodeOf returns the target's provider if u is one of its host agents.
func (s *Service) nodeOf(u ajar.User, target string) (ajar.SSHHosts, error) {
	if strings.TrimSpace(target) == "" || len(target) > maxTargetLen {
		return nil, ajar.FieldErrorf("target", "a target name is required")
	}
	forbidden := ajar.Errorf(ajar.EFORBIDDEN, "%s is not a host agent of target %s", u.ID, target)
	prov, err := s.providers.ForTarget(target)
	if ajar.ErrorCode(err) == ajar.ENOTFOUND {
		return nil, forbidden // do not tell non-agents which targets exist
	} else if err != nil {
		return nil, err
	}
	hosts, ok := prov.(ajar.SSHHosts)
	if !ok || !hosts.AllowsNode(u) {
		return nil, forbidden
	}
	return hosts, nil
}

// checkLogin validates a Unix login name from a host.
func checkLogin(field, user string) error {
	switch {
	case user == "":
		return ajar.FieldErrorf(field, "a user name is required")
	case len(user) > maxUserLen:
		return ajar.FieldErrorf(field, "longer than %d characters", maxUserLen)
	case strings.HasPrefix(user, "-") || strings.ContainsFunc(user, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == ','
	}):
		return ajar.FieldErrorf(field, "%q is not a user name", user)
	}
	return nil
}

// SSHSessionReport is what a host agent sees on its host: the SSH sessions open
// now (or ended by it since the last report).
type SSHSessionReport struct {
	Target   string       `json:"target"`
	Host     string       `json:"host"`
	Sessions []SSHSession `json:"sessions"`
}

// SSHSession is one SSH session on a host, with the key sshd logged for its
// login. Either Key, or Fingerprint (with Serial, KeyID and CA for a
// certificate), names the key.
type SSHSession struct {
	// ID is the agent's name for the session, stable while it lasts.
	ID    string `json:"id"`
	Event string `json:"event"` // SessionOpened, SessionOpen or SessionEnded
	User  string `json:"user"`  // the login
	// Key is the certificate or public key the session logged in with, as
	// "TYPE BASE64", when the agent has it.
	Key string `json:"key,omitempty"`
	// Fingerprint is the SHA256 fingerprint of the key (for a certificate, of
	// the certified key), as sshd logs it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// For a certificate: its serial, key id and the SHA256 fingerprint of the
	// CA that signed it, as sshd logs them.
	Serial  uint64     `json:"serial,omitempty"`
	KeyID   string     `json:"key_id,omitempty"`
	CA      string     `json:"ca,omitempty"`
	Source  string     `json:"source,omitempty"` // the client's address
	PID     int        `json:"pid,omitempty"`
	Started *time.Time `json:"started,omitempty"`
	Reason  string     `json:"reason,omitempty"` // why the agent ended it
}

// sessionKey is the key a session logged in with, as the server judges it.
type sessionKey struct {
	fingerprint string // SHA256 of the (certified) key
	cert        bool
	serial      uint64
	keyID       string
	ca          string // the CA's SHA256 fingerprint
}

// SSHSessionVerdict says what the agent must do about one reported session.
type SSHSessionVerdict struct {
	ID string `json:"id"`
	// Known is true when the session logged in with a key or certificate ajar
	// issued; the agent leaves other sessions alone.
	Known     bool   `json:"known"`
	RequestID string `json:"request_id,omitempty"`
	Serial    uint64 `json:"serial,omitempty"`
	// End says the session must end now: its request is no longer active, or its
	// certificate is for another target.
	End bool `json:"end"`
	// EndsAt is when the session must end at the latest (its access's expiry).
	EndsAt *time.Time `json:"ends_at,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// SSHSessionsOutput answers a session report, one verdict per session in order.
type SSHSessionsOutput struct {
	Sessions []SSHSessionVerdict `json:"sessions"`
}

// ReportSSHSessions judges the sessions a host agent of target reports and
// records the logins (SessionOpened) and the sessions the agent ended
// (SessionEnded) in the audit log, subject the request the session belongs to, in
// one transaction. A certificate signed by ajar's CA whose request is not active,
// that ajar has no record of, or that belongs to another target, is to be ended;
// so is a plain key of an authorized-keys grant that is no longer active. Only the
// target's host agents may report (EFORBIDDEN otherwise), and a report is only
// ever recorded on requests of that target: a session whose key belongs to a
// request of another target is judged to end, its event is recorded without a
// request, and the verdict names no request of the other target (see
// docs/security.md). The event's actor is the node's own identity; host and
// reason are recorded as the node reported them.
func (s *Service) ReportSSHSessions(ctx context.Context, node ajar.User, rep SSHSessionReport) (*SSHSessionsOutput, error) {
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
	judge := func(tx ajar.ReadTx) (*SSHSessionsOutput, error) {
		out := &SSHSessionsOutput{Sessions: make([]SSHSessionVerdict, len(rep.Sessions))}
		for i, sess := range rep.Sessions {
			v, err := s.judgeSession(ctx, tx, ca, rep.Target, sess, keys[i])
			if err != nil {
				return nil, err
			}
			out.Sessions[i] = v
		}
		return out, nil
	}
	audited := slices.ContainsFunc(rep.Sessions, func(x SSHSession) bool { return x.Event != SessionOpen })
	var out *SSHSessionsOutput
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
				if sess.Event == SessionOpen {
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
				if sess.Event == SessionEnded {
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
		if sess.Event != SessionOpen {
			s.metrics.sshSessions.WithLabelValues(sess.Event).Inc()
		}
	}
	return out, nil
}

// fingerprintRE is an OpenSSH SHA256 fingerprint.
var fingerprintRE = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}$`)

// checkReport validates a report at the edge and works out each session's key.
// A certificate given whole counts as signed by a CA only if its signature by
// that CA verifies.
func checkReport(rep SSHSessionReport, ca ssh.PublicKey) ([]sessionKey, error) {
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
		case SessionOpened, SessionOpen, SessionEnded:
		default:
			return nil, ajar.FieldErrorf(field+".event", "must be %s, %s or %s", SessionOpened, SessionOpen, SessionEnded)
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
func checkLoggedKey(field string, sess SSHSession) (sessionKey, error) {
	if sess.Event == SessionEnded && sess.Fingerprint == "" && sess.CA == "" && sess.Serial == 0 && sess.KeyID == "" {
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
func (s *Service) judgeSession(ctx context.Context, tx ajar.ReadTx, ca ssh.PublicKey, target string, sess SSHSession, key sessionKey) (SSHSessionVerdict, error) {
	v := SSHSessionVerdict{ID: sess.ID}
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
	var ended *SSHSessionVerdict
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
		cand := SSHSessionVerdict{ID: sess.ID, Known: true, Serial: rec.Serial, RequestID: rec.RequestID}
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
func (s *Service) judgeRequest(ctx context.Context, tx ajar.ReadTx, v *SSHSessionVerdict, target string, now time.Time) error {
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
