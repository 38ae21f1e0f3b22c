package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// assetVersion is a hash of the embedded assets, added to their URLs so a new
// binary's CSS and script replace any cached copy.
var assetVersion = func() string {
	h := sha256.New()
	fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := staticFS.ReadFile(p)
			h.Write([]byte(p))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}()

// serveStatic serves an embedded asset.
func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := staticFS.ReadFile("static/" + name)
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(b)
}

// pages are the parsed templates, one set per page, each with the layout.
type pages struct {
	byName map[string]*template.Template
}

// pageNames are the templates in templates/ that render a whole page.
var pageNames = []string{
	"signin", "targets", "request-form", "inbox", "access", "request", "audit", "evidence", "error", "bounce",
	"device", "device-done", "keys",
}

func loadPages() *pages {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t := template.New(name).Funcs(funcs)
		p.byName[name] = template.Must(t.ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+name+".html"))
	}
	return p
}

// view is what every page template gets.
type view struct {
	Title   string
	Nav     string // the current section: request, inbox, access, audit
	Me      *ajar.Caller
	CSRF    string
	Flash   *flash
	Now     time.Time
	Refresh int // seconds between list refreshes in the browser
	Asset   string
	Extend  bool // the core can extend grants
	Waiting int  // what waits for the user's decision: the count on "Inbox"
	Counted bool // Waiting is set (else render counts it for a signed-in page)
	Data    any
}

// errorPage is the error template's data.
type errorPage struct {
	Status  int
	Message string
	Field   string
	Back    string
}

// render writes a page. A template error is logged and becomes a bare 500:
// nothing has been written yet because the page is rendered to a buffer first.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	v.Asset = assetVersion
	if v.Now.IsZero() {
		v.Now = h.opts.Now()
	}
	v.Refresh = max(1, int(h.opts.Refresh/time.Second))
	v.Extend = h.extender != nil
	if v.Me != nil && !v.Counted {
		v.Waiting, v.Counted = h.awaiting(r.Context(), v.Me.User), true
	}
	var buf bytes.Buffer
	if err := h.pages.byName[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// newView returns a view for a signed-in page, taking the session's flash.
func (h *Handler) newView(rq *req, title, nav string) *view {
	return &view{
		Title: title, Nav: nav, Me: &rq.me, CSRF: rq.session.csrf,
		Flash: h.popFlash(rq), Now: h.opts.Now(),
	}
}

// awaiting is how many requests and extensions wait for the user's decision,
// for the navigation's badge and where sign-in lands; 0 when the core cannot
// count them. A failure to count is logged, not shown: the badge is a hint,
// and the inbox itself reports the error.
func (h *Handler) awaiting(ctx context.Context, u ajar.User) int {
	if h.counter == nil {
		return 0
	}
	n, err := h.counter.Awaiting(ctx, u)
	if err != nil {
		h.log.ErrorContext(ctx, "count awaiting", "err", err)
		return 0
	}
	return n
}

// statusOf maps an error code to the status of the page that reports it: the
// API's mapping, so a page and a JSON response for one error agree.
func statusOf(code string) int {
	return api.HTTPStatus(code)
}

// fail renders err as an error page. Internal errors are logged in full and
// shown only as "internal error". v may be nil (no signed-in page around it).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, v *view, err error) {
	code := ajar.ErrorCode(err)
	status := statusOf(code)
	ep := errorPage{Status: status, Message: ajar.ErrorMessage(err), Field: ajar.ErrorField(err)}
	if status == http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		ep = errorPage{Status: status, Message: "Something went wrong on the server. Try again, and tell your ajar operators if it keeps happening."}
	}
	if v == nil {
		v = &view{}
	}
	v.Title = http.StatusText(status)
	v.Data = ep
	h.render(w, r, status, "error", v)
}

// connectCommands gives, by provider type, the command that uses an active grant.
var connectCommands = map[string]string{
	"ssh-cert": "ajar ssh %s",
}

