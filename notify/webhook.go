package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Webhook headers.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body with the
	// shared secret.
	HeaderSignature = "X-Ajar-Signature"
	HeaderEvent     = "X-Ajar-Event"    // the event type
	HeaderEventID   = "X-Ajar-Event-Id" // the event id (also in the body)
)

// Webhook posts each event as JSON to URL, signed with Secret. Any 2xx answer
// is success; anything else (redirects included) is a failure to retry.
type Webhook struct {
	base
	URL    string
	Secret []byte
	Client *http.Client
}

// Sign returns the signature header value of body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature with secret, comparing in
// constant time. Receivers should also check the event's time and remember ids
// to refuse replays.
func Verify(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(strings.TrimSpace(header)))
}

// Send posts event.
func (w *Webhook) Send(ctx context.Context, event []byte) error {
	var meta struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(event, &meta); err != nil {
		return fmt.Errorf("webhook %s: decode event: %w", w.name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(event))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ajar-webhook")
	req.Header.Set(HeaderEvent, meta.Type)
	req.Header.Set(HeaderEventID, meta.ID)
	req.Header.Set(HeaderSignature, Sign(w.Secret, event))
	return post(w.Client, req, "webhook "+w.name)
}

// post sends req and turns anything but a 2xx answer into an error that does
// not include the URL (a Slack URL is a secret).
func post(c *http.Client, req *http.Request, what string) error {
	if c == nil {
		c = newHTTPClient()
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s", what, describeTransportError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return fmt.Errorf("%s: answered %s %s", what, resp.Status, msg)
	}
	return nil
}

// describeTransportError is err without the URL that *url.Error carries.
func describeTransportError(err error) string {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap().Error()
	}
	return err.Error()
}
