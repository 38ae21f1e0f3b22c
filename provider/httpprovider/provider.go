// Package httpprovider is the http provider: the contract for targets ajar has
// no built-in provider for. ajar POSTs grant, revoke and (optionally) verify
// calls with a JSON body to a service the operator runs, signed with HMAC-SHA256
// like the webhook notifications (with a timestamp in the signed text), with an
// Idempotency-Key header that is the same on every retry of a call. The handle
// the grant answers with is kept with the grant and sent back with its revoke.
// The scheduler's usual retries, backoff and revoke_failed alerting apply: any
// failure of a revoke is retried, never dropped. docs/providers/http.md is the
// spec, with an example receiver.
package httpprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/dbx"
	"github.com/ajar-dev/ajar/notify"
)

// Name is the provider type in the policy file.
const Name = "http"

// HandleVersion is the version of the Handle.Data this package writes.
const HandleVersion = 1

// Headers of every call.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with the
	// shared secret, of the timestamp header's value, ".", and the body.
	HeaderSignature = notify.HeaderSignature
	// HeaderTimestamp is the Unix time of the call in seconds; receivers refuse
	// calls more than MaxSkew away from their clock.
	HeaderTimestamp = "X-Ajar-Timestamp"
	// HeaderIdempotencyKey is the same on every retry of one call
	// ("REQUEST_ID:ACTION").
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderAction is "grant", "revoke" or "verify" (also in the URL path).
	HeaderAction = "X-Ajar-Action"
)

// MaxSkew is how far a call's timestamp may be from the receiver's clock.
const MaxSkew = 5 * time.Minute

// maxHandle bounds the handle a receiver may return; maxBody bounds what is read.
const (
	maxHandle = 16 << 10
	maxBody   = 64 << 10
)

// Config is the config of one http target, for example
//
//	{"url": "https://access.internal/ajar", "secret_env": "AJAR_HTTP_SECRET", "timeout": "10s", "verify": true}
type Config struct {
	// URL is the receiver's base URL; calls go to URL/grant, URL/revoke and
	// URL/verify. https, or http to a loopback address.
	URL string
	// SecretEnv names the environment variable of ajar serve holding the HMAC
	// secret (at least 32 bytes).
	SecretEnv string
	// Timeout bounds each call (default 10s, at most 1m).
	Timeout time.Duration
	// Verify says the receiver answers verify calls (drift checks).
	Verify bool
	// Params are the request parameters the receiver takes (--param NAME=VALUE);
	// any other is refused when the request is made.
	Params []string
}

var configFields = []string{"url", "secret_env", "timeout", "verify", "params"}

var paramNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// maxParamValue bounds a parameter's value.
const maxParamValue = 256

// CheckConfig returns every problem with an http target config.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, configFields...)
	cfg := Config{
		URL:       f.String("url", true),
		SecretEnv: f.String("secret_env", true),
		Timeout:   f.Duration("timeout"),
	}
	cfg.Verify = f.Bool("verify")
	cfg.Params = f.Strings("params")
	for i, n := range cfg.Params {
		if !paramNameRE.MatchString(n) || slices.Index(cfg.Params, n) < i {
			f.Add(fmt.Sprintf("params[%d]", i), "%q is not a parameter name (a-z, 0-9 and _, starting with a letter, up to 32) or is listed twice", n)
		}
	}
	if cfg.URL != "" {
		u, err := url.Parse(cfg.URL)
		switch {
		case err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
			f.Add("url", "must be an absolute URL without credentials, query or fragment")
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopback(u.Hostname()):
		default:
			f.Add("url", "must be https (http only to a loopback address): the calls carry grants")
		}
	}
	if cfg.SecretEnv != "" && !dbx.ValidEnvName(cfg.SecretEnv) {
		f.Add("secret_env", "%q is not an environment variable name", cfg.SecretEnv)
	}
	if cfg.Timeout > time.Minute {
		f.Add("timeout", "must be at most 1m, not %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return cfg, f.Problems()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Provider is the http provider of one target. It is safe for concurrent use.
type Provider struct {
	target string
	cfg    Config
	secret []byte
	client *http.Client
	now    func() time.Time
}

var (
	_ ajar.Provider        = (*Provider)(nil)
	_ ajar.Verifier        = (*Provider)(nil)
	_ ajar.ParamsValidator = (*Provider)(nil)
)

// ValidateParams accepts the parameters the target's config names, each a
// printable value of at most 256 bytes.
func (p *Provider) ValidateParams(params map[string]string) error {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(p.cfg.Params, k) {
			if len(p.cfg.Params) == 0 {
				return ajar.FieldErrorf("params."+k, "target %s takes no parameters", p.target)
			}
			return ajar.FieldErrorf("params."+k, "unknown parameter: target %s takes %s", p.target, strings.Join(p.cfg.Params, ", "))
		}
		v := params[k]
		if len(v) > maxParamValue || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) {
			return ajar.FieldErrorf("params."+k, "must be printable text of at most %d bytes", maxParamValue)
		}
	}
	return nil
}