// funcs are the helpers templates use.
var funcs = template.FuncMap{
	// when formats a time for people, in UTC.
	"when": func(t any) string {
		switch t := t.(type) {
		case time.Time:
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		case *time.Time:
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		return fmt.Sprint(t)
	},
	// iso formats a time for <time datetime>.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// ago is how long before now t was, for people ("4m 10s").
	"ago": func(now, t time.Time) string { return human(now.Sub(t)) },
	// secondsSince and secondsUntil feed the live counters in app.js.
	"secondsSince": func(now, t time.Time) int64 { return int64(now.Sub(t) / time.Second) },
	"secondsUntil": func(now time.Time, t *time.Time) int64 {
		if t == nil {
			return 0
		}
		return max(0, int64(t.Sub(now)/time.Second))
	},
	"left": func(now time.Time, t *time.Time) string {
		if t == nil {
			return ""
		}
		return human(t.Sub(now))
	},
	"dur":   func(d time.Duration) string { return shortDuration(d.String()) },
	"short": shortDuration,
	// details renders an audit event's details as compact JSON, without the
	// \u003c escapes of encoding/json, so "<=" reads as written.
	// details shows an audit event's details as compact JSON, numbers exactly
	// as stored: never through float64, which rounds certificate serials
	// (10717434795369787645 would read ...787000) that auditors match against
	// sshd's log.
	"fields": detailFields, // fields.go: details as key: value
	"details": func(raw json.RawMessage) string {
		var b bytes.Buffer
		if len(raw) == 0 || json.Compact(&b, raw) != nil {
			return string(raw)
		}
		return b.String()
	},
	"pretty": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return ""
		}
		return string(b)
	},
	"hexs": func(b []byte) string { return hex.EncodeToString(b) },
	"shortHash": func(b []byte) string {
		s := hex.EncodeToString(b)
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"join": strings.Join,
	// connect is the command that uses r's grant ("ajar ssh demo-ssh"), or "".
	"connect": func(r *ajar.Request) string {
		if r.Handle == nil {
			return ""
		}
		if f, ok := connectCommands[r.Handle.Provider]; ok {
			return fmt.Sprintf(f, r.Target)
		}
		return ""
	},
	"holdsAccess": func(s ajar.State) bool {
		return s == ajar.StateActive || s == ajar.StateRevoking || s == ajar.StateRevokeFailed
	},
	"stepNo":  func(i int) int { return i + 1 },
	"input":   newInput,
	"inputID": inputID,
	// dict builds the argument of a template that needs several values.
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict: odd number of arguments")
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
	// ifs is s when cond holds, else "".
	"ifs": func(cond bool, s string) string {
		if cond {
			return s
		}
		return ""
	},
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}

// human writes a duration the way people read it: "1h 05m", "4m 10s", "12s".
func human(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	d = d.Round(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var out string
	switch {
	case h >= 48:
		out = fmt.Sprintf("%dd %dh", h/24, h%24)
	case h > 0:
		out = fmt.Sprintf("%dh %02dm", h, m)
	case m > 0:
		out = fmt.Sprintf("%dm %02ds", m, s)
	default:
		out = fmt.Sprintf("%ds", s)
	}
	if neg {
		return "-" + out
	}
	return out
}

// formInput is one labelled input as the "input" template renders it.
type formInput struct {
	ID, Name, Label, Type, Hint, Value, Error string
	Placeholder, List                         string
	Rows                                      int
	Required                                  bool
}

// Describe is the input's aria-describedby: its hint and its error.
func (f formInput) Describe() string {
	var ids []string
	if f.Hint != "" {
		ids = append(ids, f.ID+"-hint")
	}
	if f.Error != "" {
		ids = append(ids, f.ID+"-error")
	}
	return strings.Join(ids, " ")
}

// inputID is the HTML id of the input named name.
func inputID(name string) string { return "f-" + strings.NewReplacer(".", "-", "_", "-").Replace(name) }

// newInput describes an input of a form whose values and errors are keyed by
// input name. opts are "required", "rows=N", "placeholder=TEXT" and "list=ID";
// empty ones are ignored.
func newInput(values, errs map[string]string, name, label, typ, hint string, opts ...string) formInput {
	in := formInput{
		ID: inputID(name), Name: name, Label: label, Type: typ, Hint: hint,
		Value: values[name], Error: errs[name], Rows: 3,
	}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "required":
			in.Required = true
		case "rows":
			fmt.Sscan(v, &in.Rows)
		case "placeholder":
			in.Placeholder = v
		case "list":
			in.List = v
		}
	}
	return in
}
