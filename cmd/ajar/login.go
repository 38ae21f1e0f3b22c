package main

import (
	"context"
	"crypto/subtle"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strconv"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/identity/login"
	"github.com/spf13/cobra"
)

// loginWait bounds how long "ajar login" waits for the browser (the server's
// sign-in state lives 10 minutes).
const loginWait = 10 * time.Minute

func newLoginCmd(e *cliEnv) *cobra.Command {
	var headless bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in with your company's single sign-on and keep the session for the other commands",
		Long: `Sign in through the server's identity provider. The sign-in URL is printed and
opened with $BROWSER (else xdg-open or open when there is a display); at the end
the browser is sent back to a one-time port on this machine. With --headless,
open the printed URL on any machine and enter the code shown.

The session is stored in ${XDG_CONFIG_HOME:-~/.config}/ajar/credentials (0600)
and used by every command when AJAR_TOKEN is not set; ajar logout ends it.`,
		Args: argNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			server, field := e.namedServer()
			if server == "" {
				server = defaultServer
			}
			c, err := loginClient(server, field)
			if err != nil {
				return err
			}
			var tok *login.Token
			if headless {
				tok, err = e.loginDevice(cmd.Context(), c)
			} else {
				tok, err = e.loginBrowser(cmd.Context(), c)
			}
			if err != nil {
				return err
			}
			path, err := e.saveCredentials(&storedCredentials{Server: c.BaseURL, Token: tok.Token, User: tok.User, ExpiresAt: tok.ExpiresAt})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Signed in to %s as %s until %s.\n", clean(c.BaseURL), clean(tok.User), tok.ExpiresAt.Local().Format("2006-01-02 15:04 MST"))
			fmt.Fprintf(e.stderr, "credentials stored in %s\n", path)
			return nil
		},
	}
	cmd.Flags().BoolVar(&headless, "headless", false, "sign in on another machine's browser with a short code (no browser here)")
	return cmd
}

// loginBrowser runs the loopback flow: a PKCE verifier stays here, its challenge
// goes to the server; the browser comes back to 127.0.0.1:PORT with a one-time
// code that only this verifier redeems.
func (e *cliEnv) loginBrowser(ctx context.Context, c *api.Client) (*login.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the sign-in redirect: %w", err)
	}
	defer ln.Close()
	verifier, state := login.NewVerifier(), login.NewVerifier()
	port := ln.Addr().(*net.TCPAddr).Port
	q := url.Values{"cli_port": {strconv.Itoa(port)}, "cli_challenge": {login.Challenge(verifier)}, "cli_state": {state}}
	signin := c.BaseURL + "/auth/oidc/start?" + q.Encode()

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		rq := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if subtle.ConstantTimeCompare([]byte(rq.Get("state")), []byte(state)) != 1 {
			// Not our flow (another page guessing ports): ignore it, keep waiting.
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "<!doctype html><title>ajar</title><p>This is not the sign-in this terminal is waiting for.</p>")
			return
		}
		if msg := rq.Get("error"); msg != "" || rq.Get("code") == "" {
			fmt.Fprintf(w, "<!doctype html><title>ajar</title><p>Sign-in failed: %s</p>", html.EscapeString(msg))
			select {
			case done <- result{err: ajar.Errorf(ajar.EUNAUTH, "sign-in failed: %s", clean(msg))}:
			default:
			}
			return
		}
		fmt.Fprint(w, "<!doctype html><title>ajar</title><p>Signed in to ajar. You can close this tab and go back to your terminal.</p>")
		select {
		case done <- result{code: rq.Get("code")}:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	fmt.Fprintf(e.stderr, "To sign in, open this URL in your browser:\n\n  %s\n\n", signin)
	if err := e.openBrowser(signin); err != nil {
		fmt.Fprintf(e.stderr, "(could not open a browser: %v)\n", err)
	}
	fmt.Fprintln(e.stderr, "Waiting for the sign-in to finish...")
	wait, cancel := context.WithTimeout(ctx, loginWait)
	defer cancel()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, res.err
		}
		return c.CLIToken(ctx, res.code, verifier)
	case <-wait.Done():
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ajar.Errorf(ajar.EUNAUTH, "the sign-in did not finish within %v; run ajar login again", loginWait)
	}
}

// loginDevice runs the headless flow: the person opens the URL anywhere, enters
// the code and signs in; this polls until then.
func (e *cliEnv) loginDevice(ctx context.Context, c *api.Client) (*login.Token, error) {
	d, err := c.StartDevice(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(e.stderr, "To sign in, open %s on any device and enter the code\n\n  %s\n\nor open %s\n\nWaiting for the sign-in to finish...\n",
		clean(d.VerificationURI), clean(d.UserCode), clean(d.VerificationURIComplete))
	interval := time.Duration(d.Interval) * time.Second
	if interval < time.Second {
		interval = time.Second
	}
	deadline := time.Now().Add(time.Duration(d.ExpiresIn) * time.Second)
	for {
		res, err := c.PollDevice(ctx, d.DeviceCode)
		if err != nil {
			return nil, err
		}
		if res.Status == "approved" && res.Token != nil {
			return res.Token, nil
		}
		if time.Now().After(deadline) {
			return nil, ajar.Errorf(ajar.EUNAUTH, "the code was not used in time; run ajar login --headless again")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// openBrowser opens url as gh does: $BROWSER is one executable given the URL as
// its only argument (never a shell line); else xdg-open or open when there is a
// display. No browser is not an error: the URL is printed anyway.
func (e *cliEnv) openBrowser(u string) error {
	name := e.getenv("BROWSER")
	if name == "" {
		switch {
		case runtime.GOOS == "darwin":
			name = "open"
		case e.getenv("DISPLAY") != "" || e.getenv("WAYLAND_DISPLAY") != "":
			name = "xdg-open"
		default:
			return nil
		}
	}
	cmd := exec.Command(name, u)
	cmd.Stdout, cmd.Stderr = nil, nil
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // the browser may outlive the login; reap it when it exits
	return nil
}

// loginClient returns a client, with no token yet, for the server to sign in
// to: one that would carry the new session over plain http elsewhere than
// loopback is refused.
func loginClient(server, field string) (*api.Client, error) {
	u, err := checkServer(server, field)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, usageErrorf(field, "signing in over plain http to %s would expose the session; use https", u.Host)
	}
	return api.NewClient(server, ""), nil
}
