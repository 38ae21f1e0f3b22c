package mototest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ajar-dev/ajar/internal/awsx"
)

// Call is one AWS API call passing through a Proxy.
type Call struct {
	Service string // the SigV4 signing name: "ec2", "sso", "ssm"...
	Action  string // the operation: "DescribeSessions", "AuthorizeSecurityGroupIngress"...
	Body    []byte
	Request *http.Request
}

// JSON decodes the body of a JSON-protocol call (SSM, SSO Admin, Identity Store).
func (c *Call) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(c.Body, v); err != nil {
		tb.Errorf("decode %s body: %v", c.Action, err)
	}
}

// Handler answers a call itself and returns true, or returns false to let it
// through to moto. It may also pass the call on itself with Forward.
type Handler func(w http.ResponseWriter, c *Call) bool

// Proxy is a fault-injecting reverse proxy in front of a moto server. With no
// handlers it passes every call through unchanged.
type Proxy struct {
	URL string

	target  *url.URL
	forward *httputil.ReverseProxy

	mu       sync.Mutex
	handlers map[string]Handler
	down     bool
	calls    map[string]int
}

// NewProxy starts a proxy in front of s, closed when tb ends.
func NewProxy(tb testing.TB, s *Server) *Proxy {
	tb.Helper()
	target, err := url.Parse(s.URL)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{target: target, handlers: map[string]Handler{}, calls: map[string]int{}}
	p.forward = httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(p)
	tb.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Handle sets the handler for an action; nil removes it.
func (p *Proxy) Handle(action string, h Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h == nil {
		delete(p.handlers, action)
	} else {
		p.handlers[action] = h
	}
}

// SetDown makes the proxy drop every connection without an answer, as if moto had
// stopped (true), or pass calls again (false). moto keeps its state meanwhile.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// Calls returns how many calls of action reached the proxy.
func (p *Proxy) Calls(action string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[action]
}

// Loader returns an awsx.Loader that sends every call through p.
func (p *Proxy) Loader() awsx.Loader { return loader(p.URL) }

// Config returns an SDK config that sends every call through p.
func (p *Proxy) Config(tb testing.TB) aws.Config {
	tb.Helper()
	return config(tb, p.URL)
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	c := &Call{Service: signingName(r), Action: action(r, body), Body: body, Request: r}

	p.mu.Lock()
	p.calls[c.Action]++
	down := p.down
	h := p.handlers[c.Action]
	p.mu.Unlock()

	if down {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		http.Error(w, "moto is down", http.StatusServiceUnavailable)
		return
	}
	if h != nil && h(w, c) {
		return
	}
	p.Forward(w, c)
}

// Forward passes c on to moto.
func (p *Proxy) Forward(w http.ResponseWriter, c *Call) {
	c.Request.Body = io.NopCloser(bytes.NewReader(c.Body))
	c.Request.ContentLength = int64(len(c.Body))
	p.forward.ServeHTTP(w, c.Request)
}

// signingName reads the service from the SigV4 credential scope
// ("Credential=KEY/DATE/REGION/SERVICE/aws4_request").
func signingName(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	_, scope, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	scope, _, _ = strings.Cut(scope, ",")
	parts := strings.Split(scope, "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

// action reads the operation: the X-Amz-Target of JSON protocols, the Action form
// field of query protocols (EC2, IAM, STS).
func action(r *http.Request, body []byte) string {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		_, op, _ := strings.Cut(t, ".")
		return op
	}
	if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
		return v.Get("Action")
	}
	return r.URL.Query().Get("Action")
}

// WriteJSON answers a JSON-protocol call with v.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(v)
}

// WriteJSONError answers a JSON-protocol call with an AWS error.
func WriteJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
}

// WriteQueryError answers a query-protocol call (EC2 style) with an AWS error.
func WriteQueryError(w http.ResponseWriter, status int, code, message string) {
	type e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"Response"`
		Errors    []e      `xml:"Errors>Error"`
		RequestID string   `xml:"RequestID"`
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	xml.NewEncoder(w).Encode(resp{Errors: []e{{code, message}}, RequestID: "mototest"})
}

// Record passes c on to moto and returns moto's answer without sending it, for a
// handler that rewrites what moto said.
func (p *Proxy) Record(c *Call) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.Forward(rec, c)
	return rec
}
