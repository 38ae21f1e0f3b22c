package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/broker"
	"github.com/ajar-dev/ajar/provider/sshcert"
)

// Agent is the host agent. Its methods are not safe for concurrent use: Run
// calls them one after the other.
type Agent struct {
	cfg    *Config
	client *api.Client
	token  bool // whether the client has a node token
	log    *slog.Logger
	now    func() time.Time
	proc   procFS
	kill   func(Session) error // ends a session's processes (procFS.end)

	krlETag string
	// The installed CA and KRL, as last read from their files, for judging
	// sessions without the server.
	ca      ssh.PublicKey
	krl     *sshcert.KRL
	caRaw   []byte
	krlRaw  []byte
	tracked map[string]*tracked
	// unreported holds sessions the agent ended that the server has not been
	// told about yet.
	unreported []broker.SSHSession
}

// tracked is what the agent remembers of a session between checks.
type tracked struct {
	s        Session
	reported bool       // the server has recorded its login
	endsAt   *time.Time // from the server: when its request's access ends
	judgedAt time.Time  // when the server last said so
}

// maxUnreported bounds the ended sessions kept for a server that is down.
const maxUnreported = 1000

// Options are an Agent's dependencies beyond its config. Zero fields take
// defaults.
type Options struct {
	Logger   *slog.Logger
	Now      func() time.Time // the host's clock (time.Now)
	ProcRoot string           // "/proc"
	// Client overrides the API client built from the config (tests).
	Client *api.Client
}

