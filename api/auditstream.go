package api

import (
	"context"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/audit"
	"github.com/ajar-dev/ajar/readmodel"
)

// AuditStreamCore is the read model behind GET /v1/audit/stream
// (readmodel.Reader). The server serves that route only when its Core also
// implements it.
type AuditStreamCore interface {
	ExportAuditRecords(ctx context.Context, u ajar.User, after int64, fn func(*audit.Records) error) error
}

var _ AuditStreamCore = (*readmodel.Reader)(nil)

// auditStreamIdle is how long a stream may make no progress, on either side,
// before it is given up: the server's write deadline moves on with every page,
// and the client's read deadline with every read.
const auditStreamIdle = 60 * time.Second

// auditRoutes serves the whole audit log as one audit stream (package
// audit: StreamWriter), which `ajar audit verify` reads (admins only):
//
//	GET /v1/audit/stream[?after=SEQ] → application/vnd.ajar.audit-stream.v1
//
// The events after SEQ up to the head when the request came. An error before
// the first byte is an ordinary JSON error; an error later ends the stream with
// an error record, and a stream cut short has no end record: the reader fails
// either way.
func (s *Server) auditRoutes(mux *http.ServeMux) {
	ac, ok := s.core.(AuditStreamCore)
	if !ok {
		return
	}
	mux.HandleFunc("GET /v1/audit/stream", s.authed(func(w http.ResponseWriter, r *http.Request, u ajar.User) {
		q, err := parseQuery(r, "after")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		after, err := q.int("after", math.MaxInt64)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		rc := http.NewResponseController(w)
		var sw *audit.StreamWriter
		err = ac.ExportAuditRecords(r.Context(), u, after, func(page *audit.Records) error {
			// The server's WriteTimeout bounds a whole response; a long log
			// needs longer, as long as it moves.
			rc.SetWriteDeadline(time.Now().Add(auditStreamIdle))
			if sw == nil {
				w.Header().Set("Content-Type", audit.StreamContentType)
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusOK)
				sw = audit.NewStreamWriter(w)
			}
			if err := sw.Records(page); err != nil {
				return err
			}
			return sw.Flush()
		})
		switch {
		case sw == nil && err != nil:
			s.writeError(w, r, err)
		case sw == nil:
			// An empty log, or nothing after after: a stream with no events.
			w.Header().Set("Content-Type", audit.StreamContentType)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			audit.NewStreamWriter(w).End()
		case err != nil:
			s.log.ErrorContext(r.Context(), "audit stream", "err", err)
			sw.Fail("internal error") // the reader fails on it; if the client is gone, nothing to do
		default:
			sw.End()
		}
	}))
}

// AuditStream returns the audit log after after (0: all of it) as an audit
// stream to verify with audit.VerifyStream (or read with audit.StreamPages),
// which fails if it is cut short. The
// caller closes it. A server without the route (older than the stream) gives
// an ENOTFOUND error: page through Audit instead. Reading gives up after a
// minute without data.
func (c *Client) AuditStream(ctx context.Context, after int64) (io.ReadCloser, error) {
	q := url.Values{}
	if after != 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	// No total timeout: a long log takes as long as it takes; the idle timer
	// below stops a stream that stalls.
	hc := *defaultHTTPClient
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	hc.Timeout = 0
	ctx, cancel := context.WithCancel(ctx)
	resp, err := (&Client{BaseURL: c.BaseURL, Token: c.Token, HTTP: &hc}).send(ctx, http.MethodGet, "/v1/audit/stream", q, nil)
	if err != nil {
		cancel()
		if se, ok := errors.AsType[*StatusError](err); ok && se.Status == http.StatusNotFound && se.Err.Code == ajar.ENOTFOUND {
			return nil, ajar.Errorf(ajar.ENOTFOUND, "this server has no audit stream")
		}
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != audit.StreamContentType {
		resp.Body.Close()
		cancel()
		return nil, notAjar(resp)
	}
	return newIdleReader(resp.Body, cancel, auditStreamIdle), nil
}

// idleReader cancels its request when no Read returns for idle.
type idleReader struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
	once   sync.Once
}

func newIdleReader(body io.ReadCloser, cancel context.CancelFunc, idle time.Duration) *idleReader {
	return &idleReader{body: body, cancel: cancel, idle: idle, timer: time.AfterFunc(idle, cancel)}
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	r.timer.Reset(r.idle)
	return n, err
}

func (r *idleReader) Close() error {
	r.once.Do(func() { r.timer.Stop(); r.cancel() })
	return r.body.Close()
}
