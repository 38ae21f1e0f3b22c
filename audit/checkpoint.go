// Package audit verifies ajar's hash-chained audit log and signs checkpoints of
// it (invariant 8: tamper-evident audit).
//
// The chain itself lives in the root package (ajar.AuditEvent.ComputeHash) and is
// extended by the store inside each state change's transaction. This package
// checks a whole log against it (Verify) and commits to a log's state with a
// signed checkpoint: its size and head hash, in the signed-note format of
// golang.org/x/mod/sumdb/note. A checkpoint saved outside ajar is what exposes a
// truncated log or a history rewritten with freshly recomputed hashes, which the
// chain alone cannot.
package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/keys"
)

// KeyName is the name under which the checkpoint signing key is stored, sealed.
const KeyName = "audit-checkpoint-key"

// Signer signs checkpoints of the audit log with the server's note key. It is
// safe for concurrent use.
type Signer struct {
	signer note.Signer
	vkey   string
}

// LoadOrCreateSigner returns the checkpoint signer whose private key is stored
// sealed under KeyName in ks, creating and storing a new key named name on first
// start. name is the key's name in the note format and the origin line of every
// checkpoint, so it should name this log uniquely, e.g. "ajar.example.com/audit";
// it must not contain '+' or spaces. name only matters when the key is created:
// an existing key keeps its name (see Name), so checkpoints saved by auditors
// stay verifiable. If several replicas start at once they all end up with the
// same key. Pass ks = ajar.StoreKeys(st).
func LoadOrCreateSigner(ctx context.Context, ks ajar.KeyStore, sealer ajar.Sealer, name string) (*Signer, error) {
	if !validKeyName(name) {
		return nil, fmt.Errorf("audit checkpoint key name %q: must be non-empty UTF-8 without '+' or spaces", name)
	}
	skey, _, err := keys.LoadOrCreate(ctx, ks, sealer, KeyName, func() ([]byte, error) {
		skey, _, err := note.GenerateKey(rand.Reader, name)
		return []byte(skey), err
	})
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	s, err := newSigner(string(skey))
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key %q: %w", KeyName, err)
	}
	return s, nil
}

// validKeyName is the note package's rule for key names.
func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// newSigner returns a Signer for an encoded note signer key
// ("PRIVATE+KEY+<name>+<hash>+<base64 of 0x01 and the Ed25519 seed>"), deriving
// its verifier key so that only the private key needs storing.
func newSigner(skey string) (*Signer, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	parts := strings.SplitN(skey, "+", 5) // the base64 key data may hold "+" too
	if len(parts) != 5 {
		return nil, errors.New("malformed signer key")
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return nil, errors.New("signer key is not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	clear(key)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil || v.KeyHash() != signer.KeyHash() {
		return nil, errors.New("derived verifier key does not match the signer key")
	}
	return &Signer{signer: signer, vkey: vkey}, nil
}

// Name returns the key's name, which is also the origin line of its checkpoints.
func (s *Signer) Name() string { return s.signer.Name() }

// VerifierKey returns the public key that verifies this signer's checkpoints, in
// the note format "<name>+<hash>+<key>". Auditors pin it out of band.
func (s *Signer) VerifierKey() string { return s.vkey }

// Sign returns a signed checkpoint of a log of size events whose last event has
// hash head. It is a signed note whose text is three lines: the origin (the key
// name), the size in decimal and the head hash in standard base64. An empty log
// has nothing to commit to: size must be at least 1.
func (s *Signer) Sign(size int64, head []byte) ([]byte, error) {
	if size < 1 {
		return nil, fmt.Errorf("sign checkpoint: size %d: a checkpoint covers at least one event", size)
	}
	if len(head) != sha256.Size {
		return nil, fmt.Errorf("sign checkpoint: head hash is %d bytes, want %d", len(head), sha256.Size)
	}
	text := formatBody(s.Name(), size, head)
	signed, err := note.Sign(&note.Note{Text: text}, s.signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return signed, nil
}

func formatBody(origin string, size int64, head []byte) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(head) + "\n"
}

// Checkpoint is a verified commitment to the first Size events of a log: the
// hash of event Size was Head.
type Checkpoint struct {
	Origin string // the log, which is the signing key's name
	Size   int64
	Head   []byte
	Text   []byte // the signed note, as given to ParseCheckpoint
}

// ParseCheckpoint verifies a signed checkpoint with verifierKey (as returned by
// Signer.VerifierKey) and parses it. It fails if the note is not signed by that
// key (an unknown key), if the signature does not verify (an altered
// checkpoint), or if the text is not exactly a checkpoint of that key's log. The
// note package's error types (*note.UnverifiedNoteError,
// *note.InvalidSignatureError) are wrapped for errors.As.
func ParseCheckpoint(signed []byte, verifierKey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, fmt.Errorf("checkpoint verifier key %q: %w", verifierKey, err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			var by []string
			for _, sig := range unverified.Note.UnverifiedSigs {
				by = append(by, fmt.Sprintf("%s+%08x", sig.Name, sig.Hash))
			}
			return nil, fmt.Errorf("checkpoint is not signed by %s+%08x (signed by %s: another key or another log): %w",
				v.Name(), v.KeyHash(), strings.Join(by, ", "), err)
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("checkpoint signature by %s does not verify (checkpoint altered?): %w", v.Name(), err)
		default:
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
	}
	origin, size, head, err := parseBody(n.Text)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if origin != v.Name() {
		return nil, fmt.Errorf("checkpoint: origin %q is not the log of key %s", origin, v.Name())
	}
	return &Checkpoint{Origin: origin, Size: size, Head: head, Text: bytes.Clone(signed)}, nil
}

// parseBody parses checkpoint text strictly: exactly the three lines Sign writes,
// in canonical form, so that one checkpoint has one encoding.
func parseBody(text string) (origin string, size int64, head []byte, err error) {
	body, ok := strings.CutSuffix(text, "\n")
	lines := strings.Split(body, "\n")
	if !ok || len(lines) != 3 {
		return "", 0, nil, errors.New("malformed text: want three lines (origin, size, head hash)")
	}
	origin = lines[0]
	if !validKeyName(origin) {
		return "", 0, nil, fmt.Errorf("malformed origin line %q", origin)
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 1 || strconv.FormatInt(size, 10) != lines[1] {
		return "", 0, nil, fmt.Errorf("malformed size line %q: want a positive decimal number", lines[1])
	}
	head, err = base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(head) != sha256.Size {
		return "", 0, nil, fmt.Errorf("malformed head hash line %q: want %d bytes in standard base64", lines[2], sha256.Size)
	}
	return origin, size, head, nil
}
