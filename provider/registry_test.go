package provider

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/provider/sshcert"
)

func TestCheckTargetUnknownProvider(t *testing.T) {
	probs := CheckTarget("ssh-certs", json.RawMessage(`{}`))
	if len(probs) != 1 || probs[0].Field != "" {
		t.Fatalf("problems = %v, want one with an empty field", probs)
	}
	for _, want := range []string{`"ssh-certs"`, "ssh-cert"} {
		if !strings.Contains(probs[0].Message, want) {
			t.Errorf("message %q does not name %s", probs[0].Message, want)
		}
	}
}

func TestCheckTargetDelegates(t *testing.T) {
	if probs := CheckTarget("ssh-cert", json.RawMessage(`{"principals":["ubuntu"]}`)); probs != nil {
		t.Fatalf("valid config: %v", probs)
	}
	probs := CheckTarget("ssh-cert", json.RawMessage(`{"principals":["ubuntu","a b"],"source_address":"x"}`))
	var fields []string
	for _, p := range probs {
		fields = append(fields, p.Field)
	}
	if want := []string{"principals[1]", "source_address"}; !slices.Equal(fields, want) {
		t.Fatalf("fields = %q, want %q (relative to the config)", fields, want)
	}
}

func TestKindsAreComplete(t *testing.T) {
	for name, k := range Kinds {
		if k.Check == nil || k.New == nil {
			t.Errorf("provider %s lacks Check or New", name)
		}
	}
}

func TestNewSSHCert(t *testing.T) {
	k := Kinds["ssh-cert"]
	p, err := k.New("prod-web", json.RawMessage(`{"principals":["ubuntu"]}`), Deps{})
	if err == nil || p != nil {
		t.Fatalf("New without an SSH CA = (%v, %v), want (nil, error)", p, err)
	}
	if p, err := k.New("prod-web", json.RawMessage(`{}`), Deps{SSHCA: testCA(t)}); err == nil || p != nil {
		t.Fatalf("New with a bad config = (%v, %v), want (nil, error)", p, err)
	}

	p, err = k.New("prod-web", json.RawMessage(`{"principals":["ubuntu"],"source_address":"request"}`), Deps{SSHCA: testCA(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(ajar.ParamsValidator); !ok {
		t.Error("ssh-cert is not a ParamsValidator")
	}
	if _, ok := p.(ajar.SSHCertIssuer); !ok {
		t.Error("ssh-cert is not an SSHCertIssuer")
	}
}

func testCA(tb testing.TB) *sshcert.CA {
	tb.Helper()
	ca, err := sshcert.LoadOrCreateCA(tb.Context(), &memKeys{keys: map[string][]byte{}}, plainSealer{})
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

// memKeys and plainSealer are the least that builds a CA; sealing itself is tested
// in sshcert.
type memKeys struct {
	mu   sync.Mutex
	keys map[string][]byte
}

func (m *memKeys) GetKey(ctx context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.keys[name]; ok {
		return v, nil
	}
	return nil, ajar.Errorf(ajar.ENOTFOUND, "no key %s", name)
}

func (m *memKeys) PutKey(ctx context.Context, name string, sealed []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[name]; ok {
		return ajar.Errorf(ajar.ECONFLICT, "key %s exists", name)
	}
	m.keys[name] = sealed
	return nil
}

type plainSealer struct{}

func (plainSealer) Seal(name string, p []byte) ([]byte, error)      { return slices.Clone(p), nil }
func (plainSealer) Open(name string, sealed []byte) ([]byte, error) { return slices.Clone(sealed), nil }
