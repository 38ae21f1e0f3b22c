package sshcert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/ajar-dev/ajar"
)

// Source address modes of Config.SourceAddress.
const (
	// SourceAddressAny issues certificates without a source-address restriction.
	SourceAddressAny = ""
	// SourceAddressRequest requires the request parameter source_ip and puts it in
	// every certificate's source-address critical option, so the certificate works
	// only from that address.
	SourceAddressRequest = "request"
)

// Modes of Config.Mode: how hosts let a requester in.
const (
	// ModeCertificate (the default, also written "") hands out OpenSSH
	// certificates signed by ajar's CA; hosts trust the CA (TrustedUserCAKeys) and
	// its revocation list (RevokedKeys).
	ModeCertificate = "certificate"
	// ModeAuthorizedKeys signs nothing: the requester's public key is recorded
	// with the grant, and hosts that cannot trust a CA ask ajar for the keys that
	// may log in now (sshd's AuthorizedKeysCommand running "ajar node keys"), each
	// with an expiry-time option. Nothing is written to any authorized_keys file.
	ModeAuthorizedKeys = "authorized-keys"
)

// Config is the config of one ssh-cert target, for example
//
//	{"principals": ["ubuntu"], "source_address": "request", "extensions": ["permit-port-forwarding"],
//	 "mode": "certificate", "nodes": ["group:web-hosts"]}
type Config struct {
	// Principals are the user names the certificates are valid for. Required.
	Principals []string `json:"principals"`
	// SourceAddress is SourceAddressAny ("") or SourceAddressRequest ("request").
	SourceAddress string `json:"source_address,omitempty"`
	// Extensions are granted on top of DefaultExtensions (permit-pty and
	// permit-user-rc), each one of KnownExtensions. Forwarding is off unless
	// listed here: "permit-port-forwarding", "permit-agent-forwarding",
	// "permit-X11-forwarding"; "no-touch-required" lets FIDO keys sign without a
	// touch.
	Extensions []string `json:"extensions,omitempty"`
	// Mode is ModeCertificate ("" means the same) or ModeAuthorizedKeys.
	Mode string `json:"mode,omitempty"`
	// Nodes are the users (ids or "group:NAME") whose API tokens the target's host
	// agents ("ajar node") use: they may read the target's authorized keys and
	// report its SSH sessions. Nobody else may.
	Nodes []string `json:"nodes,omitempty"`
}

// DefaultExtensions returns the extensions every certificate gets: an interactive
// terminal and ~/.ssh/rc, but no forwarding of ports, agents or X11.
func DefaultExtensions() []string { return []string{"permit-pty", "permit-user-rc"} }

// configFields are the JSON names Config accepts, sorted.
var configFields = []string{"extensions", "mode", "nodes", "principals", "source_address"}

