package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ajar-dev/ajar"
)

// fakeCheck stands in for the provider registry: it knows one provider,
// ssh-cert, which needs at least one non-empty principal and knows two fields.
func fakeCheck(provider string, config json.RawMessage) ajar.Problems {
	if provider != "ssh-cert" {
		return ajar.Problems{{Message: fmt.Sprintf("unknown provider %q", provider)}}
	}
	var c struct {
		Principals    []string `json:"principals"`
		SourceAddress string   `json:"source_address"`
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return ajar.Problems{{Field: "", Message: "bad config: " + err.Error()}}
	}
	var probs ajar.Problems
	if len(c.Principals) == 0 {
		probs = append(probs, ajar.Problem{Field: "principals", Message: "required"})
	}
	for i, p := range c.Principals {
		if p == "" {
			probs = append(probs, ajar.Problem{Field: fmt.Sprintf("principals[%d]", i), Message: "must not be empty"})
		}
	}
	return probs
}

// base is a valid policy file that the cases below break one way or another.
const base = `
server: {listen: 127.0.0.1:8700}
storage: {driver: sqlite, dsn: ./ajar-data/ajar.db}
users:
  - {id: alice@example.com, groups: [engineers]}
  - {id: bob@example.com, groups: [sre]}
  - {id: carol@example.com, groups: [secops]}
admins: [group:secops, carol@example.com]
targets:
  prod-web:
    provider: ssh-cert
    config: {principals: [ubuntu], source_address: request}
  prod-db:
    provider: ssh-cert
    config: {principals: [postgres]}
policies:
  - name: engineers-prod
    targets: [prod-web, prod-db]
    requesters: [group:engineers]
    default_duration: 30m
    max_duration: 2h
    require_reason: true
    ticket_pattern: '^OPS-[0-9]+$'
    approval:
      timeout: 30m
      steps: [{approvers: [group:sre], count: 1}]
      auto_approve: 'request.duration <= duration("10m")'
    extend: {max_extensions: 2, max_total: 4h}
    breakglass: {allowed: [group:sre]}
notifications:
  - {name: sre-chat, type: slack, url_env: AJAR_SLACK_WEBHOOK, events: [request.created]}
`

