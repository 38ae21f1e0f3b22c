// Package notify delivers ajar's events to the outside world: a generic webhook
// (a JSON POST signed with HMAC-SHA256), a Slack incoming webhook (a readable
// message with the commands and links to act), and the server's own log.
//
// The broker decides what happened and writes each event, once per sink that
// wants it, to the store's outbox in the transaction of the state change; the
// delivery workers (package notify/outbox) then hand the event's JSON to
// Sink.Send until the sink accepts it. Sinks hold no state and never retry by
// themselves. The server's log is a Direct sink: it takes each event in the
// process once the change has committed, without the outbox.
package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Event is one thing that happened, as every sink receives it (the webhook's
// JSON body).
type Event struct {
	ID    string    `json:"id"`   // the same for every sink; receivers can deduplicate by it
	Type  string    `json:"type"` // one of the policy's event types (policy.EventTypes)
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"` // who caused it; "ajar" for the server itself
	// Summary is one readable sentence.
	Summary string   `json:"summary"`
	Request *Request `json:"request,omitempty"`
	// Details are the event's own data (the audit event's details).
	Details json.RawMessage `json:"details,omitempty"`
	// Actions are what the people told can do next: the exact command, and a
	// link to the web page when the server's public URL is configured.
	Actions []Action `json:"actions,omitempty"`
}

// Request is the request an event is about, as it was when the event happened.
type Request struct {
	ID        string     `json:"id"`
	Target    string     `json:"target"`
	Requester string     `json:"requester"`
	Reason    string     `json:"reason"`
	Ticket    string     `json:"ticket,omitempty"`
	Duration  string     `json:"duration"`
	Policy    string     `json:"policy"`
	State     string     `json:"state"`
	StartAt   *time.Time `json:"start_at,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	URL       string     `json:"url,omitempty"` // the request's web page
}

// Action is one thing to do next.
type Action struct {
	Label   string `json:"label"`         // "Approve"
	Who     string `json:"who"`           // "approvers", "requester" or "admins"
	Command string `json:"command"`       // "ajar approve req_..."
	URL     string `json:"url,omitempty"` // the web page to do it on
}

// Sink receives events.
type Sink interface {
	// Name is the sink's name in the policy file.
	Name() string
	// Wants reports whether the sink gets events of this type.
	Wants(eventType string) bool
	// Send delivers one event (its JSON, as encoded from Event). An error means
	// it was not delivered and will be sent again later; Send must give up
	// when ctx ends.
	Send(ctx context.Context, event []byte) error
}

// Direct is a sink that takes each event in the process that made the change,
// once the change has committed (ajar.Tx.AfterCommit), instead of through the
// outbox: the server's log, whose writing cannot fail and is not retried, so
// that the outbox's writes (the event, then its delivery record) would cost
// more than the line. An event lost with a crash between the commit and its
// line is still in the audit log. Send remains for events of the sink the
// outbox holds (enqueued before it was Direct).
type Direct interface {
	Sink
	// Deliver hands ev over; it must not block.
	Deliver(ctx context.Context, ev *Event)
}

// DefaultTimeout bounds one delivery attempt.
const DefaultTimeout = 10 * time.Second

// NewWebhook returns a webhook sink named name, for the event types in events
// (all when empty), posting to url with client (see NewHTTPClient), signed
// with secret.
func NewWebhook(name string, events []string, url string, secret []byte, client *http.Client) *Webhook {
	return &Webhook{base: base{name: name, events: events}, URL: url, Secret: secret, Client: client}
}

// NewSlack returns a Slack sink named name, for the event types in events (all
// when empty), posting to the incoming webhook url with client (see
// NewHTTPClient).
func NewSlack(name string, events []string, url string, client *http.Client) *Slack {
	return &Slack{base: base{name: name, events: events}, URL: url, Client: client}
}

// NewLog returns a log sink named name, for the event types in events (all
// when empty), writing to logger.
func NewLog(name string, events []string, logger *slog.Logger) *Log {
	return &Log{base: base{name: name, events: events}, Logger: logger}
}

// NewHTTPClient returns the client sinks post with; sinks may share one. It
// never follows redirects.
func NewHTTPClient() *http.Client { return newHTTPClient() }

// base is what every sink has: a name and the events it wants.
type base struct {
	name   string
	events []string // empty: all
}

func (b base) Name() string { return b.name }

func (b base) Wants(t string) bool {
	if len(b.events) == 0 {
		return true
	}
	for _, e := range b.events {
		if e == t {
			return true
		}
	}
	return false
}

// newHTTPClient is the client sinks post with. It never follows redirects: an
// event (and its signature) goes only to the configured URL.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: DefaultTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Log writes each event to the server's log: for trying notifications out.
type Log struct {
	base
	Logger *slog.Logger
}

// Send logs the event's type, summary and commands (as Deliver) from its
// JSON: an event the outbox held for the sink.
func (l *Log) Send(ctx context.Context, event []byte) error {
	var ev Event
	if err := json.Unmarshal(event, &ev); err != nil {
		return fmt.Errorf("log sink %s: decode event: %w", l.name, err)
	}
	l.Deliver(ctx, &ev)
	return nil
}

// Deliver logs the event's type, summary and commands (Log is a Direct sink).
func (l *Log) Deliver(ctx context.Context, ev *Event) {
	attrs := make([]any, 0, 10+2*len(ev.Actions))
	attrs = append(attrs, "sink", l.name, "type", ev.Type, "id", ev.ID, "summary", ev.Summary)
	if ev.Request != nil {
		attrs = append(attrs, "request", ev.Request.ID)
	}
	for _, a := range ev.Actions {
		attrs = append(attrs, "do", a.Command)
	}
	l.Logger.InfoContext(ctx, "notification", attrs...)
}
