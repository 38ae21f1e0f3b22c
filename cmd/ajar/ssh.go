package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/sshaccess"
)

// exitCodeError makes the CLI exit with code without printing anything: ajar ssh
// exits as ssh did.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// sshOptions are the flags of ajar ssh.
type sshOptions struct {
	duration, reason, ticket string
	params                   []string
	sourceIP                 string
	sshPath                  string
	timeout                  time.Duration
}

func newSSHCmd(e *cliEnv) *cobra.Command {
	var o sshOptions
	cmd := &cobra.Command{
		Use:   "ssh TARGET [-- SSH ARGS]",
		Short: "Get SSH access to a target and run ssh with a fresh key (also: ajar ssh ca)",
		Long: `Get SSH access to TARGET and run ssh with it, in one command.

ajar ssh reuses your request for TARGET while it is active (or waits on your pending
one, unless it is scheduled to start later: that one is skipped); otherwise it asks for access with --for, --reason and --ticket, asking for a
reason on the terminal when the policy wants one. It waits for approval if needed,
creates a new ed25519 key that only this ssh uses, gets a certificate for it (or, for
authorized-keys targets, has the key authorized until the access ends), runs the system
ssh with SSH ARGS, and deletes the key when ssh exits. Nothing is written to ~/.ssh.

Targets that pin certificates to your address get the address ssh connects from
(found with "ssh -G"); pass --source-ip when a proxy or NAT is in between.`,
		Example: `  ajar ssh prod-web -- ubuntu@web-1.example.com
  ajar ssh prod-web --for 30m --reason "deploy hotfix" -- -p 2222 ubuntu@10.0.0.7 uptime
  ajar ssh ca            print the SSH CA public key`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("", "missing argument TARGET")
			}
			if strings.TrimSpace(args[0]) == "" {
				return usageErrorf("", "argument TARGET must not be empty")
			}
			if d := cmd.ArgsLenAtDash(); d > 1 {
				return usageErrorf("", "unexpected argument %q before --", args[1])
			}
			if len(args) < 2 {
				return usageErrorf("SSH ARGS", "give ssh's arguments after the target, such as: ajar ssh %s -- user@host", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.runSSH(cmd.Context(), cmd, o, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.duration, "for", "", "how long the access lasts when a new request is needed, such as 30m (default: the policy's default)")
	f.StringVar(&o.reason, "reason", "", "why you need the access (asked on the terminal when the policy requires one)")
	f.StringVar(&o.ticket, "ticket", "", "ticket or incident id")
	f.StringArrayVar(&o.params, "param", nil, "target parameter as KEY=VALUE (repeatable)")
	f.StringVar(&o.sourceIP, "source-ip", "", "your address as the host sees it (default: the address ssh connects from)")
	f.StringVar(&o.sshPath, "ssh", "ssh", "the ssh program to run")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for approval")
	cmd.AddCommand(&cobra.Command{
		Use:   "ca",
		Short: "Print the SSH CA public key (for TrustedUserCAKeys on hosts)",
		Args:  argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(false)
			if err != nil {
				return err
			}
			ca, err := c.SSHCA(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, ca)
			return err
		},
	})
	return cmd
}

func (e *cliEnv) runSSH(ctx context.Context, cmd *cobra.Command, o sshOptions, target string, sshArgs []string) error {
	params, err := parseParams(o.params)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("for") && strings.TrimSpace(o.duration) == "" {
		return usageErrorf("--for", "must not be empty (a duration such as 30m)")
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout", "must be positive, got %s", fmtDuration(o.timeout))
	}
	if o.sourceIP != "" {
		if _, ok := params["source_ip"]; ok {
			return usageErrorf("--source-ip", "give either --source-ip or --param source_ip, not both")
		}
		if _, err := netip.ParseAddr(o.sourceIP); err != nil {
			return usageErrorf("--source-ip", "%q is not an IP address", o.sourceIP)
		}
	}
	sshBin, err := exec.LookPath(o.sshPath)
	if err != nil {
		return usageErrorf("--ssh", "cannot find %s: %v", o.sshPath, err)
	}
	c, err := e.client(true)
	if err != nil {
		return err
	}
	if _, ok := params["source_ip"]; !ok {
		ip := o.sourceIP
		if ip == "" {
			ip = detectSourceIP(ctx, sshBin, sshArgs)
		}
		if ip != "" {
			if params == nil {
				params = map[string]string{}
			}
			params["source_ip"] = ip
		}
	}

	// The key lives in memory until ssh needs it, and in a private temporary
	// directory only while ssh runs.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	in := sshaccess.Input{
		Target: target, Duration: o.duration, Reason: o.reason, Ticket: o.ticket, Params: params,
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))),
	}
	out, err := e.sshAccess(ctx, c, in)
	if err != nil {
		return err
	}
	req := out.Request
	for _, r := range out.Scheduled {
		fmt.Fprintf(e.stderr, "ajar: skipped your request %s for %s: it starts at %s (%s), not now\n",
			clean(r.ID), clean(target), e.fmtTimePtr(r.StartAt), relative(*r.StartAt, e.now()))
	}
	how := "new request"
	if out.Reused {
		how = "your request"
	}
	fmt.Fprintf(e.stderr, "ajar: %s %s for %s: %s\n", how, clean(req.ID), clean(target), clean(string(req.State)))
	cert := out.Cert
	if cert == nil {
		if waiting(req.State) {
			fmt.Fprintf(e.stderr, "ajar: waiting up to %s for approval (an approver runs: ajar approve %s); Ctrl-C stops waiting, the request stays\n",
				fmtDuration(o.timeout), clean(req.ID))
		}
		if req, err = e.waitActive(ctx, c, req, o.timeout); err != nil {
			return err
		}
		if cert, err = c.IssueSSHCert(ctx, req.ID, []byte(in.PublicKey)); err != nil {
			return err
		}
	}
	until := cert.Info.ValidBefore
	if cert.Certificate != "" {
		fmt.Fprintf(e.stderr, "ajar: certificate serial %d for %s until %s (%s)\n", cert.Info.Serial,
			clean(strings.Join(cert.Info.Principals, ",")), e.fmtTime(until), relative(until, e.now()))
	} else {
		fmt.Fprintf(e.stderr, "ajar: key authorized for %s until %s (%s)\n",
			clean(strings.Join(cert.Info.Principals, ",")), e.fmtTime(until), relative(until, e.now()))
	}
	return e.execSSH(sshBin, sshArgs, priv, req.ID, cert)
}

