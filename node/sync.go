package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/ajar-dev/ajar/provider/sshcert"
)

// WriteFileAtomic replaces name with data so that a reader sees the old file or
// the new one, never a part, and never no file: it writes a temporary file in
// the same directory, syncs it, renames it over name and syncs the directory.
// sshd reads RevokedKeys at every login and refuses everyone if it is missing or
// truncated, so this is the only way the agent writes sshd's files.
func WriteFileAtomic(name string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrCAChanged means the server now presents a different CA key than the one
// installed. Sync refuses to replace it on its own: a wrong server URL or a
// man in the middle would otherwise hand this host to another CA.
var ErrCAChanged = errors.New("the server's SSH CA differs from the installed one")

// SyncResult says what Sync did.
type SyncResult struct {
	CAWritten  bool // the CA file was written (first sync, or a change accepted)
	KRLWritten bool // the KRL file changed
	Serials    int  // serials the installed KRL revokes for the CA
}

// Sync fetches the CA key and the KRL and installs them when they changed. It
// checks both before writing anything: a CA key must be one plain public key, a
// KRL must parse. On any error the files already installed stay as they were.
// acceptNewCA lets it replace an installed CA that differs (after a rotation);
// otherwise that is ErrCAChanged.
func (a *Agent) Sync(ctx context.Context, acceptNewCA bool) (SyncResult, error) {
	var res SyncResult
	line, err := a.client.SSHCA(ctx)
	if err != nil {
		return res, fmt.Errorf("fetch SSH CA: %w", err)
	}
	ca, err := parseCA([]byte(line))
	if err != nil {
		return res, fmt.Errorf("SSH CA from the server: %w", err)
	}
	etag := a.krlETag
	if _, err := os.Stat(a.cfg.KRLFile); err != nil {
		etag = "" // the file is gone: fetch it whole
	}
	data, newETag, notModified, err := a.client.SSHKRL(ctx, etag)
	if err != nil {
		return res, fmt.Errorf("fetch KRL: %w", err)
	}
	if notModified {
		if data, err = os.ReadFile(a.cfg.KRLFile); err != nil {
			return res, fmt.Errorf("read installed KRL: %w", err)
		}
	}
	krl, err := sshcert.ParseKRL(data)
	if err != nil {
		return res, fmt.Errorf("KRL from the server: %w", err)
	}
	res.Serials = len(krl.Serials(ca))

	// Decide about the CA before writing anything: a KRL from a server whose CA
	// is refused must not replace the installed one either.
	caText := []byte(strings.TrimSpace(line) + "\n")
	old, err := os.ReadFile(a.cfg.CAFile)
	writeCA := false
	switch {
	case err == nil && bytes.Equal(old, caText):
	case err == nil:
		oldCA, perr := parseCA(old)
		if !acceptNewCA && (perr != nil || !bytes.Equal(oldCA.Marshal(), ca.Marshal())) {
			return res, fmt.Errorf("%w (installed %s, server %s); if the CA was rotated, sync with --accept-new-ca",
				ErrCAChanged, fingerprintOf(old), ssh.FingerprintSHA256(ca))
		}
		writeCA = true
	case errors.Is(err, os.ErrNotExist):
		writeCA = true
	default:
		return res, fmt.Errorf("read installed SSH CA: %w", err)
	}

	// Revocations first, then trust: the new KRL is in place before a new CA is.
	if cur, err := os.ReadFile(a.cfg.KRLFile); err != nil || !bytes.Equal(cur, data) {
		if err := WriteFileAtomic(a.cfg.KRLFile, data, 0o644); err != nil {
			return res, fmt.Errorf("install KRL: %w", err)
		}
		res.KRLWritten = true
	}
	if writeCA {
		if err := WriteFileAtomic(a.cfg.CAFile, caText, 0o644); err != nil {
			return res, fmt.Errorf("install SSH CA: %w", err)
		}
		res.CAWritten = true
	}
	a.krlETag = newETag
	a.loadLocal(true)
	return res, nil
}

// parseCA parses a CA file or line: exactly one plain public key.
func parseCA(b []byte) (ssh.PublicKey, error) {
	key, _, _, rest, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, errors.New("not an OpenSSH public key")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one key")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, errors.New("a certificate, not a CA key")
	}
	return key, nil
}

func fingerprintOf(b []byte) string {
	if k, err := parseCA(b); err == nil {
		return ssh.FingerprintSHA256(k)
	}
	return "an unreadable key"
}
