package notify

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// trickyStrings are what a JSON string encoder can get wrong.
var trickyStrings = []string{
	"", "a", "alice@example.com", "req_01hx5v0r4k2m7p9q3s6t8w1y2z",
	`quote " backslash \ slash /`, "<script>alert(1)</script> & co",
	"line\nfeed\ttab\rreturn\bback\fform", "\x00\x01\x1f\x7f", "\u2028\u2029", "a\u2028b\u2029c",
	"héllo wörld ✓ 日本語 🔐", "\xff", "a\xffb", "\xc3", "\xe2\x80", "\xed\xa0\x80", // invalid UTF-8, a surrogate
	"\ufffd", "\u202e evil", "ajar deny req_1 --reason \"...\"", strings.Repeat("x<&>", 40),
}

func pick(rnd *rand.Rand) string {
	if rnd.IntN(4) == 0 { // random bytes, often invalid UTF-8
		b := make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return string(b)
	}
	return trickyStrings[rnd.IntN(len(trickyStrings))]
}

func pickTime(rnd *rand.Rand) time.Time {
	zones := []*time.Location{time.UTC, time.FixedZone("", -7*3600), time.FixedZone("X", 5*3600+30*60), time.FixedZone("S", 3600+17)}
	switch rnd.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Now() // a monotonic reading too
	case 2: // years json.Marshal refuses, and the edges it takes
		return time.Date([]int{-1, 0, 9999, 10000}[rnd.IntN(4)], 12, 31, 23, 59, 59, 999999999, time.UTC)
	case 3: // an offset of 24h or more, which it refuses too
		return time.Date(2026, 3, 1, 9, 0, 0, 0, time.FixedZone("", []int{24 * 3600, -25 * 3600}[rnd.IntN(2)]))
	}
	return time.Unix(rnd.Int64N(4e9), rnd.Int64N(3)*rnd.Int64N(1e9)).In(zones[rnd.IntN(len(zones))])
}

// pickDetails returns details as events carry them: json.Marshal's output.
func pickDetails(t testing.TB, rnd *rand.Rand) json.RawMessage {
	var v any
	switch rnd.IntN(5) {
	case 0:
		return nil
	case 1:
		return json.RawMessage{}
	case 2:
		v = map[string]any{"reason": pick(rnd), "by": "30m", "step": rnd.IntN(3), "escalate_to": []string{pick(rnd)}}
	case 3:
		v = map[string]any{pick(rnd): pick(rnd), "params": map[string]string{pick(rnd): pick(rnd)}, "start": time.Unix(rnd.Int64N(4e9), rnd.Int64N(1e9)).UTC(), "ok": true, "n": nil}
	default:
		v = []any{pick(rnd), 1.5, -3, false, map[string]any{}}
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomEvent(t testing.TB, rnd *rand.Rand) *Event {
	e := &Event{ID: pick(rnd), Type: pick(rnd), Time: pickTime(rnd), Actor: pick(rnd), Summary: pick(rnd), Details: pickDetails(t, rnd)}
	if rnd.IntN(3) > 0 {
		r := &Request{ID: pick(rnd), Target: pick(rnd), Requester: pick(rnd), Reason: pick(rnd), Duration: pick(rnd), Policy: pick(rnd), State: pick(rnd)}
		if rnd.IntN(2) == 0 {
			r.Ticket = pick(rnd)
		}
		if rnd.IntN(2) == 0 {
			r.URL = pick(rnd)
		}
		if rnd.IntN(2) == 0 {
			st := pickTime(rnd)
			r.StartAt = &st
		}
		if rnd.IntN(2) == 0 {
			exp := pickTime(rnd)
			r.ExpiresAt = &exp
		}
		e.Request = r
	}
	switch rnd.IntN(3) {
	case 0: // none
	case 1:
		e.Actions = []Action{}
	default:
		for range 1 + rnd.IntN(4) {
			a := Action{Label: pick(rnd), Who: pick(rnd), Command: pick(rnd)}
			if rnd.IntN(2) == 0 {
				a.URL = pick(rnd)
			}
			e.Actions = append(e.Actions, a)
		}
	}
	return e
}

// checkSameJSON fails unless e.AppendJSON writes what json.Marshal writes,
// and fails where it fails.
func checkSameJSON(t *testing.T, e *Event) {
	t.Helper()
	want, werr := json.Marshal(e)
	prefix := []byte("prefix")
	got, gerr := e.AppendJSON(prefix)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("event %+v: json.Marshal error %v, AppendJSON error %v", e, werr, gerr)
	}
	if gerr != nil {
		if string(got) != "prefix" {
			t.Fatalf("AppendJSON failed and changed dst: %q", got)
		}
		return
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("event %+v:\nAppendJSON   %q\njson.Marshal %q", e, got, want)
	}
}

func TestEventAppendJSONIsJSONMarshal(t *testing.T) {
	rnd := rand.New(rand.NewPCG(14, uint64(time.Now().UnixNano())))
	for range 20000 {
		checkSameJSON(t, randomEvent(t, rnd))
	}
	// Every string as every field, one at a time.
	for _, s := range trickyStrings {
		for i := range 15 {
			e := &Event{Time: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), Request: &Request{}, Actions: []Action{{}}}
			*[]*string{&e.ID, &e.Type, &e.Actor, &e.Summary, &e.Request.ID, &e.Request.Target, &e.Request.Requester,
				&e.Request.Reason, &e.Request.Ticket, &e.Request.Duration, &e.Request.Policy, &e.Request.State,
				&e.Request.URL, &e.Actions[0].Label, &e.Actions[0].URL}[i] = s
			checkSameJSON(t, e)
		}
	}
	// Every byte value, alone and after a multi-byte character.
	for c := range 256 {
		checkSameJSON(t, &Event{ID: string(rune(c)), Summary: "✓" + string([]byte{byte(c)}) + "x"})
	}
}

