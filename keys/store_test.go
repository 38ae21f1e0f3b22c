package keys

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ajar-dev/ajar"
)

// memKeys is an in-memory KeyStore with the store's error contract. beforePut,
// if set, runs before each PutKey, to let a test play another replica.
type memKeys struct {
	mu        sync.Mutex
	m         map[string][]byte
	puts      int
	beforePut func(m map[string][]byte)
}

func (s *memKeys) GetKey(_ context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[name]
	if !ok {
		return nil, ajar.Errorf(ajar.ENOTFOUND, "key %q not found", name)
	}
	return bytes.Clone(b), nil
}

func (s *memKeys) PutKey(_ context.Context, name string, sealed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	if s.beforePut != nil {
		s.beforePut(s.m)
	}
	if _, ok := s.m[name]; ok {
		return ajar.Errorf(ajar.ECONFLICT, "key %q exists", name)
	}
	s.m[name] = bytes.Clone(sealed)
	s.puts++
	return nil
}

func gen(v string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(v), nil }
}

func TestLoadOrCreate(t *testing.T) {
	ctx := t.Context()
	_, mk := testKey(t, 0)
	ks := &memKeys{}

	got, created, err := LoadOrCreate(ctx, ks, mk, "ssh-ca", gen("first"))
	if err != nil || !created || string(got) != "first" {
		t.Fatalf("first call = %q, %v, %v", got, created, err)
	}
	if bytes.Contains(ks.m["ssh-ca"], []byte("first")) {
		t.Fatal("stored key is not sealed")
	}
	got, created, err = LoadOrCreate(ctx, ks, mk, "ssh-ca", gen("second"))
	if err != nil || created || string(got) != "first" {
		t.Fatalf("second call = %q, %v, %v; want the stored key", got, created, err)
	}
	if ks.puts != 1 {
		t.Fatalf("%d puts, want 1", ks.puts)
	}
}

func TestLoadOrCreateLostRace(t *testing.T) {
	_, mk := testKey(t, 0)
	winner, _ := mk.Seal("ssh-ca", []byte("winner"))
	ks := &memKeys{beforePut: func(m map[string][]byte) { m["ssh-ca"] = winner }}
	got, created, err := LoadOrCreate(t.Context(), ks, mk, "ssh-ca", gen("loser"))
	if err != nil || created || string(got) != "winner" {
		t.Fatalf("LoadOrCreate = %q, %v, %v; want the winner's key", got, created, err)
	}
}

func TestLoadOrCreateErrors(t *testing.T) {
	ctx := t.Context()
	_, mk := testKey(t, 0)
	_, other := testKey(t, 1)

	ks := &memKeys{}
	if _, _, err := LoadOrCreate(ctx, ks, mk, "k", gen("v")); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadOrCreate(ctx, ks, other, "k", gen("v"))
	if !errors.Is(err, ErrWrongKeyOrTampered) || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("wrong master key: err = %v", err)
	}

	boom := errors.New("disk on fire")
	_, _, err = LoadOrCreate(ctx, &memKeys{}, mk, "k", func() ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("generate error: err = %v", err)
	}

	broken := &memKeys{beforePut: func(map[string][]byte) { panic("unreached") }}
	_, _, err = LoadOrCreate(ctx, failingGet{broken, boom}, mk, "k", gen("v"))
	if !errors.Is(err, boom) || ajar.ErrorCode(err) == ajar.ENOTFOUND {
		t.Fatalf("GetKey error: err = %v", err)
	}
}

type failingGet struct {
	ajar.KeyStore
	err error
}

func (f failingGet) GetKey(context.Context, string) ([]byte, error) { return nil, f.err }

// fakeStore is just enough of ajar.Store for ajar.StoreKeys: one transaction at a time
// over a memKeys. The embedded nil ajar.Tx panics on any other method.
type fakeStore struct {
	mu   sync.Mutex
	keys memKeys
}

type fakeTx struct {
	ajar.Tx
	keys *memKeys
}

func (t fakeTx) GetKey(ctx context.Context, name string) ([]byte, error) {
	return t.keys.GetKey(ctx, name)
}
func (t fakeTx) PutKey(ctx context.Context, name string, sealed []byte) error {
	return t.keys.PutKey(ctx, name, sealed)
}

func (s *fakeStore) Update(_ context.Context, fn func(ajar.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(fakeTx{keys: &s.keys})
}

func (s *fakeStore) View(_ context.Context, fn func(ajar.ReadTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(fakeTx{keys: &s.keys})
}

func (s *fakeStore) Close() error { return nil }

func TestLoadOrCreateConcurrent(t *testing.T) {
	_, mk := testKey(t, 0)
	st := &fakeStore{}
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Go(func() {
			k, _, err := LoadOrCreate(t.Context(), ajar.StoreKeys(st), mk, "k", gen(string(rune('a'+i))))
			if err != nil {
				t.Error(err)
			}
			got[i] = string(k)
		})
	}
	wg.Wait()
	for _, g := range got {
		if g != got[0] {
			t.Fatalf("concurrent callers got different keys: %q", got)
		}
	}
	if st.keys.puts != 1 {
		t.Fatalf("%d puts, want 1", st.keys.puts)
	}
}