// New returns the provider for target, reading the secret from the environment.
func New(target string, raw json.RawMessage) (*Provider, error) {
	cfg, probs := decodeConfig(raw)
	if len(probs) > 0 {
		return nil, probs
	}
	secret := os.Getenv(cfg.SecretEnv)
	if len(secret) < 32 {
		return nil, fmt.Errorf("%s: the environment variable %s must hold the shared secret, at least 32 bytes", Name, cfg.SecretEnv)
	}
	return &Provider{
		target: target, cfg: cfg, secret: []byte(secret), now: time.Now,
		client: &http.Client{
			Timeout: cfg.Timeout,
			// A redirect is an error: the signed call must not go elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Window is the time of a grant, in a call's body.
type Window struct {
	ExpiresAt time.Time `json:"expires_at"`
	NotAfter  time.Time `json:"not_after,omitzero"`
}

// Call is the JSON body of every call.
type Call struct {
	Action    string            `json:"action"`
	RequestID string            `json:"request_id"`
	Requester string            `json:"requester"`
	Target    string            `json:"target"`
	Window    Window            `json:"window"`
	Params    map[string]string `json:"params,omitempty"`
	// Handle is what the receiver answered the grant with (revoke, verify); null
	// when the grant's outcome is unknown (revoke whatever the request has).
	Handle json.RawMessage `json:"handle"`
}

// handleData is Handle.Data for HandleVersion 1.
type handleData struct {
	Handle json.RawMessage `json:"handle"`
}

// Sign returns the signature header value of a call: see HeaderSignature.
func Sign(secret []byte, timestamp string, body []byte) string {
	return notify.Sign(secret, append([]byte(timestamp+"."), body...))
}

// VerifyRequest checks a received call's timestamp and signature (for Go
// receivers): it returns an error unless the timestamp is within MaxSkew of now
// and the signature is body's.
func VerifyRequest(secret []byte, h http.Header, body []byte, now time.Time) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no valid " + HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return errors.New("stale or future timestamp")
	}
	if !notify.Verify(secret, append([]byte(ts+"."), body...), h.Get(HeaderSignature)) {
		return errors.New("bad signature")
	}
	return nil
}

// StatusError is a receiver's answer that was not 2xx.
type StatusError struct {
	Action string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: receiver answered %d %s", e.Action, e.Status, e.Body)
}

// call posts one call and decodes a 2xx answer into out (if not nil).
func (p *Provider) call(ctx context.Context, c Call, out any) error {
	body, err := json.Marshal(c)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(p.cfg.URL, "/")+"/"+c.Action, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(p.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ajar-http-provider")
	req.Header.Set(HeaderAction, c.Action)
	req.Header.Set(HeaderIdempotencyKey, c.RequestID+":"+c.Action)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(p.secret, ts, body))
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("%s %s: %w", c.Action, c.RequestID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", c.Action, c.RequestID, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return &StatusError{Action: c.Action + " " + c.RequestID, Status: resp.StatusCode, Body: msg}
	}
	if len(b) > maxBody {
		return fmt.Errorf("%s %s: the answer is over %d bytes", c.Action, c.RequestID, maxBody)
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not the JSON the spec says: %w", c.Action, c.RequestID, err)
		}
	}
	return nil
}

