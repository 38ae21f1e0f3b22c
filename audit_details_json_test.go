package ajar

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar/internal/jsonenc"
)

// detailStrings are what a JSON string encoder can get wrong.
var detailStrings = []string{
	"", "a", "alice@example.com", "req_01hx5v0r4k2m7p9q3s6t8w1y2z", "5m0s",
	`quote " backslash \ slash /`, "<script>alert(1)</script> & co",
	"line\nfeed\ttab\rreturn\bback\fform", "\x00\x01\x1f\x7f", "\u2028\u2029", "a\u2028b\u2029c",
	"héllo wörld ✓ 日本語 🔐", "\xff", "a\xffb", "\xc3", "\xe2\x80", "\xe2\x80\xa8", "\xed\xa0\x80", // invalid UTF-8, a surrogate
	"\ufffd", "\u202e evil", "\U0010ffff", "\xf4\x90\x80\x80", `request.duration <= duration("10m")`, strings.Repeat("x<&>", 40),
}

func pickString(rnd *rand.Rand) string {
	switch rnd.IntN(5) {
	case 0: // random bytes, often invalid UTF-8
		b := make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return string(b)
	case 1: // random runes, with the escaped ones likely
		var sb strings.Builder
		for range rnd.IntN(8) {
			sb.WriteRune([]rune{'<', '>', '&', '"', '\\', '\u2028', '\u2029', '\x00', '\x1f', '\x7f', 'é', '\U0001f510', rune(rnd.IntN(0x110000))}[rnd.IntN(13)])
		}
		return sb.String()
	}
	return detailStrings[rnd.IntN(len(detailStrings))]
}

// pickTime returns a time and whether json.Marshal takes it.
func pickTime(rnd *rand.Rand) (time.Time, bool) {
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", -7*3600), time.FixedZone("X", 5*3600+30*60), time.FixedZone("S", 3600+17), time.FixedZone("M", -(23*3600 + 59*60))}
	switch rnd.IntN(8) {
	case 0:
		return time.Time{}, true
	case 1:
		return time.Now(), true // with a monotonic reading
	case 2: // the years json.Marshal refuses, and the edges it takes
		y := []int{-1, 0, 9999, 10000, -300000, 300000}[rnd.IntN(6)]
		return time.Date(y, 12, 31, 23, 59, 59, int(rnd.Int64N(1e9)), zones[rnd.IntN(len(zones))]), y >= 0 && y <= 9999
	case 3: // an offset of 24h or more, which it refuses too
		return time.Date(2026, 3, 1, 9, 0, 0, 0, time.FixedZone("", []int{24 * 3600, -25 * 3600}[rnd.IntN(2)])), false
	}
	// Nanoseconds: none, some trailing zeros, all nine digits.
	ns := []int64{0, 100000000, 120000000, 123456000, 123456789, 1, rnd.Int64N(1e9)}[rnd.IntN(7)]
	return time.Unix(rnd.Int64N(4e9)-1e9, ns).In(zones[rnd.IntN(len(zones))]), true
}

