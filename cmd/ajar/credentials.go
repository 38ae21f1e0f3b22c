package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// storedCredentials is what "ajar login" keeps so every client command can use it
// when AJAR_TOKEN is not set: the server and a session token for it. The file is
// ${XDG_CONFIG_HOME:-~/.config}/ajar/credentials, mode 0600 in a 0700 directory.
type storedCredentials struct {
	Server    string    `json:"server"`
	Token     string    `json:"token"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

// credentialsPath returns where the credentials file lives, or "" when neither
// XDG_CONFIG_HOME nor HOME is set.
func (e *cliEnv) credentialsPath() string {
	dir := e.getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the XDG spec: a relative value is ignored
		home := e.getenv("HOME")
		if home == "" {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "ajar", "credentials")
}

// loadCredentials reads the credentials file; nil, nil when there is none. A file
// that others may read is refused rather than used: its token may have leaked.
func (e *cliEnv) loadCredentials() (*storedCredentials, error) {
	path := e.credentialsPath()
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); run ajar logout and ajar login again", path, st.Mode().Perm())
	}
	var c storedCredentials
	if err := json.NewDecoder(f).Decode(&c); err != nil || c.Server == "" || c.Token == "" {
		return nil, fmt.Errorf("%s is not an ajar credentials file; run ajar login again", path)
	}
	return &c, nil
}

// saveCredentials writes the credentials file atomically, mode 0600.
func (e *cliEnv) saveCredentials(c *storedCredentials) (string, error) {
	path := e.credentialsPath()
	if path == "" {
		return "", errors.New("cannot store credentials: neither XDG_CONFIG_HOME nor HOME is set")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("store credentials: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return "", fmt.Errorf("store credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(append(b, '\n'))
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			return "", fmt.Errorf("store credentials: %w", err)
		}
	} else {
		tmp.Close()
		return "", fmt.Errorf("store credentials: %w", err)
	}
	return path, nil
}

// removeCredentials deletes the credentials file; no file is not an error.
func (e *cliEnv) removeCredentials() error {
	path := e.credentialsPath()
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove credentials: %w", err)
	}
	return nil
}

// sameServer reports whether two server URLs name the same server, so a stored
// token is never sent to another one.
func sameServer(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
}