// edit returns base with each old string replaced by its new one, and fails
// the test if an old string is not there (so a case cannot silently test base).
func edit(tb testing.TB, pairs ...string) string {
	tb.Helper()
	s := base
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			tb.Fatalf("edit: %q not in base", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

// problemsOf returns the ajar.Problems in err, failing the test if there are none.
func problemsOf(tb testing.TB, err error) ajar.Problems {
	tb.Helper()
	var probs ajar.Problems
	if !errors.As(err, &probs) {
		tb.Fatalf("error is %T (%v), want ajar.Problems", err, err)
	}
	return probs
}

func fields(probs ajar.Problems) []string {
	out := make([]string, len(probs))
	for i, p := range probs {
		out[i] = p.Field
	}
	return out
}

type parseCase struct {
	name string
	yaml string
	// want are the exact problem fields, in order.
	want []string
	// msgs are substrings, one per problem, that its message must contain ("" for any).
	msgs []string
	// stricterThanYAML marks a problem that yaml.v3's decoder lets pass.
	stricterThanYAML bool
}

func parseCases(t testing.TB) []parseCase {
	return []parseCase{
		{
			name: "three mistakes at once",
			yaml: edit(t,
				"{id: bob@example.com", "{id: alice@example.com",
				"targets: [prod-web, prod-db]", "targets: [prod-web, prod-dbx]",
				"count: 1}", "count: 0}"),
			want: []string{"users[1].id", "policies[0].targets[1]", "policies[0].approval.steps[0].count"},
			msgs: []string{`"alice@example.com" is already users[0]`, `no target named "prod-dbx"`, "at least 1"},
		},
		{
			name: "unknown field in a rule",
			yaml: edit(t, "    approval:\n", "    aproval:\n"),
			// Only the misspelling: not also "no approval steps", which would be news to nobody.
			want: []string{"policies[0].aproval"},
			msgs: []string{"line 24: unknown field; the fields here are name, targets, requesters"},
		},
		{
			name: "unknown top-level field",
			yaml: base + "polices: []\n",
			want: []string{"polices"},
			msgs: []string{"unknown field"},
		},
		{
			name: "unknown field in a flow mapping",
			yaml: edit(t, "server: {listen: 127.0.0.1:8700}", "server: {listen: 127.0.0.1:8700, port: 1}"),
			want: []string{"server.port"},
			msgs: []string{"line 2: unknown field; the fields here are listen"},
		},
		{
			name: "notifications are typed",
			yaml: edit(t, "{name: sre-chat, type: slack,", "{name: sre-chat, type: slack, extra: {deep: 1},"),
			want: []string{"notifications[0].extra"},
			msgs: []string{"unknown field"},
		},
		{
			name: "bad duration",
			yaml: edit(t, "max_duration: 2h", "max_duration: 2 hours"),
			want: []string{"policies[0].max_duration"},
			msgs: []string{`line 21: invalid duration "2 hours"`},
		},
		{
			name: "duration without unit",
			yaml: edit(t, "timeout: 30m", "timeout: 30"),
			want: []string{"policies[0].approval.timeout"},
			msgs: []string{`invalid duration "30"`},
		},
		{
			name:             "empty key",
			yaml:             edit(t, "{id: alice@example.com, groups: [engineers]}", "{id: alice@example.com, groups: [engineers], ~: x}"),
			want:             []string{"users[0]"},
			msgs:             []string{"line 5: a key is empty"},
			stricterThanYAML: true, // yaml.v3 silently drops it
		},
		{
			name: "list expected",
			yaml: edit(t, "requesters: [group:engineers]", "requesters: group:engineers"),
			want: []string{"policies[0].requesters"},
			msgs: []string{`must be a list, not "group:engineers"`},
		},
		{
			name: "number expected",
			yaml: edit(t, "count: 1", "count: one"),
			want: []string{"policies[0].approval.steps[0].count"},
			msgs: []string{`must be a whole number, not "one"`},
		},
		{
			name: "bool expected",
			yaml: edit(t, "require_reason: true", "require_reason: {a: b}"),
			want: []string{"policies[0].require_reason"},
			msgs: []string{"must be true or false, not a mapping"},
		},
		{
			name: "key given twice",
			yaml: edit(t, "  prod-db:\n", "  prod-web:\n"),
			want: []string{"targets.prod-web"},
			msgs: []string{"line 13: given twice (first on line 10)"},
		},
		{
			name: "yaml syntax error",
			yaml: edit(t, "admins: [group:secops, carol@example.com]", "admins: [group:secops, carol@example.com"),
			want: []string{""},
			msgs: []string{"line"},
		},
		{
			name: "empty file",
			yaml: "# nothing here\n",
			want: []string{""},
			msgs: []string{"empty"},
		},
		{
			name: "two documents",
			yaml: base + "---\nusers: []\n",
			want: []string{""},
			msgs: []string{"second YAML document"},
		},
		{
			name: "no policies",
			yaml: "users: [{id: a@example.com}]\n",
			want: []string{"policies"},
		},
		{
			name: "cel syntax error",
			yaml: edit(t, `auto_approve: 'request.duration <= duration("10m")'`, `auto_approve: 'request.duration <='`),
			want: []string{"policies[0].approval.auto_approve"},
			// The position is in the file: the expression starts at column 22 of line 27.
			msgs: []string{"line 27, column 41: Syntax error"},
		},
		{
			name: "cel type error",
			yaml: edit(t, `auto_approve: 'request.duration <= duration("10m")'`, `auto_approve: 'request.duration + 1 > duration("1m")'`),
			want: []string{"policies[0].approval.auto_approve"},
			msgs: []string{"line 27, column 39: found no matching overload for '_+_' applied to '(duration, int)'"},
		},
		{
			name: "cel not bool",
			yaml: edit(t, `auto_approve: 'request.duration <= duration("10m")'`, `auto_approve: 'request.duration'`),
			want: []string{"policies[0].approval.auto_approve"},
			msgs: []string{"line 27, column 21: must be true or false, but this expression gives a google.protobuf.Duration"},
		},
		{
			name: "cel unknown field and variable",
			yaml: edit(t, `auto_approve: 'request.duration <= duration("10m")'`, `auto_approve: 'request.durration < duration("1m") || user.id == "x"'`),
			want: []string{"policies[0].approval.auto_approve", "policies[0].approval.auto_approve"},
			msgs: []string{"line 27, column 29: undefined field 'durration'", "line 27, column 60: undeclared reference to 'user'"},
		},
		{
			name: "provider config problems are prefixed",
			yaml: edit(t, "config: {principals: [ubuntu], source_address: request}", "config: {principals: [ubuntu, ''], source_address: request}",
				"config: {principals: [postgres]}", "config: {}"),
			want: []string{"targets.prod-db.config.principals", "targets.prod-web.config.principals[1]"},
			msgs: []string{"required", "must not be empty"},
		},
		{
			name: "unknown provider",
			yaml: edit(t, "provider: ssh-cert\n    config: {principals: [postgres]}", "provider: ssh-certs\n    config: {principals: [postgres]}"),
			want: []string{"targets.prod-db.provider"},
			msgs: []string{`unknown provider "ssh-certs"`},
		},
		{
			name: "missing provider",
			yaml: edit(t, "provider: ssh-cert\n    config: {principals: [postgres]}", "config: {principals: [postgres]}"),
			want: []string{"targets.prod-db.provider"},
			msgs: []string{"required"},
		},
		{
			name: "config with a list as a key",
			yaml: edit(t, "config: {principals: [postgres]}", "config: {principals: [postgres], x: {[1]: 2}}"),
			want: []string{"targets.prod-db.config.x"},
			msgs: []string{"line 15: keys must be plain names, not a list"},
		},
		{
			name: "config that is not JSON",
			yaml: edit(t, "config: {principals: [postgres]}", "config: {principals: [postgres], x: {~: 2}}"),
			want: []string{"targets.prod-db.config"},
			msgs: []string{"cannot be turned into JSON for the provider: a mapping key must not be empty"},
		},
		{
			name: "bad target name",
			yaml: edit(t, "  prod-db:\n", "  prod db:\n", "prod-web, prod-db]", "prod-web, prod db]"),
			want: []string{"targets.prod db"},
			msgs: []string{"letters, digits"},
		},
		{
			name: "duration bounds",
			yaml: edit(t, "default_duration: 30m\n", "default_duration: 3h\n    min_duration: 4h\n"),
			want: []string{"policies[0].default_duration", "policies[0].min_duration"},
			msgs: []string{"3h is longer than max_duration 2h", "4h is longer than default_duration 3h"},
		},
		{
			name: "durations missing and negative",
			yaml: edit(t, "default_duration: 30m\n", "min_duration: -1s\n", "    max_duration: 2h\n", ""),
			want: []string{"policies[0].max_duration", "policies[0].default_duration", "policies[0].min_duration"},
			msgs: []string{"required", "required", "must not be negative"},
		},
		{
			name: "bad ticket pattern",
			yaml: edit(t, `'^OPS-[0-9]+$'`, `'^OPS-[0-9+$'`),
			want: []string{"policies[0].ticket_pattern"},
			msgs: []string{"missing closing ]"},
		},
		{
			name: "subjects",
			yaml: edit(t, "admins: [group:secops, carol@example.com]", "admins: [group:, carl@example.com]",
				"requesters: [group:engineers]", "requesters: [group:engineers, '']",
				"approvers: [group:sre]", "approvers: []"),
			want: []string{"admins[0]", "admins[1]", "policies[0].requesters[1]", "policies[0].approval.steps[0].approvers"},
			msgs: []string{"group:NAME", `no user "carl@example.com"`, "not empty", "at least one approver"},
		},
		{
			name: "unknown groups are fine",
			yaml: edit(t, "requesters: [group:engineers]", "requesters: [group:nobody-is-in-this-group]"),
		},
		{
			name: "users",
			yaml: edit(t, "{id: alice@example.com, groups: [engineers]}", "{id: '', groups: [engineers, '']}",
				"{id: carol@example.com", "{id: group:carol"),
			want: []string{"users[0].id", "users[0].groups[1]", "users[2].id", "admins[1]"},
			msgs: []string{"required", "group name", `start with "group:"`, `no user "carol@example.com"`},
		},
		{
			name: "no way to approve",
			yaml: edit(t, "      steps: [{approvers: [group:sre], count: 1}]\n", "",
				`      auto_approve: 'request.duration <= duration("10m")'`+"\n", ""),
			want: []string{"policies[0].approval"},
			msgs: []string{"no request could ever be approved"},
		},
		{
			name: "auto-approve only is fine",
			yaml: edit(t, "      steps: [{approvers: [group:sre], count: 1}]\n", ""),
		},
		{
			name: "duplicate policy name and negative timeout",
			yaml: edit(t, "notifications:\n", `  - name: engineers-prod
    targets: [prod-db]
    requesters: [bob@example.com]
    default_duration: 5m
    max_duration: 5m
    approval: {timeout: -1m, steps: [{approvers: [carol@example.com], count: 1}]}
notifications:
`),
			want: []string{"policies[1].name", "policies[1].approval.timeout"},
			msgs: []string{`"engineers-prod" is already policies[0]`, "must be positive"},
		},
		{
			name: "extend and breakglass",
			yaml: edit(t, "extend: {max_extensions: 2, max_total: 4h}", "extend: {max_extensions: 0, max_total: 1h}",
				"breakglass: {allowed: [group:sre]}", "breakglass: {allowed: []}"),
			want: []string{"policies[0].extend.max_extensions", "policies[0].extend.max_total", "policies[0].breakglass.allowed"},
			msgs: []string{"at least 1", "1h is shorter than max_duration 2h", "at least one"},
		},
		{
			name: "storage, server and scheduler",
			yaml: edit(t, "driver: sqlite", "driver: mysql", "listen: 127.0.0.1:8700", "listen: localhost") +
				"scheduler: {poll_interval: -1s, max_revoke_attempts: -2}\n",
			want: []string{"server.listen", "storage.driver", "scheduler.poll_interval", "scheduler.max_revoke_attempts"},
			msgs: []string{"host:port", `not "mysql"`, "positive", "at least 1"},
		},
		{
			name: "postgres needs a dsn",
			yaml: edit(t, "{driver: sqlite, dsn: ./ajar-data/ajar.db}", "{driver: postgres}"),
			want: []string{"storage.dsn"},
		},
		{
			name: "notifications",
			yaml: base + "  - {name: sre-chat}\n  - {type: slack}\n",
			want: []string{"notifications[1].name", "notifications[1].type", "notifications[2].name", "notifications[2].url"},
			msgs: []string{"already notifications[0]", "required", "required", "required"},
		},
		{
			name: "anchors and merge keys",
			yaml: edit(t, "  prod-db:\n    provider: ssh-cert\n    config: {principals: [postgres]}",
				"  prod-db: &db\n    provider: ssh-cert\n    config: {principals: [postgres]}\n  prod-db2:\n    <<: *db\n    bogus: 1"),
			want: []string{"targets.prod-db2.bogus"},
			msgs: []string{"unknown field"},
		},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.yaml), fakeCheck)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if p == nil {
					t.Fatal("Parse returned a nil Policy and no error")
				}
				return
			}
			if p != nil {
				t.Errorf("Parse returned a Policy along with problems")
			}
			probs := problemsOf(t, err)
			if got := fields(probs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("problem fields:\n got %q\nwant %q\nall:\n%v", got, tc.want, probs)
			}
			for i, m := range tc.msgs {
				if !strings.Contains(probs[i].Message, m) {
					t.Errorf("problem %d (%s): message %q does not contain %q", i, probs[i].Field, probs[i].Message, m)
				}
			}
		})
	}
}

