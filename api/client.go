package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
)

// maxResponseBytes bounds what the client reads from one response.
const maxResponseBytes = 32 << 20

// Client calls ajar's HTTP API. Its methods mirror the routes and return the
// broker's types. An error from the server is a *StatusError, which unwraps to the
// *ajar.Error of the response, so callers use ajar.ErrorCode and ajar.ErrorField
// exactly as they would with the core.
type Client struct {
	// BaseURL is the server's URL, such as "http://127.0.0.1:8700".
	BaseURL string
	// Token is the API token sent as "Authorization: Bearer TOKEN"; empty sends none.
	Token string
	// HTTP is the client used for requests; nil means one with a 30s timeout.
	HTTP *http.Client
}

// NewClient returns a client for the server at baseURL that authenticates with token.
func NewClient(baseURL, token string) *Client {
	return &Client{BaseURL: baseURL, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

// StatusError is a non-2xx response: its HTTP status and the error the server sent.
type StatusError struct {
	Status int
	Err    *ajar.Error
}

func (e *StatusError) Error() string { return e.Err.Error() }

// Unwrap returns the server's *ajar.Error.
func (e *StatusError) Unwrap() error { return e.Err }

// WhoAmI returns the caller as the server sees it.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var out WhoAmI
	err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
	return out, err
}

// Targets lists what the caller may request.
func (c *Client) Targets(ctx context.Context) ([]readmodel.TargetInfo, error) {
	var out targetsResponse
	if err := c.do(ctx, http.MethodGet, "/v1/targets", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Targets, nil
}

// CreateRequest asks for access. An auto-approved request comes back active;
// with in.SSHPublicKey set, an active one comes back with its certificate
// (CreateRequestCert).
func (c *Client) CreateRequest(ctx context.Context, in ajar.CreateInput) (*ajar.Request, error) {
	out, err := c.CreateRequestCert(ctx, in)
	if err != nil {
		return nil, err
	}
	return out.Request, nil
}

// CreateRequestCert asks for access and, when in.SSHPublicKey is set and the
// request is active at once, gets the certificate in the same round trip
// (out.SSHCert; nil when the request is not active).
func (c *Client) CreateRequestCert(ctx context.Context, in ajar.CreateInput) (*ajar.CreateOutput, error) {
	var out ajar.CreateOutput
	if err := c.do(ctx, http.MethodPost, "/v1/requests", nil, in, &out); err != nil {
		return nil, err
	}
	if out.Request == nil || out.Request.ID == "" {
		return nil, errors.New("POST /v1/requests: response has no request")
	}
	return &out, nil
}

// GetRequest returns one request. ENOTFOUND if it does not exist or the caller may not see it.
func (c *Client) GetRequest(ctx context.Context, id string) (*ajar.Request, error) {
	path, err := requestPath(id, "")
	if err != nil {
		return nil, err
	}
	var out ajar.Request
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListRequests returns one page of the requests the caller may see, newest
// first: in.Limit of them at most (0: the server's default), from in.Cursor.
// The page's NextCursor, when not empty, is the next page's in.Cursor.
func (c *Client) ListRequests(ctx context.Context, in readmodel.ListInput) (*readmodel.RequestList, error) {
	q := url.Values{}
	if in.Mine {
		q.Set("mine", "true")
	}
	if in.State != "" {
		q.Set("state", string(in.State))
	}
	if in.Limit != 0 {
		q.Set("limit", strconv.Itoa(in.Limit))
	}
	if in.Cursor != "" {
		q.Set("cursor", in.Cursor)
	}
	var out requestsResponse
	if err := c.do(ctx, http.MethodGet, "/v1/requests", q, nil, &out); err != nil {
		return nil, err
	}
	if out.Requests == nil {
		out.Requests = []*ajar.Request{}
	}
	return &readmodel.RequestList{Requests: out.Requests, NextCursor: out.NextCursor}, nil
}

// AllRequests follows ListRequests' cursors from in.Cursor to the last page and
// returns every request on the way.
func (c *Client) AllRequests(ctx context.Context, in readmodel.ListInput) ([]*ajar.Request, error) {
	var all []*ajar.Request
	for {
		page, err := c.ListRequests(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Requests...)
		if page.NextCursor == "" {
			return all, nil
		}
		if page.NextCursor == in.Cursor {
			return nil, fmt.Errorf("list requests: the server returned the same cursor twice")
		}
		in.Cursor = page.NextCursor
	}
}

// Approve records the caller's approval of request id.
func (c *Client) Approve(ctx context.Context, id, comment string) (*ajar.Request, error) {
	return c.action(ctx, id, "approve", approveBody{Comment: comment})
}

// Deny ends a pending request with a reason.
func (c *Client) Deny(ctx context.Context, id, reason string) (*ajar.Request, error) {
	return c.action(ctx, id, "deny", denyBody{Reason: reason})
}

// Revoke ends an active request early.
func (c *Client) Revoke(ctx context.Context, id string) (*ajar.Request, error) {
	return c.action(ctx, id, "revoke", emptyBody{})
}

// Cancel withdraws a request that has not been granted.
func (c *Client) Cancel(ctx context.Context, id string) (*ajar.Request, error) {
	return c.action(ctx, id, "cancel", emptyBody{})
}

// IssueSSHCert certifies publicKey (authorized_keys format) for the caller's active request id.
func (c *Client) IssueSSHCert(ctx context.Context, id string, publicKey []byte) (*ajar.SSHCertOutput, error) {
	path, err := requestPath(id, "ssh-cert")
	if err != nil {
		return nil, err
	}
	var out ajar.SSHCertOutput
	if err := c.do(ctx, http.MethodPost, path, nil, sshCertBody{PublicKey: string(publicKey)}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SSHCA returns the SSH CA public key in authorized_keys format, without a trailing
// newline. It needs no token.
func (c *Client) SSHCA(ctx context.Context) (string, error) {
	b, err := c.text(ctx, "/v1/ssh/ca")
	return strings.TrimRight(string(b), "\r\n"), err
}

// Audit returns one page of audit events with Seq > f.AfterSeq, in Seq order.
// f.Subject selects one request's events; f.Limit (at most MaxAuditLimit) bounds the
// page, 0 meaning the server's default. Page by passing the last Seq as AfterSeq.
func (c *Client) Audit(ctx context.Context, f ajar.AuditFilter) ([]ajar.AuditEvent, error) {
	q := url.Values{}
	if f.Subject != "" {
		q.Set("request", f.Subject)
	}
	if f.AfterSeq != 0 {
		q.Set("after", strconv.FormatInt(f.AfterSeq, 10))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out auditResponse
	if err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// SearchAudit returns one page of the audit events matching q, newest first,
// and, when more (older) ones may match, next: the next page is the same q
// with Before set to next (0: no more). A page may hold fewer events than
// q.Limit, even none, and still have a next (see readmodel.SearchAudit). q must name a user, target, action, time range
// or Before (else EINVALID: without them GET /v1/audit lists in seq order, see
// Audit); q.Request narrows the search to one request. q.Limit (at most
// MaxAuditLimit; a page holds at most readmodel.MaxAuditSearchLimit) bounds
// the page, 0 meaning the server's default. An admin searches the whole log,
// anyone else the events of the requests they can see.
func (c *Client) SearchAudit(ctx context.Context, q readmodel.AuditQuery) (events []ajar.AuditEvent, next int64, err error) {
	v := url.Values{}
	for name, s := range map[string]string{"request": q.Request, "user": q.User, "target": q.Target, "action": q.Action} {
		if s != "" {
			v.Set(name, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("since", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("until", q.To.UTC().Format(time.RFC3339Nano))
	}
	if q.Before != 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if !slices.ContainsFunc(auditSearchParams, v.Has) {
		return nil, 0, ajar.Errorf(ajar.EINVALID, "an audit search needs a user, target, action, time range or before")
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out auditResponse
	if err := c.do(ctx, http.MethodGet, "/v1/audit", v, nil, &out); err != nil {
		return nil, 0, err
	}
	switch {
	case !out.HasMore:
		return out.Events, 0, nil
	case out.NextBefore > 0:
		return out.Events, out.NextBefore, nil
	case len(out.Events) > 0: // a server from before next_before
		return out.Events, out.Events[len(out.Events)-1].Seq, nil
	}
	return nil, 0, errors.New("the server said more events match but gave no place to go on from")
}

// Checkpoint returns a freshly signed checkpoint of the audit log (a signed note), byte for byte.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.text(ctx, "/v1/audit/checkpoint")
}

// AuditKey returns the note verifier key for checkpoints, without a trailing
// newline. It needs no token.
func (c *Client) AuditKey(ctx context.Context) (string, error) {
	b, err := c.text(ctx, "/v1/audit/key")
	return strings.TrimRight(string(b), "\r\n"), err
}

func (c *Client) action(ctx context.Context, id, verb string, body any) (*ajar.Request, error) {
	path, err := requestPath(id, verb)
	if err != nil {
		return nil, err
	}
	var out ajar.Request
	if err := c.do(ctx, http.MethodPost, path, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// requestPath is /v1/requests/ID[/VERB] with the id escaped.
func requestPath(id, verb string) (string, error) {
	if id == "" {
		return "", ajar.FieldErrorf("id", "is required")
	}
	p := "/v1/requests/" + url.PathEscape(id)
	if verb != "" {
		p += "/" + verb
	}
	return p, nil
}

// text GETs a text/plain resource.
func (c *Client) text(ctx context.Context, path string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read response: %w", path, err)
	}
	return b, nil
}

// do sends a JSON request (body may be nil) and decodes a JSON response into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
		if !isJSON(resp) {
			return notAjar(resp)
		}
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// send performs the request and returns the response if its status is 2xx; any
// other status becomes a *StatusError and the body is closed.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/plain")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The *url.Error names the URL, never the headers, so the token stays out.
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, responseError(resp)
}

// responseError decodes the error envelope of a non-2xx response. A body that is not
// an envelope (a proxy's error page) gets the code its status implies.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env errorEnvelope
	if err := json.Unmarshal(b, &env); err == nil && env.Error.Code != "" {
		return &StatusError{Status: resp.StatusCode, Err: &ajar.Error{
			Code: env.Error.Code, Message: env.Error.Message, Field: env.Error.Field,
		}}
	}
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		return notAjar(resp) // ajar answers every /v1 path with its envelope
	}
	return &StatusError{Status: resp.StatusCode, Err: &ajar.Error{
		Code:    codeOf(resp.StatusCode),
		Message: "server answered " + resp.Status,
	}}
}

// isJSON reports whether resp says its body is JSON, as every ajar API answer does.
func isJSON(resp *http.Response) bool {
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), "application/json")
}

// notAjar is the error for an answer no ajar server gives (an HTML page, a
// 404 without the error envelope): the server URL points somewhere else. Its
// code is the one the status implies, as for any answer without the envelope.
func notAjar(resp *http.Response) error {
	where, what := "the server", "it answered "+resp.Status
	if rq := resp.Request; rq != nil && rq.URL != nil {
		where = rq.URL.Scheme + "://" + rq.URL.Host
		what = fmt.Sprintf("%s %s answered %s", rq.Method, rq.URL.Path, resp.Status)
	}
	return &StatusError{Status: resp.StatusCode, Err: &ajar.Error{
		Code:    codeOf(resp.StatusCode),
		Message: fmt.Sprintf("%s is not an ajar server: %s, not the ajar API; check --server or AJAR_SERVER", where, what),
	}}
}

// codeOf is the inverse of HTTPStatus, for responses without an envelope:
// EINTERNAL for a status codeStatus does not name.
func codeOf(status int) string {
	for code, st := range codeStatus {
		if st == status {
			return code
		}
	}
	return ajar.EINTERNAL
}
