package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/provider/sshcert"
	"github.com/ajar-dev/ajar/sshhost/wire"
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
	// sweep ends the processes of uid left behind by ended sessions
	// (procFS.leftovers), and says how many there were.
	sweep func(uid int, since time.Time) (int, error)

	krlETag string
	// The installed CA and KRL, as last read from their files, for judging
	// sessions without the server.
	ca      ssh.PublicKey
	krl     *sshcert.KRL
	revoked map[uint64]bool // the KRL's serials for ca
	caRaw   []byte
	krlRaw  []byte
	tracked map[string]*tracked
	// unreported holds sessions the agent ended that the server has not been
	// told about yet.
	unreported []wire.SSHSession

	authLog *authLog
	check   int       // how many checks ran: the generation of log lines
	lastLog time.Time // when sshd's log was last read
	// lines are the accepted logins from sshd's log not yet tied to a
	// session, by the client's address and port.
	lines map[netip.AddrPort][]logLine
	// logins are the logins ajar's certificates were used for, by uid: their
	// processes must end when no active grant covers them.
	logins map[int]*loginState
}

// logLine is an accepted login read from sshd's log.
type logLine struct {
	acc   Accepted
	check int // the check that read it
	at    time.Time
	// up is the time since boot, in clock ticks, taken just after the read
	// that found it: the clock of processes' start times (Session.start), so
	// the line was written no later than up. 0 when /proc/uptime could not be
	// read.
	up uint64
}

// loginState is what the agent knows of one login's use through ajar.
type loginState struct {
	user string
	// since is when the first of its ajar sessions began (or no later than
	// that): processes of the login started before it are not the sessions'.
	since time.Time
	// grants are the certificates it logged in with, by serial.
	grants map[uint64]*grantState
}

// grantState is what the server last said about a certificate's request.
type grantState struct {
	acc    Accepted
	endsAt *time.Time
	ended  bool
}

// tracked is what the agent remembers of a session between checks.
type tracked struct {
	s         Session
	firstSeen time.Time
	check     int        // the check that first saw it
	reported  bool       // the server has recorded its login
	judged    bool       // the server has given a verdict on it
	known     bool       // the server says ajar issued its key
	endsAt    *time.Time // from the server: when its request's access ends
	judgedAt  time.Time  // when the server last said so
	// unverifiable says why the session cannot be tied to a login in sshd's log.
	unverifiable string
}

// maxUnreported bounds the ended sessions kept for a server that is down.
const maxUnreported = 1000

// maxLinesPerAddr and maxLineAddrs bound the log lines kept for sessions not
// tied yet (anyone may write lines into a syslog file).
const (
	maxLinesPerAddr = 16
	maxLineAddrs    = 100000
)

// unboundGrace is how long a session may go without a line in sshd's log
// naming its login (syslog daemons write with some delay) before it counts as
// unverifiable.
const unboundGrace = 10 * time.Second

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
	if err := CheckServerURL(cfg.Server); err != nil {
		return nil, fmt.Errorf("node config: server %w", err)
	}
	a := &Agent{cfg: cfg, log: opts.Logger, now: opts.Now, proc: procFS{root: opts.ProcRoot, ports: cfg.SSHPorts},
		client: opts.Client, token: tok != "", tracked: map[string]*tracked{},
		authLog: &authLog{path: cfg.AuthLog}, lines: map[netip.AddrPort][]logLine{}, logins: map[int]*loginState{}}
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
	a.sweep = func(uid int, since time.Time) (int, error) {
		n := 0
		err := a.proc.kill(func(procs map[int]proc) map[int]bool {
			pids := a.proc.leftovers(procs, uid, since)
			n = max(n, len(pids))
			return pids
		})
		return n, err
	}
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
// installed files as they are, and sessions are still judged by the installed
// KRL and the expiries the server gave. It returns an error at once if sshd's
// log (Config.AuthLog) cannot be read: without it no session can be tied to
// its key.
func (a *Agent) Run(ctx context.Context, acceptNewCA bool) error {
	if f, err := os.Open(a.cfg.AuthLog); err != nil {
		return fmt.Errorf("sshd's log (auth_log in the node config): %w", err)
	} else {
		f.Close()
	}
	a.log.Info("ajar node agent running", "target", a.cfg.Target, "host", a.cfg.Host, "interval", a.cfg.Interval,
		"ca_file", a.cfg.CAFile, "krl_file", a.cfg.KRLFile, "auth_log", a.cfg.AuthLog)
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
				a.log.Error("check sessions (sessions are still judged by the installed KRL)", "err", err)
			}
			checkOK = false
		} else if !checkOK {
			a.log.Info("session checks work again")
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
	changed := false
	if b, err := os.ReadFile(a.cfg.CAFile); err == nil && (force || !bytes.Equal(b, a.caRaw)) {
		if k, err := parseCA(b); err == nil {
			a.ca, a.caRaw, changed = k, b, true
		}
	}
	if b, err := os.ReadFile(a.cfg.KRLFile); err == nil && (force || !bytes.Equal(b, a.krlRaw)) {
		if k, err := sshcert.ParseKRL(b); err == nil {
			a.krl, a.krlRaw, changed = k, b, true
		}
	}
	if changed && a.krl != nil && a.ca != nil {
		a.revoked = map[uint64]bool{}
		for _, s := range a.krl.Serials(a.ca) {
			a.revoked[s] = true
		}
	}
}