// TestWalkerAgreesWithDecoder checks that the field-path walk finds a structural
// problem exactly when yaml.v3's strict decoder rejects the file, so the walk
// neither invents problems nor misses ones the decoder would only give as text.
func TestWalkerAgreesWithDecoder(t *testing.T) {
	for _, tc := range parseCases(t) {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(tc.yaml), &root); err != nil || root.Kind == 0 {
			continue // the syntax cases: not a YAML document, nothing to walk
		}
		t.Run(tc.name, func(t *testing.T) {
			w := walker{}
			w.walk(&root, reflect.TypeFor[Config](), "")
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			var cfg Config
			err := dec.Decode(&cfg)
			if (err != nil) != (len(w.problems) > 0) && !(tc.stricterThanYAML && err == nil) {
				t.Errorf("decoder error: %v\nwalker problems: %v", err, w.problems)
			}
		})
	}
}

func TestBaseParses(t *testing.T) {
	p, err := Parse([]byte(base), fakeCheck)
	if err != nil {
		t.Fatalf("Parse(base): %v", err)
	}
	r, ok := p.Rule("engineers-prod")
	if !ok {
		t.Fatal("rule engineers-prod missing")
	}
	want := &Rule{
		Name:            "engineers-prod",
		Targets:         []string{"prod-web", "prod-db"},
		Requesters:      []string{"group:engineers"},
		DefaultDuration: 30 * time.Minute,
		MaxDuration:     2 * time.Hour,
		RequireReason:   true,
		TicketPattern:   "^OPS-[0-9]+$",
		Approval:        Approval{Timeout: 30 * time.Minute, Steps: []Step{{Approvers: []string{"group:sre"}, Count: 1}}},
		Extend:          &Extend{MaxExtensions: 2, MaxTotal: 4 * time.Hour, Approval: ExtendApprovalRequired},
		Breakglass:      &Breakglass{Allowed: []string{"group:sre"}},
	}
	got := *r
	got.ticket, got.Approval.AutoApprove = nil, nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("rule:\n got %+v\nwant %+v", got, *want)
	}
	if r.Approval.AutoApprove == nil || r.Approval.AutoApprove.String() != `request.duration <= duration("10m")` {
		t.Errorf("auto_approve = %v", r.Approval.AutoApprove)
	}
	if got, want := p.Scheduler(), defaultScheduler; got != want {
		t.Errorf("scheduler defaults: got %+v, want %+v", got, want)
	}
	if got := p.Storage(); got.Driver != "sqlite" || got.DSN != "./ajar-data/ajar.db" {
		t.Errorf("storage = %+v", got)
	}
	if n := p.Notifications(); len(n) != 1 || n[0].URLEnv != "AJAR_SLACK_WEBHOOK" || !n[0].Wants("request.created") || n[0].Wants("request.denied") {
		t.Errorf("notifications = %v", n)
	}
	_, err = Parse([]byte(edit(t, "config: {principals: [postgres]}", "config: {principals: [postgres], ports: {22: ssh, true: [{8: x}]}}")), fakeCheck)
	if err == nil {
		t.Fatal("fakeCheck should refuse the unknown field ports")
	}
	p, err = Parse([]byte(edit(t, "config: {principals: [postgres]}", "config: {principals: [postgres], ports: {22: ssh, true: [{8: x}]}}")), nil)
	if err != nil {
		t.Fatalf("Parse with non-string keys: %v", err)
	}
	if tg, _ := p.Target("prod-db"); string(tg.Config) != `{"ports":{"22":"ssh","true":[{"8":"x"}]},"principals":["postgres"]}` {
		t.Errorf("config with non-string keys: %s", tg.Config)
	}
	p, _ = Parse([]byte(base), fakeCheck)
	tg, ok := p.Target("prod-web")
	if !ok || tg.Provider != "ssh-cert" || string(tg.Config) != `{"principals":["ubuntu"],"source_address":"request"}` {
		t.Errorf("Target(prod-web) = %+v, %v (config %s)", tg, ok, tg.Config)
	}
	if got := p.TargetNames(); !reflect.DeepEqual(got, []string{"prod-db", "prod-web"}) {
		t.Errorf("TargetNames = %q", got)
	}
}

