// Package api is ajar's HTTP API: the server that exposes the broker under /v1 and
// the Go client that the CLI (and anything else) uses to talk to it. Both share the
// root package's input and output types (wire.go), so the JSON on the wire is theirs.
//
// The server decodes and validates input at the edge, calls the core, and renders
// the result; it holds no business rules. It alone maps error codes to HTTP statuses.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// Core is what the API needs from ajar's core: methods of *broker.Service and of
// the read model beside it (*readmodel.Reader: the targets, the lists, the audit
// log and its checkpoints), as cmd/ajar/serve.go combines them, so tests can
// substitute a fake. Every method returns an *ajar.Error whose code the server
// maps to a status; any other error is reported as internal.
type Core interface {
	Targets(ctx context.Context, u ajar.User) ([]readmodel.TargetInfo, error)
	CreateRequest(ctx context.Context, u ajar.User, in ajar.CreateInput) (*ajar.Request, error)
	GetRequest(ctx context.Context, u ajar.User, id string) (*ajar.Request, error)
	ListRequests(ctx context.Context, u ajar.User, in readmodel.ListInput) (*readmodel.RequestList, error)
	Approve(ctx context.Context, u ajar.User, id, comment string) (*ajar.Request, error)
	Deny(ctx context.Context, u ajar.User, id, reason string) (*ajar.Request, error)
	Revoke(ctx context.Context, u ajar.User, id string) (*ajar.Request, error)
	Cancel(ctx context.Context, u ajar.User, id string) (*ajar.Request, error)
	IssueSSHCert(ctx context.Context, u ajar.User, id string, publicKey []byte) (*ajar.SSHCertOutput, error)
	SSHCA(ctx context.Context) (string, error)
	Audit(ctx context.Context, u ajar.User, f ajar.AuditFilter) ([]ajar.AuditEvent, error)
	SearchAudit(ctx context.Context, u ajar.User, q readmodel.AuditQuery) (*readmodel.AuditSearch, error)
	Checkpoint(ctx context.Context, u ajar.User) ([]byte, error)
	AuditKey() string
	WhoAmI(ctx context.Context, u ajar.User) (ajar.Caller, error)
}

// DefaultAddr is where the server listens when Options.Addr is empty.
const DefaultAddr = "127.0.0.1:8700"

// Options configures a Server. Only Addr is commonly set; the zero value of every
// other field is a working default.
type Options struct {
	// Addr is the TCP address to listen on ("127.0.0.1:8700", ":0" for any free port).
	Addr string
	// Logger receives request logs and internal errors. Nil discards them.
	Logger *slog.Logger
	// Metrics, if not nil, is served at GET /metrics (for example promhttp.Handler()).
	Metrics http.Handler
	// Ready, if not nil, is called by GET /readyz; an error makes it answer 503.
	Ready func(ctx context.Context) error
	// ShutdownTimeout bounds how long Close waits for requests in flight (default 10s).
	ShutdownTimeout time.Duration
	// Web, if not nil, serves every path the API does not (the web pages at "/").
	// It sets its own Content-Security-Policy and cache headers.
	Web http.Handler
	// SSHHosts, if not nil, serves the host-agent routes (GET /v1/ssh/krl,
	// GET /v1/ssh/keys, POST /v1/ssh/sessions); without it they answer not_found.
	SSHHosts SSHHosts
	// Login, if not nil, serves the CLI login routes (api/login.go); without it
	// they answer not_found (no single sign-on configured).
	Login Login
}

// Server serves ajar's HTTP API. Create it with NewServer, then Open it.
type Server struct {
	core    Core
	ids     Identity
	opts    Options
	log     *slog.Logger
	handler http.Handler

	mu   sync.Mutex
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve returns
}

// NewServer returns a server for core that authenticates callers with ids. It
// does not listen until Open.
func NewServer(core Core, ids Identity, opts Options) *Server {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{core: core, ids: ids, opts: opts, log: log}
	s.handler = s.routes()
	return s
}

// Handler returns the server's full handler (routes and middleware), for tests and
// for embedding in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Open binds the listener, so Addr is known (and a ":0" port chosen) when it returns,
// then serves in the background until Close.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("api: server already open")
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.opts.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}(s.srv, s.done)
	s.log.Info("http server listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the server is bound to, or "" before Open.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns the base URL of the server ("http://127.0.0.1:PORT"), or "" before
// Open. An unspecified listen address (":8700", "0.0.0.0") is given as loopback so
// the URL can be dialled.
func (s *Server) URL() string {
	addr := s.Addr()
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Close stops accepting connections and waits up to Options.ShutdownTimeout for
// requests in flight, then closes whatever is left. It is safe to call before Open
// and more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shut down http server: %w", err), srv.Close())
	}
	<-done
	return err
}