// New returns an agent for cfg. It reads the token file now, so a bad one is
// reported at start.
func New(cfg *Config, opts Options) (*Agent, error) {
	tok, err := cfg.Token()
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: opts.Logger, now: opts.Now, proc: procFS{root: opts.ProcRoot},
		client: opts.Client, token: tok != "", tracked: map[string]*tracked{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.proc.root == "" {
		a.proc.root = "/proc"
	}
	a.kill = a.proc.end
	if a.client == nil {
		a.client = api.NewClient(strings.TrimRight(cfg.Server, "/"), tok)
		a.client.HTTP.Timeout = 10 * time.Second
	} else {
		a.token = a.client.Token != ""
	}
	return a, nil
}

// Run syncs and checks sessions every Interval until ctx ends. Errors are
// logged and retried at the next interval: a server that is down leaves the
// installed files as they are, and sessions are still judged by their
// certificates' expiry and the installed KRL.
func (a *Agent) Run(ctx context.Context, acceptNewCA bool) error {
	a.log.Info("ajar node agent running", "target", a.cfg.Target, "host", a.cfg.Host, "interval", a.cfg.Interval,
		"ca_file", a.cfg.CAFile, "krl_file", a.cfg.KRLFile)
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	syncOK, checkOK := true, true
	for {
		if res, err := a.Sync(ctx, acceptNewCA); err != nil {
			if syncOK || errors.Is(err, ErrCAChanged) {
				a.log.Error("sync failed; keeping the installed CA and KRL", "err", err)
			}
			syncOK = false
		} else {
			if !syncOK || res.KRLWritten || res.CAWritten {
				a.log.Info("synced", "ca_written", res.CAWritten, "krl_written", res.KRLWritten, "revoked_serials", res.Serials)
			}
			syncOK = true
		}
		// A failure is logged when it starts and when it ends, not every interval.
		if err := a.CheckSessions(ctx); err != nil && ctx.Err() == nil {
			if checkOK {
				a.log.Error("check sessions (sessions are still judged by the installed CA and KRL)", "err", err)
			}
			checkOK = false
		} else if !checkOK {
			a.log.Info("session reports reach the server again")
			checkOK = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// loadLocal reads the installed CA and KRL files when they changed (always when
// force is set). A KRL that cannot be read leaves the last one in memory.
func (a *Agent) loadLocal(force bool) {
	if b, err := os.ReadFile(a.cfg.CAFile); err == nil && (force || !bytes.Equal(b, a.caRaw)) {
		if k, err := parseCA(b); err == nil {
			a.ca, a.caRaw = k, b
		}
	}
	if b, err := os.ReadFile(a.cfg.KRLFile); err == nil && (force || !bytes.Equal(b, a.krlRaw)) {
		if k, err := sshcert.ParseKRL(b); err == nil {
			a.krl, a.krlRaw = k, b
		}
	}
}

// CheckSessions looks at the SSH sessions open now and ends those whose access
// has ended: by what the server answers to the report of the sessions (a revoked
// or expired request; a certificate of a target this host does not serve), then by
// what the host knows (a certificate of the installed CA that has expired, unless
// the server just said its request was extended, or that is in the installed KRL;
// an unreadable login key, unless EndUnverifiable is off; an expiry the server gave
// earlier). Logins are reported once, and every session it ends is reported with
// the reason, for the audit log. Without a token, or with the server unreachable,
// it judges sessions locally only.
func (a *Agent) CheckSessions(ctx context.Context) error {
	a.loadLocal(false)
	sessions, err := a.proc.scan()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range sessions {
		seen[s.ID] = true
		t, ok := a.tracked[s.ID]
		if !ok {
			t = &tracked{s: s}
			a.tracked[s.ID] = t
			a.log.Info("ssh session", "session", s.ID, "user", s.User, "source", s.Source, "key", describeKey(s.Key), "auth_error", s.AuthErr)
		} else {
			if t.s.Key != nil && s.Key == nil {
				s.Key, s.KeyLine, s.AuthErr = t.s.Key, t.s.KeyLine, "" // the file went away after the agent read it
			}
			t.s = s
		}
	}
	for id := range a.tracked {
		if !seen[id] {
			delete(a.tracked, id) // logged out
		}
	}

	// The server's verdicts first (they know of revocations before the KRL is
	// installed, and of extensions past a certificate's expiry), then what this
	// host knows, which is all there is when the server cannot be reached.
	var rerr error
	if a.token {
		var verdicts []broker.SSHSessionVerdict
		verdicts, rerr = a.report(ctx)
		for _, v := range verdicts {
			t, ok := a.tracked[v.ID]
			if !ok {
				continue
			}
			t.reported = true
			if v.EndsAt != nil {
				t.endsAt, t.judgedAt = v.EndsAt, a.now()
			}
			if v.Known && v.End {
				a.endSession(v.ID, v.Reason)
			}
		}
	}
	for id, t := range a.tracked {
		if why := a.localVerdict(t); why != "" {
			a.endSession(id, why)
		}
	}
	if rerr != nil {
		return rerr
	}
	if a.token && len(a.unreported) > 0 {
		_, rerr = a.report(ctx) // report the sessions ended now, not an interval later
	}
	return rerr
}

// localVerdict says why a session must end by what this host knows, or "".
func (a *Agent) localVerdict(t *tracked) string {
	now := a.now()
	if t.endsAt != nil && !now.Before(*t.endsAt) {
		return fmt.Sprintf("access ended at %s", t.endsAt.UTC().Format(time.RFC3339))
	}
	if t.s.Key == nil {
		if t.s.AuthErr != "" && *a.cfg.EndUnverifiable {
			return "the session's login key cannot be verified: " + t.s.AuthErr
		}
		return ""
	}
	cert, ok := t.s.Key.(*ssh.Certificate)
	if !ok || a.ca == nil || !bytes.Equal(cert.SignatureKey.Marshal(), a.ca.Marshal()) {
		return ""
	}
	// A certificate's expiry ends its session, unless the server said just now
	// that the request runs longer (it was extended).
	extended := t.endsAt != nil && now.Before(*t.endsAt) && now.Sub(t.judgedAt) <= 3*a.cfg.Interval
	if cert.ValidBefore != ssh.CertTimeInfinity && !now.Before(time.Unix(int64(cert.ValidBefore), 0)) && !extended {
		return fmt.Sprintf("certificate serial %d expired at %s", cert.Serial, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
	}
	if a.krl != nil && a.krl.IsRevoked(cert) {
		return fmt.Sprintf("certificate serial %d is revoked", cert.Serial)
	}
	return ""
}

// endSession ends a tracked session and queues the report of it.
func (a *Agent) endSession(id, why string) {
	t := a.tracked[id]
	if t == nil {
		return
	}
	delete(a.tracked, id)
	if err := a.kill(t.s); err != nil {
		a.log.Error("end ssh session", "session", id, "user", t.s.User, "err", err)
		return // still there: the next check tries again
	}
	a.log.Warn("ended ssh session", "session", id, "user", t.s.User, "source", t.s.Source, "key", describeKey(t.s.Key), "reason", why)
	if len(a.unreported) < maxUnreported {
		a.unreported = append(a.unreported, a.wire(t.s, broker.SessionEnded, why))
	}
}

// report sends the open sessions and the ended ones not yet reported, and
// returns the server's verdicts on the open ones.
func (a *Agent) report(ctx context.Context) ([]broker.SSHSessionVerdict, error) {
	rep := broker.SSHSessionReport{Target: a.cfg.Target, Host: a.cfg.Host}
	for _, t := range a.tracked {
		if t.s.KeyLine == "" {
			continue
		}
		ev := broker.SessionOpen
		if !t.reported {
			ev = broker.SessionOpened
		}
		rep.Sessions = append(rep.Sessions, a.wire(t.s, ev, ""))
	}
	ended := len(a.unreported)
	rep.Sessions = append(rep.Sessions, a.unreported...)
	if len(rep.Sessions) == 0 {
		return nil, nil
	}
	var verdicts []broker.SSHSessionVerdict
	for start := 0; start < len(rep.Sessions); start += 500 {
		part := rep
		part.Sessions = rep.Sessions[start:min(start+500, len(rep.Sessions))]
		out, err := a.client.ReportSSHSessions(ctx, part)
		if err != nil {
			if ajar.ErrorCode(err) == ajar.EFORBIDDEN || ajar.ErrorCode(err) == ajar.EUNAUTH {
				return nil, fmt.Errorf("report sessions: the server refuses this node's token for target %s: %w", a.cfg.Target, err)
			}
			return nil, fmt.Errorf("report sessions: %w", err)
		}
		verdicts = append(verdicts, out.Sessions...)
	}
	a.unreported = a.unreported[ended:]
	return verdicts, nil
}

func (a *Agent) wire(s Session, event, reason string) broker.SSHSession {
	w := broker.SSHSession{ID: s.ID, Event: event, User: s.User, Key: s.KeyLine, Source: s.Source, PID: s.PID, Reason: reason}
	if !s.Started.IsZero() {
		st := s.Started.UTC()
		w.Started = &st
	}
	return w
}

func describeKey(k ssh.PublicKey) string {
	switch k := k.(type) {
	case nil:
		return "none"
	case *ssh.Certificate:
		return fmt.Sprintf("certificate serial %d key id %q", k.Serial, k.KeyId)
	default:
		return ssh.FingerprintSHA256(k)
	}
}

// Keys returns the authorized_keys lines for user from the server, for sshd's
// AuthorizedKeysCommand. Every line must carry an expiry-time option; a line
// without one is dropped, so that no key from ajar is ever accepted for good.
func (a *Agent) Keys(ctx context.Context, user string) ([]string, error) {
	if !a.token {
		return nil, errors.New("no token_file: listing keys needs a node token")
	}
	lines, err := a.client.SSHAuthorizedKeys(ctx, a.cfg.Target, user)
	if err != nil {
		return nil, err
	}
	out := lines[:0]
	for _, l := range lines {
		_, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(l))
		if err != nil || len(bytes.TrimSpace(rest)) > 0 || !hasExpiry(opts) {
			a.log.Warn("dropping an authorized key line without expiry-time from the server")
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

func hasExpiry(opts []string) bool {
	for _, o := range opts {
		if strings.HasPrefix(strings.ToLower(o), "expiry-time=") {
			return true
		}
	}
	return false
}