func newCall(action string, g ajar.GrantRequest) Call {
	return Call{Action: action, RequestID: g.RequestID, Requester: g.Requester, Target: g.Target,
		Window: Window{ExpiresAt: g.ExpiresAt, NotAfter: g.NotAfter}, Params: g.Params, Handle: json.RawMessage("null")}
}

// Grant calls URL/grant and keeps the handle the receiver answers with. A 4xx
// answer (but 408 and 429) is EINVALID: the receiver refused and retrying cannot
// help; anything else that fails is retried.
func (p *Provider) Grant(ctx context.Context, req ajar.GrantRequest) (ajar.Handle, error) {
	if req.RequestID == "" {
		return ajar.Handle{}, ajar.FieldErrorf("request_id", "is required")
	}
	var ans struct {
		Handle json.RawMessage `json:"handle"`
	}
	if err := p.call(ctx, newCall("grant", req), &ans); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && se.Status != 408 && se.Status != 429 {
			return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "%s", se.Error())
		}
		return ajar.Handle{}, err
	}
	if len(ans.Handle) > maxHandle {
		return ajar.Handle{}, ajar.Errorf(ajar.EINVALID, "grant %s: the receiver's handle is over %d bytes", req.RequestID, maxHandle)
	}
	if len(ans.Handle) == 0 {
		ans.Handle = json.RawMessage("null")
	}
	data, err := json.Marshal(handleData{Handle: ans.Handle})
	if err != nil {
		return ajar.Handle{}, err
	}
	return ajar.Handle{Provider: Name, Version: HandleVersion, Grant: req, Data: data}, nil
}

func (p *Provider) check(h ajar.Handle) (Call, error) {
	if h.Provider != Name || h.Version != HandleVersion {
		return Call{}, ajar.Errorf(ajar.EINVALID, "%s cannot handle a %q version %d grant", Name, h.Provider, h.Version)
	}
	c := newCall("", h.Grant)
	if len(h.Data) > 0 {
		var d handleData
		if err := json.Unmarshal(h.Data, &d); err != nil {
			return Call{}, ajar.Errorf(ajar.EINVALID, "handle of request %s: %v", h.Grant.RequestID, err)
		}
		if len(d.Handle) > 0 {
			c.Handle = d.Handle
		}
	}
	return c, nil
}

// Revoke calls URL/revoke with the grant's handle (null for an intent: the
// receiver removes whatever the request has). The receiver answers 2xx when the
// access is gone, also when it was gone already; anything else is retried.
func (p *Provider) Revoke(ctx context.Context, h ajar.Handle) error {
	c, err := p.check(h)
	if err != nil {
		return err
	}
	c.Action = "revoke"
	return p.call(ctx, c, nil)
}

// Verify calls URL/verify when the target says the receiver answers it
// ({"present": true|false}); otherwise it reports the access present (ajar
// cannot tell, and its revocation does not depend on it).
func (p *Provider) Verify(ctx context.Context, h ajar.Handle) (bool, error) {
	c, err := p.check(h)
	if err != nil {
		return false, err
	}
	if !p.cfg.Verify {
		return true, nil
	}
	c.Action = "verify"
	var ans struct {
		Present *bool `json:"present"`
	}
	if err := p.call(ctx, c, &ans); err != nil {
		return false, err
	}
	if ans.Present == nil {
		return false, fmt.Errorf("verify %s: the answer has no \"present\"", h.Grant.RequestID)
	}
	return *ans.Present, nil
}
