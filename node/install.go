package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultDropIn is where "ajar node install --apply" writes its sshd_config
// lines. Debian's and Ubuntu's sshd_config include sshd_config.d/*.conf at the
// top, and sshd keeps the first value it reads for a keyword, so these lines win
// over the main file.
const DefaultDropIn = "/etc/ssh/sshd_config.d/ajar.conf"

// InstallOptions say how sshd runs "ajar node keys" in authorized-keys mode.
type InstallOptions struct {
	Binary     string // absolute path of the ajar binary
	ConfigPath string // absolute path of the node config file
	// KeysUser is sshd's AuthorizedKeysCommandUser: an unprivileged user that can
	// read the token file.
	KeysUser string
}

// SSHDConfig returns the sshd_config lines for this host.
//
// Certificate mode: sshd trusts ajar's CA (TrustedUserCAKeys), refuses what ajar
// revoked (RevokedKeys) and exposes each session's login key to the agent
// (ExposeAuthInfo). Authorized-keys mode: sshd asks "ajar node keys" which keys
// may log in (AuthorizedKeysCommand) and reads no authorized_keys file at all.
func SSHDConfig(cfg *Config, o InstallOptions) (string, error) {
	for _, p := range []struct{ name, v string }{{"ca_file", cfg.CAFile}, {"krl_file", cfg.KRLFile}} {
		if !filepath.IsAbs(p.v) || strings.ContainsAny(p.v, " \t\r\n\"") {
			return "", fmt.Errorf("%s %q must be an absolute path without spaces for sshd", p.name, p.v)
		}
	}
	var b strings.Builder
	b.WriteString("# Written by \"ajar node install\" for target " + cfg.Target + ". Do not edit: rerun it.\n")
	b.WriteString("# The ajar host agent (ajar node run) keeps the two files current and ends\n")
	b.WriteString("# sessions whose access ended, using the login key sshd exposes to each session.\n")
	if cfg.Mode == ModeAuthorizedKeys {
		if !filepath.IsAbs(o.Binary) || !filepath.IsAbs(o.ConfigPath) {
			return "", errors.New("the ajar binary and the node config need absolute paths for AuthorizedKeysCommand")
		}
		if strings.ContainsAny(o.Binary+o.ConfigPath, " \t\r\n\"%") {
			return "", errors.New("the ajar binary and node config paths must not contain spaces, quotes or '%'")
		}
		if o.KeysUser == "" || strings.ContainsAny(o.KeysUser, " \t\r\n") {
			return "", errors.New("AuthorizedKeysCommandUser must be a user name")
		}
		b.WriteString("# Authorized-keys mode: keys come only from ajar, each with an expiry-time;\n")
		b.WriteString("# no authorized_keys file is read (standing keys stop working).\n")
		b.WriteString("AuthorizedKeysFile none\n")
		fmt.Fprintf(&b, "AuthorizedKeysCommand %s node keys --config %s %%u\n", o.Binary, o.ConfigPath)
		fmt.Fprintf(&b, "AuthorizedKeysCommandUser %s\n", o.KeysUser)
	} else {
		fmt.Fprintf(&b, "TrustedUserCAKeys %s\n", cfg.CAFile)
	}
	fmt.Fprintf(&b, "RevokedKeys %s\n", cfg.KRLFile)
	b.WriteString("ExposeAuthInfo yes\n")
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