// sshAccess asks for access and, when the policy wants a reason (or ticket) that
// was not given and a person is at the terminal, asks for it and tries again.
func (e *cliEnv) sshAccess(ctx context.Context, c *api.Client, in sshaccess.Input) (*sshaccess.Output, error) {
	asked := map[string]bool{}
	var rd *bufio.Reader
	for {
		out, err := c.SSHAccess(ctx, in)
		field := ajar.ErrorField(err)
		if err == nil || ajar.ErrorCode(err) != ajar.EINVALID || asked[field] || !isTerminal(e.stdin) ||
			(field != "reason" && field != "ticket") {
			return out, err
		}
		asked[field] = true
		fmt.Fprintf(e.stderr, "ajar: %s\n%s: ", describeError(nil, err), strings.ToUpper(field[:1])+field[1:])
		if rd == nil {
			rd = bufio.NewReader(e.stdin)
		}
		line, rerr := rd.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, rerr
		}
		line = strings.TrimSpace(line)
		if line == "" {
			return nil, err
		}
		if field == "reason" {
			in.Reason = line
		} else {
			in.Ticket = line
		}
	}
}

// isTerminal reports whether r is a character device (a terminal).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// execSSH writes the key (and certificate) to a new 0700 directory, runs ssh
// with them and removes the directory when ssh exits. Its error is ssh's exit
// status.
func (e *cliEnv) execSSH(sshBin string, sshArgs []string, priv ed25519.PrivateKey, reqID string, cert *ajar.SSHCertOutput) error {
	dir, err := os.MkdirTemp(keyDir(e.getenv), "ajar-ssh-")
	if err != nil {
		return fmt.Errorf("create a directory for the key: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "ajar "+reqID)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("write the key: %w", err)
	}
	args := []string{"-i", keyFile, "-o", "IdentitiesOnly=yes"}
	if cert.Certificate != "" {
		certFile := keyFile + "-cert.pub"
		if err := os.WriteFile(certFile, []byte(cert.Certificate+"\n"), 0o600); err != nil {
			return fmt.Errorf("write the certificate: %w", err)
		}
		args = append(args, "-o", "CertificateFile="+certFile)
	}
	args = append(args, sshArgs...)
	run := exec.Command(sshBin, args...)
	run.Stdin, run.Stdout, run.Stderr = e.stdin, e.stdout, e.stderr
	// ssh gets the terminal's signals itself; ajar outlives them (run already
	// catches SIGINT and SIGTERM) so that the key is removed however ssh ends.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err = run.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return &exitCodeError{code: ee.ExitCode()}
	default:
		return fmt.Errorf("run ssh: %w", err)
	}
}

// keyDir is where the temporary key goes: the user's private runtime directory
// (a tmpfs) when there is one, else the system's temporary directory.
func keyDir(getenv func(string) string) string {
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && fi.Mode().Perm()&0o077 == 0 {
			return d
		}
	}
	return os.TempDir()
}

// detectSourceIP returns the local address this machine would use to reach the
// host ssh connects to (from "ssh -G"), or "" when it cannot tell: a proxy is
// configured, or the host does not resolve.
func detectSourceIP(ctx context.Context, sshBin string, sshArgs []string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sshBin, append([]string{"-G"}, sshArgs...)...).Output()
	if err != nil {
		return ""
	}
	host, port, proxied := parseSSHConfig(string(out))
	if proxied || host == "" {
		return ""
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	return localAddrFor(netip.AddrPortFrom(addrs[0].Unmap(), port))
}

// parseSSHConfig reads the host name and port from "ssh -G" output, and whether
// the connection goes through a proxy (then the host sees the proxy's address).
func parseSSHConfig(out string) (host string, port uint16, proxied bool) {
	port = 22
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "hostname":
			host = v
		case "port":
			var p uint16
			if _, err := fmt.Sscan(v, &p); err == nil && p > 0 {
				port = p
			}
		case "proxyjump", "proxycommand":
			if v != "" && v != "none" {
				proxied = true
			}
		}
	}
	return host, port, proxied
}

// localAddrFor returns the source address the kernel picks for dst. A UDP
// "connection" sends nothing.
func localAddrFor(dst netip.AddrPort) string {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return ""
	}
	defer conn.Close()
	a, ok := netip.AddrFromSlice(conn.LocalAddr().(*net.UDPAddr).IP)
	if !ok {
		return ""
	}
	return a.Unmap().String()
}