// ours reports whether an accepted login used a certificate of the installed CA.
func (a *Agent) ours(acc *Accepted) bool {
	return acc != nil && acc.Cert() && a.ca != nil && acc.CAFingerprint == ssh.FingerprintSHA256(a.ca)
}

// CheckSessions looks at the SSH sessions open now and ends those whose access
// has ended. It finds them from sshd's privileged side (see Session) and ties
// each to the key sshd logged for its login; a session it cannot tie is ended
// (unless EndUnverifiable is off). It ends sessions by what the server answers to
// the report of the sessions (a revoked or expired request; a certificate of
// another target or one ajar has no record of), then by what the host knows (a
// certificate in the installed KRL; an expiry the server gave earlier; a login in
// Config.Logins that no ajar grant covers). When no active grant covers a login
// that ajar's certificates were used for, every process of that login started
// since is ended, also those that left their session (setsid, nohup). Logins
// are reported once, and every session it ends is reported with the reason, for
// the audit log. Without a token, or with the server unreachable, it judges
// sessions locally only.
func (a *Agent) CheckSessions(ctx context.Context) error {
	a.loadLocal(false)
	a.check++
	now := a.now()
	accs, logErr := a.authLog.read()
	up, upErr := a.proc.uptime() // after the read: every line read was written by then
	if upErr != nil {
		up = 0 // bind falls back to counting checks
	}
	prevLog := a.lastLog
	a.lastLog = now
	for _, acc := range accs {
		if ls := a.lines[acc.Remote]; len(ls) >= maxLinesPerAddr {
			a.lines[acc.Remote] = ls[1:]
		}
		if len(a.lines) >= maxLineAddrs {
			a.lines = map[netip.AddrPort][]logLine{} // a flood of lines: start over; sessions not tied yet wait for their next line or end
		}
		a.lines[acc.Remote] = append(a.lines[acc.Remote], logLine{acc: acc, check: a.check, at: now, up: up})
		// A login made while the agent runs: its processes start after the
		// previous read of the log, which did not have the line yet.
		if a.check > 1 && a.ours(&acc) {
			a.noteLogin(acc, prevLog)
		}
	}
	sessions, _, err := a.proc.scan()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range sessions {
		seen[s.ID] = true
		t, ok := a.tracked[s.ID]
		if !ok {
			t = &tracked{s: s, firstSeen: now, check: a.check}
			a.tracked[s.ID] = t
		} else {
			s.Login = t.s.Login
			t.s = s
		}
		if t.s.Login == nil && t.unverifiable == "" {
			a.bind(t, now, logErr == nil)
		}
	}
	for id, t := range a.tracked {
		if !seen[id] {
			delete(a.tracked, id) // logged out
			delete(a.lines, t.s.Remote)
		}
	}
	for addr, ls := range a.lines { // lines of connections that came and went
		ls = slices.DeleteFunc(ls, func(l logLine) bool { return now.Sub(l.at) > 10*time.Minute && l.check < a.check-1 })
		if len(ls) == 0 {
			delete(a.lines, addr)
		} else {
			a.lines[addr] = ls
		}
	}

	// The server's verdicts first (they know of revocations before the KRL is
	// installed, and of extensions), then what this host knows, which is all
	// there is when the server cannot be reached.
	var rerr error
	if a.token {
		var verdicts []wire.SSHSessionVerdict
		verdicts, rerr = a.report(ctx)
		for _, v := range verdicts {
			if g := a.grantOf(v.ID); g != nil {
				g.endsAt, g.ended = v.EndsAt, v.End
				continue
			}
			t, ok := a.tracked[v.ID]
			if !ok {
				continue
			}
			t.reported, t.judged, t.known = true, true, v.Known
			if v.EndsAt != nil {
				t.endsAt, t.judgedAt = v.EndsAt, a.now()
			}
			if t.s.Login != nil && v.Known && v.Serial != 0 {
				if g := a.grant(t.s); g != nil {
					g.endsAt, g.ended = v.EndsAt, v.End
				}
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
	a.sweepLogins()
	if rerr != nil {
		return rerr
	}
	if logErr != nil {
		return logErr
	}
	if a.token && len(a.unreported) > 0 {
		_, rerr = a.report(ctx) // report the sessions ended now, not an interval later
	}
	return rerr
}

// bind ties a session to the line of sshd's log that accepted its login: the
// one line naming its client address, port and user that was read after the
// session's sshd monitor process started. sshd starts the monitor when the
// connection comes in, before the login, and writes the line after the login,
// so a line read before the monitor started is of an earlier connection (or
// forged ahead of it); how long sshd then takes to start the session's
// processes, and so how many checks pass before the session is seen, does not
// matter. Without the time since boot (/proc/uptime), a line counts when read
// at the check before the one that first saw the session or later. Lines read
// at the agent's start are older than every check, and the newest is taken.
// Two candidate lines make the session unverifiable (a line forged into the
// log, say through logger(1), cannot pass for the real one); so does no line
// within unboundGrace, when the log could be read.
func (a *Agent) bind(t *tracked, now time.Time, logOK bool) {
	var cands []Accepted
	for _, l := range a.lines[t.s.Remote] {
		if l.acc.User == t.s.User && (t.check == 1 || readSince(l, t)) {
			cands = append(cands, l.acc)
		}
	}
	switch {
	case !t.s.Remote.IsValid():
		if now.Sub(t.firstSeen) >= unboundGrace {
			t.unverifiable = "its connection's address is unknown"
		}
		return
	case len(cands) > 1 && t.check > 1:
		t.unverifiable = "sshd's log names more than one login for its connection"
		return
	case len(cands) == 0:
		if logOK && a.check-t.check >= 2 && now.Sub(t.firstSeen) >= unboundGrace {
			t.unverifiable = fmt.Sprintf("no line of sshd's log (%s) names its login", a.cfg.AuthLog)
		}
		return
	}
	acc := cands[len(cands)-1]
	t.s.Login = &acc
	delete(a.lines, t.s.Remote)
	a.log.Info("ssh session", "session", t.s.ID, "user", t.s.User, "source", t.s.Source, "key", describeLogin(&acc))
	if a.ours(&acc) {
		a.noteLogin(acc, t.s.Started)
	}
}

// readSince reports whether a log line was read after t's sshd monitor
// started, so that it can be the line of t's login (see bind).
func readSince(l logLine, t *tracked) bool {
	if l.up != 0 && t.s.start != 0 {
		return l.up >= t.s.start
	}
	return l.check >= t.check-1
}

// noteLogin remembers that a certificate of ajar's CA logged in as acc.User, so
// that the login's processes end with the grants.
func (a *Agent) noteLogin(acc Accepted, since time.Time) {
	u, err := user.Lookup(acc.User)
	if err != nil {
		return
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return
	}
	if uid == 0 {
		// root's processes cannot be told apart from the system's, and a root
		// session can stop the agent anyway: its sessions are ended, not swept.
		return
	}
	st := a.logins[uid]
	if st == nil {
		st = &loginState{user: acc.User, since: since, grants: map[uint64]*grantState{}}
		a.logins[uid] = st
	}
	if since.Before(st.since) {
		st.since = since
	}
	if st.grants[acc.Serial] == nil {
		st.grants[acc.Serial] = &grantState{acc: acc}
	}
}

// grant returns the grant state of a session's certificate, or nil.
func (a *Agent) grant(s Session) *grantState {
	if st := a.logins[s.UID]; st != nil && s.Login != nil {
		return st.grants[s.Login.Serial]
	}
	return nil
}

// grantOf returns the grant state a report ID "grant-UID-SERIAL" names, or nil.
func (a *Agent) grantOf(id string) *grantState {
	rest, ok := strings.CutPrefix(id, "grant-")
	if !ok {
		return nil
	}
	u, s, _ := strings.Cut(rest, "-")
	uid, err1 := strconv.Atoi(u)
	serial, err2 := strconv.ParseUint(s, 10, 64)
	if err1 != nil || err2 != nil || a.logins[uid] == nil {
		return nil
	}
	return a.logins[uid].grants[serial]
}

// sweepLogins ends what logins left behind once no active grant covers them:
// every process of the login started since its first ajar session that runs
// outside sshd's connections (those are judged on their own).
func (a *Agent) sweepLogins() {
	now := a.now()
	for uid, st := range a.logins {
		covered := false
		for _, t := range a.tracked {
			if t.s.UID == uid && a.ours(t.s.Login) {
				covered = true // its own verdicts end it, and then this login
			}
		}
		for serial, g := range st.grants {
			if !g.ended && g.endsAt != nil && now.Before(*g.endsAt) && !a.revoked[serial] {
				covered = true
			}
		}
		if covered {
			continue
		}
		n, err := a.sweep(uid, st.since)
		if err != nil {
			a.log.Error("end processes left behind by an ssh login", "user", st.user, "err", err)
			continue
		}
		if n > 0 {
			a.log.Warn("ended processes left behind by ssh logins: no active grant covers the login", "user", st.user, "processes", n)
			continue // look again at the next check
		}
		delete(a.logins, uid)
	}
}

// localVerdict says why a session must end by what this host knows, or "".
func (a *Agent) localVerdict(t *tracked) string {
	now := a.now()
	if t.endsAt != nil && !now.Before(*t.endsAt) {
		return fmt.Sprintf("access ended at %s", t.endsAt.UTC().Format(time.RFC3339))
	}
	acc := t.s.Login
	if acc == nil {
		if t.unverifiable != "" && *a.cfg.EndUnverifiable {
			return "the session cannot be tied to its login: " + t.unverifiable
		}
		return ""
	}
	if a.ours(acc) && a.revoked[acc.Serial] {
		return fmt.Sprintf("certificate serial %d is revoked", acc.Serial)
	}
	if slices.Contains(a.cfg.Logins, t.s.User) && !a.ours(acc) && t.judged && !t.known {
		return fmt.Sprintf("login %s is only for ajar grants, and ajar did not issue the key it used", t.s.User)
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
	delete(a.lines, t.s.Remote)
	if err := a.kill(t.s); err != nil {
		a.log.Error("end ssh session", "session", id, "user", t.s.User, "err", err)
		return // still there: the next check tries again
	}
	a.log.Warn("ended ssh session", "session", id, "user", t.s.User, "source", t.s.Source, "key", describeLogin(t.s.Login), "reason", why)
	if len(a.unreported) < maxUnreported {
		a.unreported = append(a.unreported, a.wire(t.s, wire.SessionEnded, why))
	}
}

// report sends the open sessions, the certificates of logins whose sessions
// are gone (to learn whether their grants still cover the login) and the ended
// sessions not yet reported, and returns the server's verdicts.
func (a *Agent) report(ctx context.Context) ([]wire.SSHSessionVerdict, error) {
	rep := wire.SSHSessionReport{Target: a.cfg.Target, Host: a.cfg.Host}
	live := map[uint64]bool{}
	for _, t := range a.tracked {
		if t.s.Login == nil || t.s.Login.Fingerprint == "" {
			continue
		}
		live[t.s.Login.Serial] = true
		ev := wire.SessionOpen
		if !t.reported {
			ev = wire.SessionOpened
		}
		rep.Sessions = append(rep.Sessions, a.wire(t.s, ev, ""))
	}
	for uid, st := range a.logins {
		for serial, g := range st.grants {
			if !live[serial] && !g.ended {
				w := wireLogin(&g.acc)
				w.ID, w.Event, w.User = fmt.Sprintf("grant-%d-%d", uid, serial), wire.SessionOpen, st.user
				rep.Sessions = append(rep.Sessions, w)
			}
		}
	}
	ended := len(a.unreported)
	rep.Sessions = append(rep.Sessions, a.unreported...)
	if len(rep.Sessions) == 0 {
		return nil, nil
	}
	var verdicts []wire.SSHSessionVerdict
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

// wireLogin is the key part of a session report for an accepted login.
func wireLogin(acc *Accepted) wire.SSHSession {
	return wire.SSHSession{Fingerprint: acc.Fingerprint, Serial: acc.Serial, KeyID: acc.KeyID, CA: acc.CAFingerprint}
}

func (a *Agent) wire(s Session, event, reason string) wire.SSHSession {
	var w wire.SSHSession
	if s.Login != nil {
		w = wireLogin(s.Login)
	}
	w.ID, w.Event, w.User, w.Source, w.PID, w.Reason = s.ID, event, s.User, s.Source, s.PID, reason
	if !s.Started.IsZero() {
		st := s.Started.UTC()
		w.Started = &st
	}
	return w
}

func describeLogin(acc *Accepted) string {
	switch {
	case acc == nil:
		return "unknown"
	case acc.Cert():
		return fmt.Sprintf("certificate serial %d key id %q", acc.Serial, acc.KeyID)
	case acc.Fingerprint != "":
		return acc.Fingerprint
	default:
		return acc.Method
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
