package oidctest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Claims is an ID token as Tamper sees it: the registered claims as fields,
// every other claim (email, email_verified, groups, amr...) in Other.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	Expiry   time.Time
	IssuedAt time.Time
	Nonce    string
	Other    map[string]any
	// WrongKey signs the token with a key the issuer does not publish.
	WrongKey bool
}

// Tamper changes the next ID token the token endpoint returns (from a code or
// a refresh token): f edits its claims and the OP signs the result again.
// Calls queue up, one per token.
func (p *OP) Tamper(f func(c *Claims)) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.tamper = append(p.store.tamper, f)
}

// tamperToken wraps the provider: when a Tamper is queued, token endpoint
// answers holding an ID token are rewritten.
func (p *OP) tamperToken(next http.Handler) http.Handler {
	tokenPath := p.provider.TokenEndpoint().Relative()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.store.mu.Lock()
		pending := len(p.store.tamper) > 0
		p.store.mu.Unlock()
		if r.URL.Path != tokenPath || !pending {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			if b, err := p.rewrite(body); err != nil {
				http.Error(w, "oidctest: tamper: "+err.Error(), http.StatusInternalServerError)
				return
			} else if b != nil {
				body = b
			}
		}
		maps.Copy(w.Header(), rec.Header())
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// rewrite applies the first queued Tamper to the id_token of a token
// response; nil when the response has none.
func (p *OP) rewrite(body []byte) ([]byte, error) {
	var resp map[string]any
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	tok, _ := resp["id_token"].(string)
	if tok == "" {
		return nil, nil
	}
	p.store.mu.Lock()
	if len(p.store.tamper) == 0 {
		p.store.mu.Unlock()
		return nil, nil
	}
	f := p.store.tamper[0]
	p.store.tamper = p.store.tamper[1:]
	p.store.mu.Unlock()

	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("id_token is not a JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	c := toClaims(m)
	f(&c)
	key := p.store.key
	if c.WrongKey {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, err
		}
	}
	payload, err := json.Marshal(fromClaims(c))
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.store.keyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, err
	}
	if resp["id_token"], err = jws.CompactSerialize(); err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

func toClaims(m map[string]any) Claims {
	c := Claims{Other: map[string]any{}}
	for k, v := range m {
		switch k {
		case "iss":
			c.Issuer, _ = v.(string)
		case "sub":
			c.Subject, _ = v.(string)
		case "aud":
			switch a := v.(type) {
			case string:
				c.Audience = []string{a}
			case []any:
				for _, e := range a {
					if s, ok := e.(string); ok {
						c.Audience = append(c.Audience, s)
					}
				}
			}
		case "exp":
			c.Expiry = unix(v)
		case "iat":
			c.IssuedAt = unix(v)
		case "nonce":
			c.Nonce, _ = v.(string)
		default:
			c.Other[k] = v
		}
	}
	return c
}

func fromClaims(c Claims) map[string]any {
	m := maps.Clone(c.Other)
	if m == nil {
		m = map[string]any{}
	}
	set := func(k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	set("iss", c.Issuer, c.Issuer != "")
	set("sub", c.Subject, c.Subject != "")
	set("aud", c.Audience, len(c.Audience) > 0)
	set("exp", c.Expiry.Unix(), !c.Expiry.IsZero())
	set("iat", c.IssuedAt.Unix(), !c.IssuedAt.IsZero())
	set("nonce", c.Nonce, c.Nonce != "")
	return m
}

func unix(v any) time.Time {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return time.Unix(i, 0)
		}
		if f, err := n.Float64(); err == nil {
			return time.Unix(int64(f), 0)
		}
	}
	return time.Time{}
}
