// Command baresigner is the reference the request → certificate figures of
// BENCHMARKS.md are read against: a bare SSH signer with its audit on, as the
// issue that set the targets measured OpenBao's (POST /v1/ssh/sign/ROLE with
// a file audit device). It answers ajar's one-call request (POST
// /v1/requests with ssh_public_key) with what the benchmark checks: a
// request id, state "active" and the certificate. Per call it checks the
// bearer token (a SHA-256 lookup), decodes the JSON body, signs an ed25519
// certificate and appends the request's and the response's audit lines to a
// file (write, no fsync: a file audit device's default). It keeps nothing
// else: no store, no policy, no limits, no revocation. Not part of ajar;
// BenchmarkHTTP/bare-signer builds and runs it.
package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	tokens := flag.String("tokens", "", "file of API tokens, one a line")
	audit := flag.String("audit", "", "audit log file to append to")
	flag.Parse()
	s, err := newSigner(*tokens, *audit)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "baresigner serving on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, s))
}

type signer struct {
	users map[[32]byte]string // token hash → user
	ca    ssh.Signer
	mu    sync.Mutex // serializes the audit file's appends
	audit *os.File
}

func newSigner(tokensPath, auditPath string) (*signer, error) {
	f, err := os.Open(tokensPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &signer{users: map[[32]byte]string{}}
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		if tok := strings.TrimSpace(sc.Text()); tok != "" {
			s.users[sha256.Sum256([]byte(tok))] = fmt.Sprintf("user%04d@example.com", i)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if s.ca, err = ssh.NewSignerFromKey(key); err != nil {
		return nil, err
	}
	if s.audit, err = os.OpenFile(auditPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		return nil, err
	}
	return s, nil
}

type createIn struct {
	Target       string            `json:"target"`
	Duration     string            `json:"duration"`
	Reason       string            `json:"reason"`
	Params       map[string]string `json:"params"`
	SSHPublicKey string            `json:"ssh_public_key"`
}

func (s *signer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/requests" {
		http.NotFound(w, r)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	user := s.users[sha256.Sum256([]byte(tok))]
	if !ok || user == "" {
		http.Error(w, `{"error":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	var in createIn
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
		return
	}
	d, err := time.ParseDuration(in.Duration)
	pub, _, _, _, kerr := ssh.ParseAuthorizedKey([]byte(in.SSHPublicKey))
	if err != nil || d <= 0 || d > time.Hour || kerr != nil {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	var idb [16]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	now := time.Now()
	s.log(map[string]any{"type": "request", "time": now, "user": user, "path": r.URL.Path, "request": in})
	cert := &ssh.Certificate{
		Key: pub, Serial: binary.BigEndian.Uint64(idb[:8]), CertType: ssh.UserCert, KeyId: id,
		ValidPrincipals: []string{"ubuntu"},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(d).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, s.ca); err != nil {
		http.Error(w, `{"error":"sign"}`, http.StatusInternalServerError)
		return
	}
	text := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	out := map[string]any{"id": id, "state": "active", "requester": user, "target": in.Target,
		"ssh_cert": map[string]any{"certificate": text, "serial": cert.Serial, "key_id": id}}
	s.log(map[string]any{"type": "response", "time": time.Now(), "user": user, "request_id": id, "serial": cert.Serial})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(out)
}

// log appends one JSON line to the audit file, as a file audit device does
// (one write, no fsync).
func (s *signer) log(entry map[string]any) {
	b, err := json.Marshal(entry)
	if err != nil {
		return
	}
	b = append(b, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.audit.Write(b); err != nil {
		log.Fatalf("audit: %v", err) // a signer that cannot audit stops, as OpenBao does
	}
}
