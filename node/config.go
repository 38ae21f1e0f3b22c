// Package node is ajar's host agent for SSH targets ("ajar node"). On each SSH
// host it keeps sshd's view of ajar current and ends access that ajar ended:
//
//   - Sync fetches the CA public key and the revocation list (KRL) from the
//     server and writes them, atomically, to the files sshd reads
//     (TrustedUserCAKeys, RevokedKeys). When the server cannot be reached the
//     last good files stay, and each certificate's own expiry still closes
//     access.
//   - CheckSessions finds the open SSH sessions from sshd's privileged monitor
//     processes and ties each to the key sshd logged for its login (AuthLog),
//     reports logins to the server for the audit log, and ends the sessions
//     whose access ended: revoked certificates and expiries the server gave
//     (judged locally, even offline), whatever the server says has ended, and
//     sessions it cannot tie to their login. Once no active grant covers a
//     login, the processes it left behind (setsid, nohup) end too.
//   - "ajar node principals" answers sshd's AuthorizedPrincipalsCommand: a certificate logs
//     in only with its target's principal, so no other target's certificate
//     opens this host.
//   - Keys answers sshd's AuthorizedKeysCommand for targets in authorized-keys
//     mode, printing only the keys the server says are active now.
//
// The agent runs as root (it writes sshd's files and ends other users'
// processes); Keys runs as sshd's AuthorizedKeysCommandUser.
package node

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider/sshcert"
)

// DefaultConfigPath is where the agent looks for its config file.
const DefaultConfigPath = "/etc/ajar/node.yaml"

// Defaults of Config.
const (
	DefaultCAFile   = "/etc/ssh/ajar_ca.pub"
	DefaultKRLFile  = "/etc/ssh/ajar_revoked.krl"
	DefaultInterval = 2 * time.Second
	DefaultAuthLog  = "/var/log/auth.log"
)

// Config is the agent's config file, for example
//
//	server: https://ajar.example.com
//	target: prod-web
//	token_file: /etc/ajar/node.token
//
// Relative paths are relative to the config file's directory.
type Config struct {
	// Server is the ajar server's URL. Required.
	Server string `yaml:"server"`
	// Target is the ajar target this host belongs to. Required.
	Target string `yaml:"target"`
	// TokenFile holds the API token of a user listed in the target's "nodes".
	// It is needed to report sessions and, in authorized-keys mode, to list keys;
	// the CA and the KRL are public. It must not be readable by others.
	TokenFile string `yaml:"token_file"`
	// Host is the name this host reports (default: its host name).
	Host string `yaml:"host"`
	// Mode is the target's mode, "certificate" (default) or "authorized-keys":
	// it decides which sshd_config lines "ajar node install" writes.
	Mode string `yaml:"mode"`
	// CAFile is sshd's TrustedUserCAKeys file (default DefaultCAFile).
	CAFile string `yaml:"ca_file"`
	// KRLFile is sshd's RevokedKeys file (default DefaultKRLFile).
	KRLFile string `yaml:"krl_file"`
	// Interval is how often "ajar node run" syncs and checks sessions (default
	// 2s). Sessions of ended access end within about one interval.
	Interval time.Duration `yaml:"interval"`
	// EndUnverifiable ends sessions that cannot be tied to a line of AuthLog
	// naming the key they logged in with (default true).
	EndUnverifiable *bool `yaml:"end_unverifiable"`
	// AuthLog is the file sshd logs accepted logins to (LogLevel VERBOSE): the
	// agent ties each session to the key or certificate sshd accepted for it
	// from the "Accepted publickey for USER from ADDR port PORT ..." line
	// (default DefaultAuthLog, where Debian's and Ubuntu's rsyslog put sshd's
	// log; /var/log/secure on RHEL; a file sshd writes itself with -E FILE).
	AuthLog string `yaml:"auth_log"`
	// Logins are logins only ajar grants may use on this host: a session of one
	// of them that cannot be tied to an active ajar grant is ended, whatever key
	// it logged in with.
	Logins []string `yaml:"logins"`
	// SSHPorts are the ports the host's sshd listens on (default [22]): the
	// agent judges the connections to them and leaves other sshd instances'
	// connections alone (a second sshd for another purpose, or, in ajar's own
	// tests, several on one machine).
	SSHPorts []uint16 `yaml:"ssh_ports"`
}