func TestDefaults(t *testing.T) {
	p, err := Parse([]byte(`
users: [{id: a@example.com}, {id: b@example.com}]
targets: {t: {provider: ssh-cert, config: {principals: [x]}}}
policies:
  - {name: r, targets: [t], requesters: [a@example.com], default_duration: 1m, max_duration: 1m,
     approval: {steps: [{approvers: [b@example.com], count: 1}]}}
`), fakeCheck)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := p.Rule("r")
	if r.Approval.Timeout != DefaultApprovalTimeout || r.MinDuration != 0 || r.Extend != nil || r.Breakglass != nil {
		t.Errorf("rule defaults: %+v", r)
	}
	if s := p.Server(); s.Listen != DefaultListen {
		t.Errorf("listen = %q", s.Listen)
	}
	if s := p.Storage(); s.Driver != "sqlite" || s.DSN != "" {
		t.Errorf("storage = %+v", s)
	}
}

func TestDemo(t *testing.T) {
	p, err := DemoPolicy(fakeCheck)
	if err != nil {
		t.Fatalf("demo policy: %v", err)
	}
	if got := len(p.Users()); got != 3 {
		t.Errorf("demo users: %d", got)
	}
	alice, _ := p.User("alice@example.com")
	admin, _ := p.User("admin@example.com")
	bob, _ := p.User("bob@example.com")
	if !p.IsAdmin(admin) || p.IsAdmin(alice) || p.IsAdmin(bob) {
		t.Error("demo: only admin@example.com should be an admin")
	}
	tv := p.TargetsFor(alice)
	if len(tv) != 1 || tv[0].Target.Name != "demo-ssh" || tv[0].Rule.Name != "engineers-demo-ssh" {
		t.Fatalf("demo TargetsFor(alice) = %+v", tv)
	}
	r := tv[0].Rule
	if r.DefaultDuration != 15*time.Minute || r.MinDuration != 5*time.Second || r.MaxDuration != time.Hour ||
		!r.RequireReason || r.Approval.Timeout != 30*time.Minute || !r.CanApprove(0, bob) || r.CanApprove(0, alice) {
		t.Errorf("demo rule: %+v", r)
	}
	if string(tv[0].Target.Config) != `{"principals":["ajar-demo"],"source_address":"request"}` {
		t.Errorf("demo target config: %s", tv[0].Target.Config)
	}
	d, err := p.Evaluate(alice, Input{Target: "demo-ssh", Duration: 5 * time.Minute, Reason: "demo", Now: time.Now()})
	if err != nil || !d.AutoApprove {
		t.Errorf("demo: 5m should be auto-approved: %+v, %v", d, err)
	}
	// Demo returns a copy: changing it must not change the embedded file.
	b := Demo()
	b[0] = 'X'
	if Demo()[0] == 'X' {
		t.Error("Demo() returned the embedded slice itself")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ajar.yaml")
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, fakeCheck); err != nil {
		t.Errorf("Load: %v", err)
	}
	_, err := Load(filepath.Join(dir, "missing.yaml"), fakeCheck)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestNilCheckAcceptsAnyProvider(t *testing.T) {
	if _, err := Parse([]byte(edit(t, "provider: ssh-cert", "provider: anything", "principals: [postgres]", "whatever: 1")), nil); err != nil {
		t.Errorf("Parse with nil check: %v", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for in, want := range map[time.Duration]string{
		0:                           "0s",
		5 * time.Second:             "5s",
		90 * time.Second:            "1m30s",
		5 * time.Minute:             "5m",
		10 * time.Minute:            "10m",
		2 * time.Hour:               "2h",
		90 * time.Minute:            "1h30m",
		time.Hour + 5*time.Second:   "1h0m5s",
		5*time.Minute + time.Second: "5m1s",
		-2 * time.Hour:              "-2h",
		1500 * time.Millisecond:     "1.5s",
	} {
		if got := formatDuration(in); got != want {
			t.Errorf("formatDuration(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1h30m"), &v); err != nil || v.D != Duration(90*time.Minute) {
		t.Fatalf("unmarshal: %v, %v", v.D, err)
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 1h30m\n" {
		t.Errorf("marshal: %q, %v", out, err)
	}
	err = yaml.Unmarshal([]byte("d: [1]"), &v)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		t.Errorf("a list as a duration: %v, want a *yaml.TypeError", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add(Demo())
	f.Add([]byte("users: &a [*a]"))
	for _, tc := range parseCases(f) {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, fakeCheck)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse returned policy %v and error %v", p != nil, err)
		}
		if err != nil {
			problemsOf(t, err)
		}
		// Whatever the strict decoder rejects, the walk must report with a field
		// path. (The walk is stricter on one point: yaml.v3 ignores empty keys.)
		var root yaml.Node
		if yaml.Unmarshal(data, &root) != nil || root.Kind == 0 {
			return
		}
		w := walker{}
		w.walk(&root, reflect.TypeFor[Config](), "")
		if w.nodes >= maxNodes {
			return
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		var cfg Config
		if derr := dec.Decode(&cfg); derr != nil && len(w.problems) == 0 {
			t.Fatalf("decoder error: %v\nwalker problems: %v", derr, w.problems)
		}
	})
}
