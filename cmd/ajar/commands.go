package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

func newWhoAmICmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the server thinks you are: user, groups, server, when your session ends",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			id, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			if out == outputJSON {
				if id.Groups == nil {
					id.Groups = []string{}
				}
				return writeJSON(e.stdout, id)
			}
			groups := make([]string, len(id.Groups))
			for i, g := range id.Groups {
				groups[i] = clean(g)
			}
			tw := newTable(e.stdout)
			fmt.Fprintf(tw, "User:\t%s\n", clean(id.ID))
			fmt.Fprintf(tw, "Groups:\t%s\n", orDash(strings.Join(groups, ", ")))
			fmt.Fprintf(tw, "Admin:\t%t\n", id.Admin)
			fmt.Fprintf(tw, "Server:\t%s\n", clean(c.BaseURL))
			if s := id.Session; s != nil {
				fmt.Fprintf(tw, "Session:\t%s (%s)\n", clean(s.ID), clean(s.Kind))
				fmt.Fprintf(tw, "Session ends:\t%s\n", e.fmtTime(s.ExpiresAt))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newTargetsCmd(e *cliEnv) *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "targets",
		Short: "List the targets you may request, their limits and approvers",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(true)
			if err != nil {
				return err
			}
			targets, err := c.Targets(cmd.Context())
			if err != nil {
				return err
			}
			return e.printTargets(targets, out)
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

// maxPublicKeyFile bounds what ssh-cert reads from --public-key.
const maxPublicKeyFile = 16 << 10

func newSSHCertCmd(e *cliEnv) *cobra.Command {
	var (
		keyFile, outFile string
		out              outputFormat
	)
	cmd := &cobra.Command{
		Use:   "ssh-cert ID --public-key FILE [--out FILE]",
		Short: "Get an OpenSSH certificate for an active request",
		Long: `Get an OpenSSH user certificate for your public key, valid until the request's access
ends. The certificate goes to --out (mode 0644), or to stdout.`,
		Example: `  ajar ssh-cert r_123 --public-key ~/.ssh/id_ed25519.pub --out ~/.ssh/id_ed25519-cert.pub`,
		Args:    argNames("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return usageErrorf("--public-key", "is required: the .pub file of the key to certify")
			}
			if outFile != "" && filepath.Clean(outFile) == filepath.Clean(keyFile) {
				return usageErrorf("--out", "must not be the public key file")
			}
			if outFile != "" {
				// Check where the certificate goes before one is issued for nothing.
				if fi, err := os.Stat(filepath.Dir(outFile)); err != nil || !fi.IsDir() {
					return usageErrorf("--out", "directory %s does not exist", filepath.Dir(outFile))
				}
			}
			key, err := readPublicKey(keyFile)
			if err != nil {
				return err
			}
			c, err := e.client(true)
			if err != nil {
				return err
			}
			res, err := c.IssueSSHCert(cmd.Context(), args[0], key)
			if err != nil {
				return err
			}
			if res.Certificate == "" {
				// An authorized-keys target: the key itself is let in; there is no certificate to write.
				fmt.Fprintf(e.stderr, "key %s authorized for %s until %s (%s); the target's hosts take it as it is, no certificate\n",
					clean(res.Info.Fingerprint), clean(strings.Join(res.Info.Principals, ",")),
					e.fmtTime(res.Info.ValidBefore), relative(res.Info.ValidBefore, e.now()))
				if out == outputJSON {
					return writeJSON(e.stdout, res)
				}
				return nil
			}
			line := strings.TrimRight(res.Certificate, "\r\n") + "\n"
			if outFile != "" {
				if err := writeFileAtomic(outFile, []byte(line), 0o644); err != nil {
					return fmt.Errorf("write certificate: %w", err)
				}
			}
			info := res.Info
			fmt.Fprintf(e.stderr, "certificate serial %d for %s, key id %s, valid until %s (%s)\n",
				info.Serial, clean(strings.Join(info.Principals, ",")), clean(info.KeyID),
				e.fmtTime(info.ValidBefore), relative(info.ValidBefore, e.now()))
			if outFile != "" {
				fmt.Fprintf(e.stderr, "wrote %s\n", outFile)
			}
			switch {
			case out == outputJSON:
				return writeJSON(e.stdout, res)
			case outFile == "":
				_, err := io.WriteString(e.stdout, line)
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "public-key", "", "OpenSSH public key file to certify, such as ~/.ssh/id_ed25519.pub (required)")
	cmd.Flags().StringVar(&outFile, "out", "", "write the certificate here (default stdout), such as ~/.ssh/id_ed25519-cert.pub")
	addOutputFlag(cmd, &out)
	return cmd
}

// readPublicKey reads and checks an OpenSSH public key file, returning the key in
// authorized_keys format. It refuses a private key, so one is never sent anywhere.
func readPublicKey(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, usageErrorf("--public-key", "cannot read %s: %v", name, unwrapPathError(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPublicKeyFile+1))
	if err != nil {
		return nil, usageErrorf("--public-key", "cannot read %s: %v", name, unwrapPathError(err))
	}
	if len(b) > maxPublicKeyFile {
		return nil, usageErrorf("--public-key", "%s is larger than %d bytes; it is not a public key", name, maxPublicKeyFile)
	}
	if bytes.Contains(b, []byte("PRIVATE KEY")) {
		return nil, usageErrorf("--public-key", "%s is a private key; pass the .pub file next to it", name)
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, usageErrorf("--public-key", "%s is not an OpenSSH public key (one authorized_keys line)", name)
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, usageErrorf("--public-key", "%s is a certificate; pass the public key it certifies", name)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, usageErrorf("--public-key", "%s holds more than one key", name)
	}
	return bytes.TrimRight(ssh.MarshalAuthorizedKey(pub), "\n"), nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writeFileAtomic writes data to name through a temporary file in the same
// directory, so a reader (ssh) never sees a half-written certificate.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
