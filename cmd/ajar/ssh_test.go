package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/sshaccess"
)

// sshFake adds POST /v1/ssh/access to fakeCore: it answers with request r1, active
// with a certificate, or pending when pending is set.
type sshFake struct {
	*fakeCore
	pending bool
	later   *ajar.Request // returned as skipped (scheduled) when set
	access  []sshaccess.Input
}

var _ api.SSHCore = (*sshFake)(nil)

func (f *sshFake) SSHAccess(ctx context.Context, u ajar.User, in sshaccess.Input) (*sshaccess.Output, error) {
	if err := f.called("SSHAccess"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.access = append(f.access, in)
	f.mu.Unlock()
	r, err := f.get("r1")
	if err != nil {
		return nil, err
	}
	if f.pending {
		r.State = ajar.StatePending
		return &sshaccess.Output{Request: r}, nil
	}
	cert, _ := f.IssueSSHCert(ctx, u, r.ID, []byte(in.PublicKey))
	out := &sshaccess.Output{Request: r, Cert: cert}
	if f.later != nil {
		out.Scheduled = []*ajar.Request{f.later}
	}
	return out, nil
}

func (f *sshFake) CreateWithCert(ctx context.Context, u ajar.User, in ajar.CreateInput, publicKey string) (*ajar.Request, *ajar.SSHCertOutput, error) {
	return nil, nil, ajar.Errorf(ajar.ENOTFOUND, "not in this fake")
}

// fakeSSH writes an ssh stand-in: "ssh -G" prints a config, anything else
// records its arguments and the mode of the key it was given, and exits 7.
func fakeSSH(t *testing.T) (path, record string) {
	t.Helper()
	dir := t.TempDir()
	path, record = filepath.Join(dir, "ssh"), filepath.Join(dir, "record")
	script := `#!/bin/sh
if [ "$1" = "-G" ]; then printf 'user u\nhostname 127.0.0.1\nport 2222\nproxyjump none\n'; exit 0; fi
echo "$@" > ` + record + `
stat -c 'key-mode %a' "$2" >> ` + record + `
cat "$2" | head -1 >> ` + record + `
exit 7
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, record
}

func TestSSHCommandRunsSSH(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_RUNTIME_DIR", "")
	core := &sshFake{fakeCore: newFakeCore()}
	url := startServer(t, core)
	sshBin, record := fakeSSH(t)

	r := runRaw(t, "--server", url, "--token", "alice-token", "ssh", "prod-web", "--for", "5m", "--ssh", sshBin,
		"--", "-p", "2222", "u@127.0.0.1", "true")
	r.want(t, 7, "ajar: new request r1 for prod-web: active", "certificate serial 7")
	rec, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("ssh did not run: %v\n%s", err, r.stderr)
	}
	got := string(rec)
	for _, want := range []string{"-i " + tmp + "/ajar-ssh-", "-o IdentitiesOnly=yes -o CertificateFile=" + tmp + "/ajar-ssh-",
		"-p 2222 u@127.0.0.1 true\n", "key-mode 600\n", "-----BEGIN OPENSSH PRIVATE KEY-----"} {
		if !strings.Contains(got, want) {
			t.Errorf("ssh ran with %q, lacking %q", got, want)
		}
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("the key directory was left behind: %v", entries)
	}
	if len(core.access) != 1 {
		t.Fatalf("%d access calls", len(core.access))
	}
	in := core.access[0]
	if in.Target != "prod-web" || in.Duration != "5m" || in.Params["source_ip"] != "127.0.0.1" ||
		!strings.HasPrefix(in.PublicKey, "ssh-ed25519 ") {
		t.Errorf("access input = %+v", in)
	}
}

func TestSSHCommandWaitsForApproval(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	core := &sshFake{fakeCore: newFakeCore(), pending: true}
	core.script["r1"] = []ajar.State{ajar.StatePending, ajar.StateActive}
	url := startServer(t, core)
	sshBin, _ := fakeSSH(t)
	r := runRaw(t, "--server", url, "--token", "alice-token", "ssh", "prod-web", "--ssh", sshBin, "--source-ip", "203.0.113.7",
		"--", "u@127.0.0.1")
	r.want(t, 7, "request r1: pending", "waiting up to 10m for approval", "request r1: active")
	if core.access[0].Params["source_ip"] != "203.0.113.7" {
		t.Errorf("source_ip = %q, want the --source-ip", core.access[0].Params["source_ip"])
	}
	if !strings.Contains(strings.Join(core.Calls(), ","), "IssueSSHCert") {
		t.Errorf("no certificate asked for after approval: %v", core.Calls())
	}
}

// TestSSHCommandSaysScheduledSkipped: a request the server skipped because it
// starts later is named, with its start, so the user knows why a new one was made.
func TestSSHCommandSaysScheduledSkipped(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	start := time.Now().Add(20 * time.Hour).UTC().Truncate(time.Second)
	core := &sshFake{fakeCore: newFakeCore(), later: &ajar.Request{ID: "r9", State: ajar.StateApproved, StartAt: &start}}
	url := startServer(t, core)
	sshBin, _ := fakeSSH(t)
	r := runRaw(t, "--server", url, "--token", "alice-token", "ssh", "prod-web", "--for", "5m", "--ssh", sshBin,
		"--", "u@127.0.0.1")
	r.want(t, 7, "ajar: skipped your request r9 for prod-web: it starts at "+start.Format(time.RFC3339)+" (in 19h",
		"ajar: new request r1 for prod-web: active")
}

func TestParseSSHConfig(t *testing.T) {
	for _, tc := range []struct {
		out     string
		host    string
		port    uint16
		proxied bool
	}{
		{"user u\nhostname web-1.example.com\nport 2222\nproxyjump none\n", "web-1.example.com", 2222, false},
		{"hostname 10.0.0.7\n", "10.0.0.7", 22, false},
		{"hostname h\nproxyjump bastion\n", "h", 22, true},
		{"hostname h\nproxycommand nc %h %p\n", "h", 22, true},
		{"", "", 22, false},
	} {
		host, port, proxied := parseSSHConfig(tc.out)
		if host != tc.host || port != tc.port || proxied != tc.proxied {
			t.Errorf("parseSSHConfig(%q) = %q %d %t", tc.out, host, port, proxied)
		}
	}
}