// pickFloat returns a float64 and whether json.Marshal takes it.
func pickFloat(rnd *rand.Rand) (float64, bool) {
	var f float64
	switch rnd.IntN(4) {
	case 0:
		f = []float64{0, math.Copysign(0, -1), 1, -1.5, 0.1, 1e20, 1e21, 123456789e13, 1e-6, 9.99999e-7, 1e-7, 5e-324,
			math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 2.5e3, 1e100, 1.2345e-100, math.NaN(), math.Inf(1), math.Inf(-1)}[rnd.IntN(21)]
	case 1:
		f = float64(rnd.Int64N(1<<53)) * math.Pow10(rnd.IntN(60)-30)
	default:
		f = math.Float64frombits(rnd.Uint64())
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// rawMessages are json.RawMessage details as providers may write them: white
// space to remove, characters to escape, and some that are not JSON.
var rawMessages = []struct {
	raw   string
	valid bool
}{
	{`{"rule":"r-req_1"}`, true}, {`  { "a" : [ 1 , 2.5e3 , null , true ] }  `, true}, {"{\n\t\"a\":\r\n\"b\"}", true},
	{`{"html":"<b>&amp;</b>","sep":"` + "\u2028\u2029" + `"}`, true}, {`"a b  c"`, true}, {`"\"  \\" `, true},
	{`{"k\u003c":"\u2028"}`, true}, {"{\"bad\":\"\xff\"}", true}, {`[]`, true}, {`0`, true}, {`-1.5e-7`, true},
	{``, false}, {`not json`, false}, {`{"a":}`, false}, {`{"a":1} x`, false}, {`"unterminated`, false}, {"\"ctl\x01\"", false},
}

type (
	point struct {
		X int    `json:"x"`
		S string `json:"s,omitempty"`
	}
	namedString   string
	namedBool     bool
	namedFloat    float64
	namedInt      int64
	textString    string // with MarshalText: json.Marshal calls it
	jsonString    string // with MarshalJSON: json.Marshal calls it
	ptrTextString string // with MarshalText on the pointer: json.Marshal ignores it in an interface
)

func (s textString) MarshalText() ([]byte, error)     { return []byte("text:" + s), nil }
func (s jsonString) MarshalJSON() ([]byte, error)     { return []byte(` { "json" : 1 } `), nil }
func (s *ptrTextString) MarshalText() ([]byte, error) { return []byte("ptr:" + *s), nil }

// gen builds random details of the shapes MarshalAuditDetails writes itself,
// with what json.Marshal refuses now and then; direct is whether the fast
// path must take v (json.Marshal takes it and its shape is supported).
type gen struct {
	rnd   *rand.Rand
	depth int
}

func (g *gen) value() (v any, direct bool) {
	rnd := g.rnd
	n := 15
	if g.depth > 3 {
		n = 11 // no more nesting
	}
	switch rnd.IntN(n) {
	case 0:
		return nil, true
	case 1:
		return pickString(rnd), true
	case 2:
		return rnd.IntN(2) == 0, true
	case 3:
		switch rnd.IntN(7) {
		case 0:
			return []int{0, -1, math.MaxInt, math.MinInt}[rnd.IntN(4)], true
		case 1:
			return int64(rnd.Uint64()), true
		case 2:
			return int32(rnd.Uint32()), true
		case 3:
			return []uint64{0, math.MaxUint64, rnd.Uint64()}[rnd.IntN(3)], true
		case 4:
			return rnd.Uint32(), true
		case 5:
			return time.Duration(rnd.Int64N(1e13)) - 1e12, true
		}
		return int(rnd.Int64()), true
	case 4:
		return pickFloat(rnd)
	case 5:
		return pickTime(rnd)
	case 6:
		if rnd.IntN(4) == 0 {
			return (*time.Time)(nil), true
		}
		t, ok := pickTime(rnd)
		return &t, ok
	case 7:
		r := rawMessages[rnd.IntN(len(rawMessages))]
		if rnd.IntN(6) == 0 {
			return json.RawMessage(nil), true
		}
		return json.RawMessage(r.raw), r.valid
	case 8:
		if rnd.IntN(5) == 0 {
			return []string(nil), true
		}
		s := []string{}
		for range rnd.IntN(4) {
			s = append(s, pickString(rnd))
		}
		return s, true
	case 9:
		if rnd.IntN(5) == 0 {
			return map[string]string(nil), true
		}
		m := map[string]string{}
		for range rnd.IntN(5) {
			m[pickString(rnd)] = pickString(rnd)
		}
		return m, true
	case 10:
		s := pickString(rnd)
		if rnd.IntN(2) == 0 { // named types of basic kinds, written as their value
			if rnd.IntN(6) == 0 {
				f, ok := pickFloat(rnd)
				return namedFloat(f), ok
			}
			return []any{namedString(s), EndReason(s), int8(-3), int16(-300), uint(7), uint8(200), uint16(7), uintptr(9), time.Month(3),
				namedBool(true), namedInt(math.MinInt64)}[rnd.IntN(11)], true
		}
		// What the fast path leaves to json.Marshal.
		return []any{point{1, s}, &s, []byte(s), []int{1, 2}, map[string]int{s: 1}, float32(1.5), json.Number("12"),
			textString(s), jsonString(s), ptrTextString(s), map[string]namedString{s: "x"}, [2]string{s}}[rnd.IntN(12)], false
	case 11, 12:
		if rnd.IntN(8) == 0 {
			return []any(nil), true
		}
		g.depth++
		defer func() { g.depth-- }()
		s, direct := []any{}, true
		for range rnd.IntN(4) {
			e, d := g.value()
			s, direct = append(s, e), direct && d
		}
		return s, direct
	}
	return g.details()
}

// details returns a map[string]any, the shape of nearly every event's
// details.
func (g *gen) details() (map[string]any, bool) {
	if g.rnd.IntN(20) == 0 {
		return map[string]any(nil), true
	}
	g.depth++
	defer func() { g.depth-- }()
	m, direct := map[string]any{}, true
	for range g.rnd.IntN(7) {
		k := pickString(g.rnd)
		if _, dup := m[k]; dup {
			continue
		}
		v, d := g.value()
		m[k], direct = v, direct && d
	}
	return m, direct
}

// checkSame fails unless MarshalAuditDetails writes json.Marshal's bytes for
// v, or fails where it fails with its error, and unless the fast path
// (jsonenc.AppendValue) takes v exactly when direct says, writing the same
// bytes. Without that last check a fast path that gave up on everything
// would pass.
func checkSame(t testing.TB, v any, direct bool) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, gerr := MarshalAuditDetails("test.action", v)
	switch {
	case werr != nil && gerr == nil:
		t.Fatalf("%#v: json.Marshal fails (%v), MarshalAuditDetails writes %q", v, werr, got)
	case werr == nil && gerr != nil:
		t.Fatalf("%#v: json.Marshal writes %q, MarshalAuditDetails fails: %v", v, want, gerr)
	case werr != nil && gerr.Error() != "audit test.action: "+werr.Error():
		t.Fatalf("%#v: error %q, want json.Marshal's %q", v, gerr, werr)
	case werr == nil && !bytes.Equal(got, want):
		t.Fatalf("%#v:\nMarshalAuditDetails %q\njson.Marshal        %q", v, got, want)
	}
	prefix := []byte("prefix")
	fast, ok := jsonenc.AppendValue(prefix, v)
	if ok != direct {
		t.Fatalf("%#v: fast path took it: %v, want %v (json.Marshal error: %v)", v, ok, direct, werr)
	}
	if !ok {
		if string(fast) != "prefix" {
			t.Fatalf("%#v: AppendValue gave up but changed dst: %q", v, fast)
		}
		return
	}
	if !bytes.HasPrefix(fast, prefix) || !bytes.Equal(fast[len(prefix):], want) {
		t.Fatalf("%#v:\nAppendValue  %q\njson.Marshal %q", v, fast, want)
	}
}

// TestMarshalAuditDetailsIsJSONMarshal compares MarshalAuditDetails and its
// fast path with json.Marshal over generated details of every supported shape.
func TestMarshalAuditDetailsIsJSONMarshal(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	g := &gen{rnd: rand.New(rand.NewPCG(14, seed))}
	directs := 0
	for range 30000 {
		m, direct := g.details()
		if m == nil {
			continue
		}
		checkSame(t, m, direct)
		if direct {
			directs++
		}
		// The values alone, as top-level details.
		for _, v := range m {
			if v != nil {
				checkSame(t, v, direct || directOf(v))
			}
		}
	}
	if directs < 10000 {
		t.Fatalf("only %d of 30000 generated details were for the fast path", directs)
	}
	// Every string as key and value; every byte, alone and after a
	// multi-byte character.
	for _, s := range detailStrings {
		checkSame(t, map[string]any{s: s, "l": []string{s}, "m": map[string]string{s: s}}, true)
	}
	for c := range 256 {
		s := string([]byte{byte(c)})
		checkSame(t, map[string]any{s: "✓" + s + "x", "r": string(rune(c))}, true)
	}
	// Keys sort by their bytes, not by their escaped form nor by runes.
	checkSame(t, map[string]any{"b": 1, "a": 2, "B": 3, "é": 4, "\xff": 5, "\xfe": 6, "<": 7, "\u2028": 8, "aa": 9, "": 10, "\x00": 11}, true)
}

// directOf is whether the fast path takes v on its own, for the values of a
// generated map whose whole was left to json.Marshal.
func directOf(v any) bool {
	_, err := json.Marshal(v)
	if err != nil {
		return false
	}
	_, ok := jsonenc.AppendValue(nil, v)
	return ok
}

// TestMarshalAuditDetailsRefusesAsJSONMarshal: whatever json.Marshal
// refuses, MarshalAuditDetails refuses with the same error, anywhere in the
// details, and never loops on a cycle.
func TestMarshalAuditDetailsRefusesAsJSONMarshal(t *testing.T) {
	cycle := map[string]any{"a": 1}
	cycle["self"] = cycle
	list := []any{1}
	list[0] = map[string]any{"list": list}
	bad := []any{
		math.NaN(), math.Inf(1), math.Inf(-1),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)), ptrTo(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)),
		json.RawMessage{}, json.RawMessage(`{`), json.RawMessage(`{"a":1}{}`), json.RawMessage("\"\x00\""),
		namedFloat(math.NaN()), []any{1, namedFloat(math.Inf(-1))},
		cycle, list, make(chan int), func() {}, complex(1, 2), map[bool]int{true: 1},
	}
	for _, b := range bad {
		if _, err := json.Marshal(b); err == nil {
			t.Fatalf("json.Marshal takes %#v: not a refusal to test", b)
		}
		for _, v := range []any{b, map[string]any{"x": b}, map[string]any{"a": "ok", "z": []any{1, map[string]any{"deep": b}}}} {
			checkSame(t, v, false)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestMarshalAuditDetailsDepth: nesting the fast path does not follow is left
// to json.Marshal, with the same bytes.
func TestMarshalAuditDetailsDepth(t *testing.T) {
	nest := func(n int) any {
		var v any = "leaf"
		for range n {
			v = map[string]any{"a": v, "l": []any{1}}
		}
		return v
	}
	checkSame(t, nest(31), true) // the last []any at depth 31
	checkSame(t, nest(32), false)
	checkSame(t, nest(2000), false)
}

// FuzzMarshalAuditDetails: whatever the strings, numbers, times and raw JSON
// in details, MarshalAuditDetails writes json.Marshal's bytes or fails with
// its error, and its fast path, when it takes the details, writes them too.
func FuzzMarshalAuditDetails(f *testing.F) {
	for i, s := range detailStrings {
		f.Add(s, detailStrings[(i+1)%len(detailStrings)], int64(i)*1e15+int64(i), float64(i)*1.1e-7, []byte(`{"reason":"`+s+`","n":[1,2.5e3,null,true]}`), uint8(i))
	}
	for i, r := range rawMessages {
		f.Add("k", "v", int64(-62167219200+i), math.Float64frombits(uint64(i)<<60), []byte(r.raw), uint8(0xff-i))
	}
	f.Add("", "", int64(253402300800), math.Inf(1), []byte(`  { "a" : "<&>\u2028" }  `), uint8(0x55))
	f.Fuzz(func(t *testing.T, s1, s2 string, n int64, x float64, raw []byte, set uint8) {
		tm := time.Unix(n/1e9, n%1e9).In(time.FixedZone("", int(n%(30*3600))))
		m := map[string]any{s1: s2, s2: []string{s1, s2}, "n": n, "u": uint64(n), "d": time.Duration(n), "t": tm, "e": EndReason(s2)}
		if set&1 != 0 {
			m["x"] = x
		}
		if set&2 != 0 {
			m["raw"] = json.RawMessage(raw)
		}
		if set&4 != 0 {
			m["p"] = &tm
		}
		if set&8 != 0 {
			m[s2+s1] = map[string]string{s1: s2, s2 + "<": s1}
		}
		if set&16 != 0 {
			m["l"] = []any{s1, int32(n), uint32(n), int(n), set&32 != 0, nil, map[string]any{s1: x}}
		}
		if set&64 != 0 {
			m[s1+"\u2028"] = struct{ A string }{s1} // left to json.Marshal
		}
		_, werr := json.Marshal(m)
		checkSame(t, m, werr == nil && set&64 == 0)
	})
}

// hotDetails are the details of the events an auto-approved request writes
// (as broker, sshaccess and provider/sshcert build them), for the benchmark.
func hotDetails() []struct {
	action  string
	details any
} {
	now := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	exp := now.Add(5 * time.Minute)
	return []struct {
		action  string
		details any
	}{
		{"request.created", map[string]any{
			"target": "web", "duration": (5 * time.Minute).String(), "reason": "deploy the hotfix <today> & check",
			"ticket": "INC-1234", "params": map[string]string{"source_ip": "10.0.0.1"}, "policy": "ssh",
		}},
		{"request.approved", map[string]any{"auto_approve": `request.duration <= duration("10m")`}},
		{"grant.started", map[string]any{"expires_at": exp, "not_after": exp.Add(time.Hour), "provider": "ssh-cert"}},
		{"request.activated", map[string]any{"expires_at": &exp, "handle": json.RawMessage(`{"principals":["ubuntu"],"source_address":"10.0.0.1/32"}`)}},
		{"ssh_cert.issued", map[string]any{
			"serial": uint64(0x9c3b2a17f00d1234), "key_id": "ajar:req_01hx5v0r4k2m7p9q3s6t8w1y2z:alice@example.com",
			"principals": []string{"ubuntu"}, "fingerprint": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "valid_before": exp,
		}},
	}
}

// TestMarshalAuditDetailsOwnsItsBytes: the details it returns are the
// caller's (stored, hashed, handed to the notification), never a buffer it
// writes the next details in.
func TestMarshalAuditDetailsOwnsItsBytes(t *testing.T) {
	first, err := MarshalAuditDetails("a", map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	kept := string(first)
	for i := range 100 {
		if _, err := MarshalAuditDetails("b", map[string]any{"n": i + 2, "s": strings.Repeat("x", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if string(first) != kept || kept != `{"n":1}` {
		t.Fatalf("first details %q, then %q after more calls", kept, first)
	}
}

func TestHotDetailsTakeTheFastPath(t *testing.T) {
	for _, h := range hotDetails() {
		checkSame(t, h.details, true)
	}
}

// BenchmarkMarshalAuditDetails: the details of the five events of an
// auto-approved request, by MarshalAuditDetails and by json.Marshal (what it
// was before its fast path).
func BenchmarkMarshalAuditDetails(b *testing.B) {
	for _, h := range hotDetails() {
		b.Run(h.action, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MarshalAuditDetails(h.action, h.details); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(h.action+"/json.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(h.details); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