// FuzzEventAppendJSON: whatever the strings, times and details (as
// json.Marshal writes them), AppendJSON writes json.Marshal's bytes.
func FuzzEventAppendJSON(f *testing.F) {
	for i, s := range trickyStrings {
		f.Add(s, trickyStrings[(i+1)%len(trickyStrings)], int64(i)*1e15+int64(i), []byte(`{"reason":"`+s+`","n":[1,2.5e3,null,true]}`), uint8(i))
	}
	f.Add("", "", int64(-62167219200), []byte(`  { "a" : "<&>\u2028" }  `), uint8(0xff))
	f.Add("x", "y", int64(253402300800), []byte(`not json`), uint8(0x55))
	f.Fuzz(func(t *testing.T, s1, s2 string, unix int64, details []byte, set uint8) {
		tm := time.Unix(unix/1e9, unix%1e9).In(time.FixedZone("", int(unix%(30*3600))))
		e := &Event{ID: s1, Type: s2, Time: tm, Actor: s2 + s1, Summary: s1 + "\u2028" + s2}
		if set&1 != 0 {
			e.Request = &Request{ID: s1, Target: s2, Requester: s1, Reason: s2, Duration: s1, Policy: s2, State: s1}
			if set&2 != 0 {
				e.Request.Ticket, e.Request.URL = s2, s1
			}
			if set&4 != 0 {
				e.Request.StartAt, e.Request.ExpiresAt = &tm, &tm
			}
		}
		if set&8 != 0 {
			e.Actions = []Action{{Label: s1, Who: s2, Command: s1 + s2}, {URL: s2}}
		}
		if set&16 != 0 {
			// Details as events carry them: the fuzzed JSON as json.Marshal
			// writes it (compact, escaped); not JSON: none.
			if b, err := json.Marshal(json.RawMessage(details)); err == nil {
				e.Details = b
			}
		}
		checkSameJSON(t, e)
	})
}

func BenchmarkEventJSON(b *testing.B) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	e := &Event{ID: "evt_abcdefghijklmnop", Type: "request.created", Time: now, Actor: "alice@example.com",
		Summary: "alice@example.com requests web for 5m; approved by the policy",
		Request: &Request{ID: "req_1", Target: "web", Requester: "alice@example.com", Reason: "deploy the hotfix <today> & check",
			Duration: "5m", Policy: "web", State: "active", ExpiresAt: &now, URL: "https://ajar.example.com/requests/req_1"},
		Details: json.RawMessage(`{"duration":"5m0s","params":{"principal":"deploy"},"policy":"web","reason":"deploy the hotfix \u003ctoday\u003e \u0026 check","target":"web","ticket":"INC-1234"}`),
		Actions: []Action{{Label: "Show", Who: "requester", Command: "ajar show req_1", URL: "https://ajar.example.com/requests/req_1"}},
	}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.AppendJSON(make([]byte, 0, 1536)); err != nil { // as events enqueues
				b.Fatal(err)
			}
		}
	})
}
