package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ajar-dev/ajar/provider/sshcert"
)

// DefaultDropIn is where "ajar node install --apply" writes its sshd_config
// lines. Debian's and Ubuntu's sshd_config include sshd_config.d/*.conf at the
// top, and sshd keeps the first value it reads for a keyword, so these lines win
// over the main file.
const DefaultDropIn = "/etc/ssh/sshd_config.d/ajar.conf"

// InstallOptions say how sshd runs "ajar node principals" (certificate mode)
// and "ajar node keys" (authorized-keys mode).
type InstallOptions struct {
	Binary     string // absolute path of the ajar binary
	ConfigPath string // absolute path of the node config file
	// KeysUser is sshd's AuthorizedPrincipalsCommandUser and
	// AuthorizedKeysCommandUser: an unprivileged user that, in authorized-keys
	// mode, can read the token file.
	KeysUser string
}

// SSHDConfig returns the sshd_config lines for this host.
//
// Certificate mode: sshd trusts ajar's CA (TrustedUserCAKeys) only for the
// principal of this host's target ("ajar node principals", as
// AuthorizedPrincipalsCommand), so a certificate of another target is refused,
// and refuses what ajar revoked (RevokedKeys). Authorized-keys mode: sshd asks
// "ajar node keys" which keys may log in (AuthorizedKeysCommand) and reads no
// authorized_keys file at all. Both log the key of every accepted login
// (LogLevel VERBOSE), which the agent reads from Config.AuthLog.
func SSHDConfig(cfg *Config, o InstallOptions) (string, error) {
	for _, p := range []struct{ name, v string }{{"ca_file", cfg.CAFile}, {"krl_file", cfg.KRLFile}} {
		if !filepath.IsAbs(p.v) || strings.ContainsAny(p.v, " \t\r\n\"") {
			return "", fmt.Errorf("%s %q must be an absolute path without spaces for sshd", p.name, p.v)
		}
	}
	var b strings.Builder
	b.WriteString("# Written by \"ajar node install\" for target " + cfg.Target + ". Do not edit: rerun it.\n")
	b.WriteString("# The ajar host agent (ajar node run) keeps the two files current and ends\n")
	b.WriteString("# sessions whose access ended, using the login key sshd logs for each session.\n")
	if !filepath.IsAbs(o.Binary) || !filepath.IsAbs(o.ConfigPath) {
		return "", errors.New("the ajar binary and the node config need absolute paths for sshd's commands")
	}
	if strings.ContainsAny(o.Binary+o.ConfigPath, " \t\r\n\"%") {
		return "", errors.New("the ajar binary and node config paths must not contain spaces, quotes or '%'")
	}
	if o.KeysUser == "" || strings.ContainsAny(o.KeysUser, " \t\r\n\"%") {
		return "", errors.New("the command user (--keys-user) must be a user name")
	}
	if !sshcert.ValidTarget(cfg.Target) {
		return "", fmt.Errorf("target %q is not a target name", cfg.Target)
	}
	if cfg.Mode == ModeAuthorizedKeys {
		b.WriteString("# Authorized-keys mode: keys come only from ajar, each with an expiry-time;\n")
		b.WriteString("# no authorized_keys file is read (standing keys stop working).\n")
		b.WriteString("AuthorizedKeysFile none\n")
		fmt.Fprintf(&b, "AuthorizedKeysCommand %s node keys --config %s %%u\n", o.Binary, o.ConfigPath)
		fmt.Fprintf(&b, "AuthorizedKeysCommandUser %s\n", o.KeysUser)
	} else {
		fmt.Fprintf(&b, "TrustedUserCAKeys %s\n", cfg.CAFile)
		b.WriteString("# A certificate logs in as USER only with the principal ajar-target:" + cfg.Target + ":USER.\n")
		fmt.Fprintf(&b, "AuthorizedPrincipalsCommand %s node principals --target %s %%u\n", o.Binary, cfg.Target)
		fmt.Fprintf(&b, "AuthorizedPrincipalsCommandUser %s\n", o.KeysUser)
	}
	fmt.Fprintf(&b, "RevokedKeys %s\n", cfg.KRLFile)
	b.WriteString("# The agent ties sessions to the key sshd logs for each accepted login.\n")
	b.WriteString("LogLevel VERBOSE\n")
	return b.String(), nil
}

// ApplyDropIn writes text to the drop-in file and checks sshd's whole config with
// "sshd -t" (sshdConfig names the main file; "" for sshd's default). If the check
// fails, the previous drop-in is put back (or the new one removed), so a broken
// line never reaches a running sshd's next reload.
func ApplyDropIn(dropIn, text, sshd, sshdConfig string) error {
	old, err := os.ReadFile(dropIn)
	existed := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if existed && bytes.Equal(old, []byte(text)) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		return err
	}
	if err := WriteFileAtomic(dropIn, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", dropIn, err)
	}
	if sshd == "" {
		return nil
	}
	args := []string{"-t"}
	if sshdConfig != "" {
		args = append(args, "-f", sshdConfig)
	}
	out, err := exec.Command(sshd, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	var rerr error
	if existed {
		rerr = WriteFileAtomic(dropIn, old, 0o644)
	} else {
		rerr = os.Remove(dropIn)
	}
	return errors.Join(fmt.Errorf("sshd -t refused the config, %s left as it was: %v\n%s", dropIn, err, bytes.TrimSpace(out)), rerr)
}