// principalRE is a portable user name (as useradd accepts it, plus "@" and "."
// for directory users): no spaces, commas, wildcards or leading "-".
var principalRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?$`)

const maxPrincipalLen = 256

// CheckConfig returns every problem with an ssh-cert target config, with field paths
// relative to the config ("principals[1]"). Decoding is strict: an unknown field
// (including a field spelled in another case) is a problem.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	var cfg Config
	var probs ajar.Problems
	add := func(field, format string, args ...any) {
		probs = append(probs, ajar.Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}

	// Decode into a map first, rather than with DisallowUnknownFields, so that every
	// unknown field is reported at once, by name, and json's case-insensitive field
	// matching cannot let "Principals" through.
	fields := map[string]json.RawMessage{}
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		if err := json.Unmarshal(t, &fields); err != nil {
			add("", "must be an object with the fields %s", strings.Join(configFields, ", "))
			return cfg, probs
		}
	}
	for _, k := range sortedKeys(fields) {
		if !slices.Contains(configFields, k) {
			add(k, "unknown field (known: %s)", strings.Join(configFields, ", "))
		}
	}

	principals, principalsOK := decodeStrings(fields, "principals", add)
	if principalsOK && len(principals) == 0 {
		add("principals", "required: at least one user name the certificates are valid for")
	}
	cfg.Principals = principals
	if v, ok := fields["source_address"]; ok {
		if err := json.Unmarshal(v, &cfg.SourceAddress); err != nil {
			add("source_address", "must be a string")
		}
	}
	cfg.Extensions, _ = decodeStrings(fields, "extensions", add)
	if v, ok := fields["mode"]; ok {
		if err := json.Unmarshal(v, &cfg.Mode); err != nil {
			add("mode", "must be a string")
		}
	}
	cfg.Nodes, _ = decodeStrings(fields, "nodes", add)

	for i, p := range cfg.Principals {
		field := fmt.Sprintf("principals[%d]", i)
		switch {
		case p == "":
			add(field, "must not be empty")
		case len(p) > maxPrincipalLen:
			add(field, "must be at most %d characters", maxPrincipalLen)
		case !principalRE.MatchString(p):
			add(field, "%q is not a user name: use letters, digits, '_', '.', '@' and '-' (not first), no spaces or commas", p)
		case slices.Contains(cfg.Principals[:i], p):
			add(field, "%q is listed twice", p)
		}
	}

	switch cfg.SourceAddress {
	case SourceAddressAny, SourceAddressRequest:
	default:
		add("source_address", `must be "" (certificates work from any address) or %q (only from the request's source_ip), not %q`,
			SourceAddressRequest, cfg.SourceAddress)
	}

	switch cfg.Mode {
	case "", ModeCertificate, ModeAuthorizedKeys:
	default:
		add("mode", "must be %q (the default: hosts trust ajar's CA) or %q (hosts ask ajar for keys), not %q",
			ModeCertificate, ModeAuthorizedKeys, cfg.Mode)
	}
	for i, n := range cfg.Nodes {
		field := fmt.Sprintf("nodes[%d]", i)
		name, isGroup := strings.CutPrefix(n, "group:")
		switch {
		case name == "":
			add(field, "must be a user id or group:NAME, not %q", n)
		case len(n) > maxPrincipalLen || strings.ContainsFunc(n, unicode.IsSpace) || strings.ContainsFunc(n, unicode.IsControl):
			add(field, "%q is not a user id or group:NAME (no spaces, at most %d characters)", n, maxPrincipalLen)
		case !isGroup && strings.Contains(n, ":"):
			add(field, "%q: only groups take a prefix (group:NAME)", n)
		case slices.Contains(cfg.Nodes[:i], n):
			add(field, "%q is listed twice", n)
		}
	}

	known := KnownExtensions()
	for i, e := range cfg.Extensions {
		field := fmt.Sprintf("extensions[%d]", i)
		switch {
		case !slices.Contains(known, e):
			add(field, "unknown extension %q (known: %s)", e, strings.Join(known, ", "))
		case slices.Contains(cfg.Extensions[:i], e):
			add(field, "%q is listed twice", e)
		}
	}
	return cfg, probs
}

// decodeStrings decodes fields[name] as a list of strings, reporting a wrong type at
// the exact element ("principals[2]"). ok is false if there was a type problem (the
// list is then nil, so it is not checked further); a missing field is ok and nil.
func decodeStrings(fields map[string]json.RawMessage, name string, add func(field, format string, args ...any)) (list []string, ok bool) {
	v, found := fields[name]
	if !found {
		return nil, true
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(v, &elems); err != nil {
		add(name, "must be a list of strings")
		return nil, false
	}
	ok = true
	for i, e := range elems {
		var s string
		if err := json.Unmarshal(e, &s); err != nil {
			add(fmt.Sprintf("%s[%d]", name, i), "must be a string")
			ok = false
		}
		list = append(list, s)
	}
	if !ok {
		return nil, false
	}
	return list, true
}

// mode returns cfg's mode with the default spelled out.
func (cfg Config) mode() string {
	if cfg.Mode == "" {
		return ModeCertificate
	}
	return cfg.Mode
}

// extensions returns the extensions certificates for cfg get: the defaults plus the
// configured ones, sorted, without duplicates.
func (cfg Config) extensions() []string {
	ext := append(DefaultExtensions(), cfg.Extensions...)
	slices.Sort(ext)
	return slices.Compact(ext)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
