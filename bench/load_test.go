package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// client calls one server's API, each call as the next of its users. The
// measured calls go over conn, the client's own keep-alive connection, in
// HTTP/1.1 written and read here: net/http's client (a connection pool, two
// goroutines per connection and a hand-off per call) cost the load generator
// about 0.11 ms of CPU a call, on the 2 cores the server is measured on (as
// wrk and other load generators do, this one stays out of the server's way).
// Each goroutine of measure has its own client (worker).
type client struct {
	url    string
	host   string // host:port of url
	tokens []string
	next   *atomic.Uint64
	http   *http.Client // the calls before a measurement (touchUsers)
	conn   net.Conn     // nil until the first post
	r      *bufio.Reader
	buf    []byte // the request being written
}

func newClient(rawURL string, tokens []string, conns int) (*client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench client: want an http://host:port URL, got %q", rawURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conns, conns
	return &client{url: rawURL, host: u.Host, tokens: tokens, next: new(atomic.Uint64),
		http: &http.Client{Transport: tr, Timeout: time.Minute}}, nil
}

// worker returns a client of the same server and users with a connection of
// its own.
func (c *client) worker() *client {
	return &client{url: c.url, host: c.host, tokens: c.tokens, next: c.next, http: c.http}
}

// close closes the client's connection, if it has one.
func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

// user returns the token of the next user: one operation's calls are all made
// as that user.
func (c *client) user() string { return c.tokens[c.next.Add(1)%uint64(len(c.tokens))] }

