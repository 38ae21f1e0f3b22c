package sshcert

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar"
)

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		fields []string // want exactly these problem fields, in order
		msg    string   // and the first message contains this
	}{
		{"minimal", `{"principals":["ubuntu"]}`, nil, ""},
		{"full", `{"principals":["ubuntu","deploy","svc$","jo.doe@corp"],"source_address":"request","extensions":["permit-port-forwarding","permit-pty"]}`, nil, ""},
		{"explicit any source", `{"principals":["ubuntu"],"source_address":""}`, nil, ""},
		{"missing config", ``, []string{"principals"}, "required"},
		{"null config", `null`, []string{"principals"}, "required"},
		{"empty object", `{}`, []string{"principals"}, "required"},
		{"empty principals", `{"principals":[]}`, []string{"principals"}, "required"},
		{"null principals", `{"principals":null}`, []string{"principals"}, "required"},
		{"principals not a list", `{"principals":"ubuntu"}`, []string{"principals"}, "list of strings"},
		{"principal not a string", `{"principals":["ubuntu",7]}`, []string{"principals[1]"}, "must be a string"},
		{"empty principal", `{"principals":["ubuntu",""]}`, []string{"principals[1]"}, "empty"},
		{"principal with space", `{"principals":["ubuntu","a b"]}`, []string{"principals[1]"}, `"a b" is not a user name`},
		{"principal with comma", `{"principals":["a,b"]}`, []string{"principals[0]"}, "not a user name"},
		{"principal wildcard", `{"principals":["*"]}`, []string{"principals[0]"}, "not a user name"},
		{"principal leading dash", `{"principals":["-oProxyCommand"]}`, []string{"principals[0]"}, "not a user name"},
		{"principal too long", `{"principals":["` + strings.Repeat("a", 257) + `"]}`, []string{"principals[0]"}, "at most 256"},
		{"duplicate principal", `{"principals":["ubuntu","deploy","ubuntu"]}`, []string{"principals[2]"}, "listed twice"},
		{"bad source address", `{"principals":["ubuntu"],"source_address":"10.0.0.0/8"}`, []string{"source_address"}, `not "10.0.0.0/8"`},
		{"source address not a string", `{"principals":["ubuntu"],"source_address":true}`, []string{"source_address"}, "must be a string"},
		{"unknown extension", `{"principals":["ubuntu"],"extensions":["permit-pty","permit-all"]}`, []string{"extensions[1]"}, `unknown extension "permit-all"`},
		{"duplicate extension", `{"principals":["ubuntu"],"extensions":["permit-pty","permit-pty"]}`, []string{"extensions[1]"}, "listed twice"},
		{"unknown field", `{"principals":["ubuntu"],"max_ttl":"1h"}`, []string{"max_ttl"}, "unknown field (known: extensions, mode, nodes, principals, source_address)"},
		{"authorized-keys mode with nodes", `{"principals":["ubuntu"],"mode":"authorized-keys","nodes":["group:web","node-1@example.com"]}`, nil, ""},
		{"certificate mode", `{"principals":["ubuntu"],"mode":"certificate"}`, nil, ""},
		{"unknown mode", `{"principals":["ubuntu"],"mode":"keys"}`, []string{"mode"}, `not "keys"`},
		{"mode not a string", `{"principals":["ubuntu"],"mode":1}`, []string{"mode"}, "must be a string"},
		{"bad nodes", `{"principals":["ubuntu"],"nodes":["group:","a b","x:y","n","n"]}`,
			[]string{"nodes[0]", "nodes[1]", "nodes[2]", "nodes[4]"}, "must be a user id or group:NAME"},
		{"nodes not a list", `{"principals":["ubuntu"],"nodes":"group:web"}`, []string{"nodes"}, "list of strings"},
		{"field in another case", `{"Principals":["ubuntu"]}`, []string{"Principals", "principals"}, "unknown field"},
		{"not an object", `["ubuntu"]`, []string{""}, "must be an object"},
		{"every problem at once", `{"principals":["ok","a b",""],"source_address":"any","extensions":["x"],"zzz":1}`,
			[]string{"zzz", "principals[1]", "principals[2]", "source_address", "extensions[0]"}, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probs := CheckConfig(json.RawMessage(tc.config))
			var fields []string
			for _, p := range probs {
				fields = append(fields, p.Field)
			}
			if !slices.Equal(fields, tc.fields) {
				t.Fatalf("problem fields = %q, want %q\n%v", fields, tc.fields, probs)
			}
			if len(probs) > 0 && !strings.Contains(probs[0].Message, tc.msg) {
				t.Fatalf("first message = %q, want it to contain %q", probs[0].Message, tc.msg)
			}
		})
	}
}

func TestNewChecksConfig(t *testing.T) {
	ca := testCA(t)
	_, err := New("prod-web", json.RawMessage(`{"principals":[]}`), ca)
	var probs ajar.Problems
	if !errors.As(err, &probs) || len(probs) != 1 || probs[0].Field != "principals" {
		t.Fatalf("New with bad config: err = %v, want the config's Problems", err)
	}
	if _, err := New("prod-web", json.RawMessage(`{"principals":["ubuntu"]}`), nil); err == nil {
		t.Fatal("New without a CA succeeded")
	}
	p, err := New("prod-web", json.RawMessage(`{"principals":["ubuntu"],"extensions":["permit-agent-forwarding","permit-pty"]}`), ca)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"permit-agent-forwarding", "permit-pty", "permit-user-rc"}
	if got := p.cfg.extensions(); !slices.Equal(got, want) {
		t.Fatalf("extensions = %q, want %q (defaults plus configured, sorted, once each)", got, want)
	}
}

// FuzzCheckConfig: CheckConfig never panics, and a config it accepts builds a
// provider whose certificates can be signed (the CA agrees with the config check).
func FuzzCheckConfig(f *testing.F) {
	f.Add(`{"principals":["ubuntu"],"source_address":"request","extensions":["permit-pty"]}`)
	f.Add(`{"principals":["a$","b.c@d"]}`)
	f.Add(`{"principals":[1,"x"],"extensions":{}}`)
	ca := testCA(f)
	_, line := userKey(f, 2)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(CheckConfig(json.RawMessage(raw))) > 0 {
			return
		}
		p, err := New("t", json.RawMessage(raw), ca)
		if err != nil {
			t.Fatalf("CheckConfig accepted %s but New failed: %v", raw, err)
		}
		if len(p.cfg.Principals) == 0 {
			t.Fatalf("accepted %s without principals", raw)
		}
		spec := CertSpec{PublicKey: pub, Serial: 1, KeyID: "k", Principals: p.cfg.Principals, Extensions: p.cfg.extensions(),
			ValidAfter: time.Unix(1, 0), ValidBefore: time.Unix(2, 0)}
		if err := spec.check(); err != nil {
			t.Fatalf("CA rejects principals or extensions the config check accepted (%s): %v", raw, err)
		}
	})
}