// Modes of Config.Mode, as in the ssh-cert provider's target config.
const (
	ModeCertificate    = "certificate"
	ModeAuthorizedKeys = "authorized-keys"
)

// LoadConfig reads and validates the config file at path, and fills in defaults.
// Every problem is reported at once, as ajar.Problems.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("node config %s: %w", path, err)
	}
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("node config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&cfg.TokenFile, &cfg.CAFile, &cfg.KRLFile, &cfg.AuthLog} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if probs := cfg.Validate(); len(probs) > 0 {
		return nil, fmt.Errorf("node config %s: %w", path, probs)
	}
	return &cfg, nil
}

func (c *Config) setDefaults() error {
	if c.CAFile == "" {
		c.CAFile = DefaultCAFile
	}
	if c.KRLFile == "" {
		c.KRLFile = DefaultKRLFile
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Mode == "" {
		c.Mode = ModeCertificate
	}
	if c.AuthLog == "" {
		c.AuthLog = DefaultAuthLog
	}
	if len(c.SSHPorts) == 0 {
		c.SSHPorts = []uint16{22}
	}
	if c.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node config: host is not set and the host name is unknown: %w", err)
		}
		c.Host = h
	}
	if c.EndUnverifiable == nil {
		t := true
		c.EndUnverifiable = &t
	}
	return nil
}

// Validate returns every problem with c, with field names as in the file.
func (c *Config) Validate() ajar.Problems {
	var probs ajar.Problems
	add := func(field, format string, args ...any) {
		probs = append(probs, ajar.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if err := CheckServerURL(c.Server); err != nil {
		add("server", "%s", err)
	}
	if strings.TrimSpace(c.Target) == "" {
		add("target", "required: the ajar target this host belongs to")
	}
	if c.Host == "" || len(c.Host) > 255 || strings.ContainsAny(c.Host, " \t\r\n") {
		add("host", "must be a host name without spaces")
	}
	switch c.Mode {
	case ModeCertificate, ModeAuthorizedKeys:
	default:
		add("mode", "must be %q or %q, not %q", ModeCertificate, ModeAuthorizedKeys, c.Mode)
	}
	if c.CAFile == c.KRLFile {
		add("krl_file", "must differ from ca_file")
	}
	if c.Interval < 100*time.Millisecond || c.Interval > time.Hour {
		add("interval", "must be between 100ms and 1h, got %s", c.Interval)
	}
	for i, l := range c.Logins {
		if !sshcert.ValidLogin(l) {
			add(fmt.Sprintf("logins[%d]", i), "%q is not a user name", l)
		}
	}
	for i, p := range c.SSHPorts {
		if p == 0 {
			add(fmt.Sprintf("ssh_ports[%d]", i), "must be a TCP port, not 0")
		}
	}
	if c.Mode == ModeAuthorizedKeys && c.TokenFile == "" {
		add("token_file", "required in authorized-keys mode: listing keys needs a node token")
	}
	return probs
}

// CheckServerURL returns why u cannot be the agent's server URL, or nil. It must
// be https://, or http:// to a loopback address (a server on this host): the
// agent fetches the CA that sshd trusts and the revocation list, and sends its
// token, so none of it may cross a network in clear or unauthenticated.
func CheckServerURL(u string) error {
	if u == "" {
		return errors.New("required: the ajar server's URL, such as https://ajar.example.com")
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil || p.RawQuery != "" || p.Fragment != "" {
		return fmt.Errorf("must be an https:// URL, got %q", u)
	}
	if p.Scheme == "http" && !isLoopback(p.Hostname()) {
		return fmt.Errorf("must be https:// (http:// only to a loopback address such as 127.0.0.1): the CA, the revocation list and the node token must not cross the network in clear, got %q", u)
	}
	return nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// Token reads the API token from TokenFile, or returns "" when there is none. A
// token file that others may read or anyone but its owner may write is refused.
func (c *Config) Token() (string, error) {
	if c.TokenFile == "" {
		return "", nil
	}
	f, err := os.Open(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("token file %s is not a regular file", c.TokenFile)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return "", fmt.Errorf("token file %s has mode %#o: it must not be writable by its group or readable by others (chmod 640)", c.TokenFile, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("token file %s does not hold one token", c.TokenFile)
	}
	return tok, nil
}