// post sends body as JSON as the user whose token is tok and decodes a 2xx
// response into out. A call that fails on a kept-alive connection is made
// once more on a new one.
func (c *client) post(ctx context.Context, tok, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	c.buf = append(c.buf[:0], "POST "...)
	c.buf = append(c.buf, path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: "...)
	c.buf = append(c.buf, c.host...)
	c.buf = append(c.buf, "\r\nAuthorization: Bearer "...)
	c.buf = append(c.buf, tok...)
	c.buf = append(c.buf, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(b)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, b...)
	reused := c.conn != nil
	status, data, err := c.roundTrip(ctx)
	if err != nil && reused {
		// The server may close a kept-alive connection at any time (its idle
		// timeout): once more, on a new one.
		status, data, err = c.roundTrip(ctx)
	}
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if status/100 != 2 {
		return fmt.Errorf("POST %s: %d: %s", path, status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

// roundTrip writes c.buf on c's connection (dialing it first if needed) and
// reads the response. On an error the connection is closed.
func (c *client) roundTrip(ctx context.Context) (int, []byte, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.host)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.r = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	c.conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.conn.Write(c.buf); err != nil {
		c.close()
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.close()
		return 0, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode, data, err
}

// touchUsers makes one call as each user, conc at a time, so that every
// token's first use (which records it: a write) is over before a measurement.
func (c *client) touchUsers(ctx context.Context, conc int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(c.tokens))
	sem := make(chan struct{}, conc)
	for _, tok := range c.tokens {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/whoami", nil)
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := c.http.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("GET /v1/whoami: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// The responses, as far as the benchmark looks at them.
type (
	certOut struct {
		Certificate string `json:"certificate"`
	}
	requestOut struct {
		ID      string   `json:"id"`
		State   string   `json:"state"`
		SSHCert *certOut `json:"ssh_cert"` // only with ssh_public_key (the one-call path)
	}
	accessOut struct {
		Request *requestOut `json:"request"`
		Reused  bool        `json:"reused"`
		SSHCert *certOut    `json:"ssh_cert"`
	}
)

// errNoCert means the server answered a create with ssh_public_key without a
// certificate: it does not implement the one-call path.
var errNoCert = errors.New("server does not return ssh_cert")

// paths are the ways to go from nothing to an SSH certificate over HTTP.
type paths struct {
	pubKey string        // an authorized_keys line
	ip     atomic.Uint32 // the last source_ip handed out by freshIP
}

func newPaths() *paths {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	return &paths{pubKey: string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(sshPub)))}
}

// createBody is an auto-approved request for demo-ssh (the demo policy
// approves up to 5m at once).
func createBody(ip string) map[string]any {
	return map[string]any{"target": "demo-ssh", "duration": "5m", "reason": "bench", "params": map[string]string{"source_ip": ip}}
}

// oneCall is POST /v1/requests with ssh_public_key: the request and its
// certificate in one response.
func (p *paths) oneCall(ctx context.Context, c *client) error {
	body := createBody("127.0.0.1")
	body["ssh_public_key"] = p.pubKey
	var r requestOut
	if err := c.post(ctx, c.user(), "/v1/requests", body, &r); err != nil {
		if bytes.Contains([]byte(err.Error()), []byte(`"field":"ssh_public_key"`)) {
			return fmt.Errorf("%w: %w", errNoCert, err) // a server that does not know the field
		}
		return err
	}
	if r.State != "active" {
		return fmt.Errorf("request is %s, want active", r.State)
	}
	if r.SSHCert == nil {
		return errNoCert
	}
	if r.SSHCert.Certificate == "" {
		return errors.New("empty certificate")
	}
	return nil
}

// twoCalls is POST /v1/requests, then POST /v1/requests/{id}/ssh-cert.
func (p *paths) twoCalls(ctx context.Context, c *client) error {
	tok := c.user()
	var r requestOut
	if err := c.post(ctx, tok, "/v1/requests", createBody("127.0.0.1"), &r); err != nil {
		return err
	}
	if r.State != "active" {
		return fmt.Errorf("request is %s, want active", r.State)
	}
	var cert certOut
	if err := c.post(ctx, tok, "/v1/requests/"+r.ID+"/ssh-cert", map[string]string{"public_key": p.pubKey}, &cert); err != nil {
		return err
	}
	if cert.Certificate == "" {
		return errors.New("empty certificate")
	}
	return nil
}

// access is POST /v1/ssh/access with a source_ip never used before, so that
// no earlier request can be reused and each call makes a new one.
func (p *paths) access(ctx context.Context, c *client) error {
	n := p.ip.Add(1)
	ip := fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
	body := createBody(ip)
	body["public_key"] = p.pubKey
	var out accessOut
	if err := c.post(ctx, c.user(), "/v1/ssh/access", body, &out); err != nil {
		return err
	}
	switch {
	case out.Request == nil || out.Request.State != "active":
		return errors.New("no active request in the response")
	case out.Reused:
		return errors.New("a request was reused")
	case out.SSHCert == nil || out.SSHCert.Certificate == "":
		return errors.New("no certificate in the response")
	}
	return nil
}

// result is one measured window.
type result struct {
	ops      int
	window   time.Duration
	p50, p99 time.Duration
	cpu      time.Duration // the servers' CPU time during the window
	client   time.Duration // the load generator's own CPU time during it
	written  int64         // the bytes the servers wrote during the window
}

func (r result) perSecond() float64 { return float64(r.ops) / r.window.Seconds() }

// measure runs op from conc goroutines, spread round-robin over clients,
// for warm-up then window, and reports the operations that started and ended
// inside the window, with the CPU time the processes pids used during it. The
// first error stops the run and is returned.
func measure(ctx context.Context, clients []*client, pids []int, conc int, window time.Duration, op func(context.Context, *client) error) (result, error) {
	const warmUp = 2 * time.Second
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		from, to atomic.Int64 // the window, in UnixNano; 0: not yet
	)
	for i := range conc {
		wg.Go(func() {
			c := clients[i%len(clients)].worker()
			defer c.close()
			var mine []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(ctx, c); err != nil {
					if ctx.Err() == nil {
						cancel(err)
					}
					break
				}
				t1 := time.Now()
				if f := from.Load(); f != 0 && t0.UnixNano() >= f {
					if e := to.Load(); e != 0 && t1.UnixNano() > e {
						break
					}
					mine = append(mine, t1.Sub(t0))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	sleep(ctx, warmUp)
	cpu0, err := cpuTimes(pids)
	if err != nil {
		cancel(err)
	}
	self0 := selfCPU()
	w0, err := ioWrittenAll(pids)
	if err != nil {
		cancel(err)
	}
	start := time.Now()
	from.Store(start.UnixNano())
	sleep(ctx, window)
	end := time.Now()
	to.Store(end.UnixNano())
	cpu1, err := cpuTimes(pids)
	if err != nil {
		cancel(err)
	}
	self1 := selfCPU()
	w1, err := ioWrittenAll(pids)
	if err != nil {
		cancel(err)
	}
	cancel(nil)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return result{}, err
	}
	if len(lat) == 0 {
		return result{}, errors.New("no operation completed in the window")
	}
	slices.Sort(lat)
	return result{ops: len(lat), window: end.Sub(start), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], cpu: cpu1 - cpu0, client: self1 - self0, written: w1 - w0}, nil
}

// selfCPU is the CPU time (user and system) the load generator has used so
// far: it shares the machine with the server, so what it uses the server
// cannot.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuTimes(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := cpuTime(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

func ioWrittenAll(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		n, err := ioWritten(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
