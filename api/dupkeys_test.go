package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/readmodel"
	"github.com/ajar-dev/ajar/sshaccess"
)

// checkDuplicateKeysRef is the former checkDuplicateKeys, built on
// encoding/json's Decoder.Token: the reference the one-pass scanner must agree
// with on every input.
func checkDuplicateKeysRef(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err := dupValueRef(dec, "")
	if errors.Is(err, io.EOF) {
		return nil
	}
	if _, ok := errors.AsType[*ajar.Error](err); ok {
		return err
	}
	return nil
}

func dupValueRef(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			field := key
			if path != "" {
				field = path + "." + key
			}
			if seen[key] {
				return ajar.FieldErrorf(field, "given more than once")
			}
			seen[key] = true
			if err := dupValueRef(dec, field); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		for dec.More() {
			if err := dupValueRef(dec, path); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

// dupSeeds are inputs on which a checker that is almost right goes wrong:
// escaped and unescaped spellings of one key, surrogates, invalid UTF-8,
// duplicates at several depths and after arrays, whitespace, syntax errors
// before and after a duplicate, trailing data, deep nesting.
var dupSeeds = []string{
	``, ` `, `null`, `{}`, `[]`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"b":2,"a":3}`,
	`{"target":"dev","target":"prod-web","duration":"45m"}`,
	`{"target":"prod-web","params":{"db":"a","db":"b"}}`,
	`{"target":"prod-web","params":{"db":"a"},"params":{"db":"b"}}`,
	`{"a":"x","\u0061":"y"}`, `{"\u0061":1,"a":2}`, `{"A":1,"\u0041":2}`, `{"a":1,"A":2}`,
	`{"\/":1,"/":2}`, `{"\"":1,"\u0022":2}`, `{"\\":1,"\u005c":2}`, `{"\n":1,"\u000a":2}`,
	`{"\b\f\n\r\t":1,"\u0008\u000c\u000A\u000D\u0009":2}`,
	`{"\ud83d\ude00":1,"😀":2}`, `{"\uD83D\uDE00":1,"\ud83d\ude00":2}`,
	`{"\ud800":1,"\udc00":2}`, `{"\ud800":1,"�":2}`, `{"\ud800x":1,"\ufffdx":2}`,
	`{"\ud800\u0041":1,"\ufffdA":2}`, `{"\udc00\ud800":1,"\ufffd\ufffd":2}`,
	`{"\ud800\ud800":1,"\ufffd\ufffd":2}`, `{"\ud800\\u0041":1,"\ufffd\\u0041":2}`,
	"{\"\xff\":1,\"\xfe\":2}", "{\"\xff\":1,\"\ufffd\":2}", "{\"\xe2\x82\":1,\"\ufffd\ufffd\":2}",
	"{\"\xed\xa0\x80\":1,\"\ufffd\ufffd\ufffd\":2}", "{\"\xc0\xaf\":1,\"\ufffd\ufffd\":2}",
	"{\"\xef\xbf\xbd\":1,\"\\ufffd\":2}", "{\"a\xffb\":1,\"a\\ufffdb\":2}", "{\"\x7f\":1,\"\\u007f\":2}",
	`{"a":{"b":{"c":1,"c":2}}}`, `{"a":[{"b":1},{"b":1,"b":2}]}`, `[{"a":1},{"a":1},{"a":1,"a":1}]`,
	`[[[[{"x":{"y":[{"z":1,"z":2}]}}]]]]`, `{"a":[1,2,{"a":1}],"a":3}`, `{"a":{"a":{"a":1}},"b":{"a":1,"a":2}}`,
	`{"":1,"":2}`, `{"":{"a":1,"a":2}}`, `{"":{"":{"x":1,"x":2}}}`, `{"a":{"":{"":1,"":2}}}`,
	`{"a.b":1,"a":{"b":1,"b":2}}`, `{"a":1,"a.b":{"c":1,"c":2},"a":2}`,
	" \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n1 \t\r\n, \t\r\n\"a\" \t\r\n: 2}",
	"{\"a\":1,\v\"a\":2}", "{\"a\":1,\f\"a\":2}", "\ufeff{\"a\":1,\"a\":2}",
	`{"a":1,"a"`, `{"a":1,"a"}`, `{"a":1,"a":`, `{"a":1,"a`, `{"a":1 "a":2}`, `{"a":1,,"a":2}`,
	`{"a" 1,"a":2}`, `{"a":1,}`, `{,"a":1}`, `{"a":01,"a":1}`, `{"a":1.,"a":1}`, `{"a":-,"a":1}`,
	`{"a":1e,"a":1}`, `{"a":1e+,"a":1}`, `{"a":-0.0e-0,"a":1}`, `{"a":1E+10,"a":1}`, `{"a":tru,"a":1}`,
	`{"a":truex,"a":1}`, `{"a":nul,"a":1}`, `{"a":true,"a":false}`, `{"a":null,"a":null}`,
	`{"a":"\x","a":1}`, `{"a":"\u12","a":1}`, `{"a":"\u12g4","a":1}`, `{"a":"\'","a":1}`,
	"{\"a\":\"\x01\",\"a\":1}", "{\"a\x1f\":1,\"a\":2}", `{"a":[1,],"a":1}`, `{"a":[,1],"a":1}`,
	`{"a":[1 2],"a":1}`, `{"a":{"b":1]},"a":1}`, `{"a":[1},"a":1}`, `{"a":"b":1,"a":2}`,
	`{"a":1}{"a":1,"a":2}`, `{"a":1} {"b":1,"b":2}`, `{"a":1}x`, `{"a":1}]`, `[1]{"a":1,"a":2}`,
	`1 {"a":1,"a":2}`, `"x" {"a":1,"a":2}`, `{1:2}`, `{"a":1,2:3}`, `}`, `]`, `,`, `:`,
	`[{"a":1,"a":2}`, `[{"a":1},{"a":1,"a":2}`, `{"a":[{"b":1,"b":2}`,
	strings.Repeat("[", 1000) + `{"a":1,"a":2}` + strings.Repeat("]", 1000),
	strings.Repeat(`{"a":`, 500) + `{"b":1,"b":2}` + strings.Repeat("}", 500),
	strings.Repeat(`[{"a":[`, 300),
	`{` + strings.Repeat(`"k":1,`, 0) + manyKeys(40) + `,"k7":1}`,
	`{` + manyKeys(40) + `,"\u006b39":1}`, `{` + manyKeys(17) + `,"k0":1}`, `{` + manyKeys(16) + `,"k15":1}`,
	`{"o":{` + manyKeys(30) + `},"o2":{` + manyKeys(30) + `,"k29":0}}`,
}

// manyKeys is "k0":0,"k1":1,... with n members.
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	return b.String()
}

// sameDupResult reports how got and want differ, "" if they agree: both nil,
// or both an EINVALID *ajar.Error with the same field and message.
func sameDupResult(got, want error) string {
	if got == nil && want == nil {
		return ""
	}
	g, gok := errors.AsType[*ajar.Error](got)
	w, wok := errors.AsType[*ajar.Error](want)
	if !gok || !wok || *g != *w {
		return "got " + errString(got) + ", want " + errString(want)
	}
	return ""
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	if e, ok := errors.AsType[*ajar.Error](err); ok {
		return "{" + e.Code + " field=" + quote(e.Field) + " " + quote(e.Message) + "}"
	}
	return "non-ajar error " + quote(err.Error())
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestCheckDuplicateKeysSeeds runs the seed corpus through both checkers and
// also pins a few answers, so that a reference broken the same way as the
// scanner would not pass.
func TestCheckDuplicateKeysSeeds(t *testing.T) {
	for _, s := range dupSeeds {
		if d := sameDupResult(checkDuplicateKeys([]byte(s)), checkDuplicateKeysRef([]byte(s))); d != "" {
			t.Errorf("%.200q: %s", s, d)
		}
	}
	for body, field := range map[string]string{
		`{"a":"x","\u0061":"y"}`:                         "a",
		`{"\ud800":1,"\udc00":2}`:                        "\ufffd",
		"{\"\xff\":1,\"\\ufffd\":2}":                     "\ufffd",
		`{"\ud83d\ude00":1,"😀":2}`:                       "😀",
		`{"x":[{"b":1},{"b":1,"b":2}]}`:                  "x.b",
		`[[{"x":{"y":[{"z":1,"z":2}]}}]]`:                "x.y.z",
		`{"":{"a":1,"a":2}}`:                             "a",
		`{"a":{"":{"":1,"":2}}}`:                         "a..",
		`{"a":1,"a"`:                                     "a",
		`[{"a":1},{"b":1,"a":1,"b":2}]`:                  "b",
		`{` + manyKeys(40) + `,"\u006b39":1}`:            "k39",
		strings.Repeat(`{"a":`, 3) + `{"b":1,"b":2}}}}}`: "a.a.a.b",
		`{"o":{` + manyKeys(30) + `},"o":{"k1":1}}`:      "o",
		`{"a":[{"c":1}],"b":{"c":{"d":1,"d":2}}}`:        "b.c.d",
	} {
		e, ok := errors.AsType[*ajar.Error](checkDuplicateKeys([]byte(body)))
		if !ok || e.Field != field || e.Message != "given more than once" || e.Code != ajar.EINVALID {
			t.Errorf("%.200q: got %v, want field %q given more than once", body, e, field)
		}
	}
	for _, body := range []string{`{"a":1,"a`, `{"a":1}{"a":1,"a":2}`, `{"a":[1,],"a":1}`, `{"a":"\'","a":1}`,
		`{"a":1,"b":{"a":1}}`, `[{"a":1},{"a":1}]`, "{\"\xff\":1,\"\xff\\u0041\":1}"} {
		if err := checkDuplicateKeys([]byte(body)); err != nil {
			t.Errorf("%q: %v, want nil", body, err)
		}
	}
}

// TestCheckDuplicateKeysDeep checks that a body of nothing but nesting, as
// large as the server reads, neither overflows nor is refused.
func TestCheckDuplicateKeysDeep(t *testing.T) {
	for _, open := range []string{"[", `{"a":`, `[{"":`} {
		body := []byte(strings.Repeat(open, 1<<20/len(open)))
		if err := checkDuplicateKeys(body); err != nil {
			t.Errorf("%q...: %v", open, err)
		}
	}
}

// FuzzCheckDuplicateKeys compares the one-pass scanner with the former
// Decoder.Token check on arbitrary bytes.
func FuzzCheckDuplicateKeys(f *testing.F) {
	for _, s := range dupSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if d := sameDupResult(checkDuplicateKeys(body), checkDuplicateKeysRef(body)); d != "" {
			t.Errorf("%q: %s", body, d)
		}
	})
}

// createBody is a typical POST /v1/requests body.
const createBody = `{"target":"prod-db","duration":"45m","reason":"deploy 2026.12.07 hotfix for INC-4411",` +
	`"ticket":"INC-4411","params":{"db":"orders","role":"readonly"}}`

// BenchmarkDecodeCreateBody measures decodeJSON on a typical create body.
func BenchmarkDecodeCreateBody(b *testing.B) {
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r, _ := http.NewRequest("POST", "/v1/requests", strings.NewReader(createBody))
		r.Header.Set("Content-Type", "application/json")
		var in ajar.CreateInput
		if err := decodeJSON(w, r, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckDuplicateKeys measures the check alone on a typical create body.
func BenchmarkCheckDuplicateKeys(b *testing.B) {
	body := []byte(createBody)
	b.ReportAllocs()
	for b.Loop() {
		if err := checkDuplicateKeys(body); err != nil {
			b.Fatal(err)
		}
	}
}

// decodeJSONRef is the former decodeJSON: the duplicate check, then a decode
// into a map of raw fields, then json.Unmarshal per field.
func decodeJSONRef(w http.ResponseWriter, r *http.Request, dst any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return ajar.Errorf(ajar.EINVALID, "request body is larger than %d bytes", tooBig.Limit)
		}
		return ajar.Errorf(ajar.EINVALID, "cannot read request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if r.Header.Get("Content-Type") == "" {
		return &mediaTypeError{ajar.FieldErrorf("Content-Type", "a request body must be sent with Content-Type: application/json")}
	}
	if err := checkDuplicateKeysRef(body); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return ajar.Errorf(ajar.EINVALID, "request body must be a JSON object")
		}
		return ajar.Errorf(ajar.EINVALID, "request body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return ajar.Errorf(ajar.EINVALID, "request body has data after the JSON object")
	}
	if fields == nil {
		return ajar.Errorf(ajar.EINVALID, "request body must be a JSON object")
	}
	v := reflect.ValueOf(dst).Elem()
	index := jsonFieldIndexRef(v.Type())
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		i, ok := index[name]
		if !ok {
			return ajar.FieldErrorf(name, "unknown field")
		}
		if err := json.Unmarshal(fields[name], v.Field(i).Addr().Interface()); err != nil {
			return fieldDecodeError(name, v.Field(i).Type(), fields[name], err)
		}
	}
	return nil
}

func jsonFieldIndexRef(t reflect.Type) map[string]int {
	index := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		index[name] = i
	}
	return index
}

// bodyTypes are the structs the server decodes request bodies into.
var bodyTypes = []func() any{
	func() any { return new(ajar.CreateInput) },
	func() any { return new(sshaccess.Input) },
	func() any { return new(sessionsBody) },
	func() any { return new(CreateTokenInput) },
	func() any { return new(readmodel.ExplainInput) },
	func() any { return new(cliTokenBody) },
	func() any { return new(deviceTokenBody) },
	func() any { return new(approveBody) },
	func() any { return new(denyBody) },
	func() any { return new(sshCertBody) },
	func() any { return new(reviewBody) },
	func() any { return new(emptyBody) },
	func() any { return new(struct{}) },
	func() any { return new(oddBody) },
}

// oddBody has the field types the request bodies do not use (yet) but
// decodeJSON must still get right: a string type with UnmarshalText, one with
// UnmarshalJSON, json.Number, a named string, a *string, a field without tag.
type oddBody struct {
	Addr   netip.Addr `json:"addr"`
	Level  slog.Level `json:"level"`
	Num    json.Number
	Named  oddString `json:"named"`
	Ptr    *string   `json:"ptr"`
	Upper  upperJSON `json:"upper"`
	Hidden string    `json:"-"`
	N      int       `json:"n,string"`
}

type oddString string

// upperJSON is a string type with its own UnmarshalJSON.
type upperJSON string

func (u *upperJSON) UnmarshalJSON(b []byte) error {
	*u = upperJSON(strings.ToUpper(string(b)))
	return nil
}

// bodyValues are member values tried in every field, of every type.
var bodyValues = []string{
	`"x"`, `""`, `"prod-web"`, `"45m"`, `"\u0041\n\"\\\/"`, `"\ud800"`, `"\ud83d\ude00"`, "\"\xff\xfe\"", `"😀"`,
	`"2026-01-02T15:04:05Z"`, `"2026-13-02"`, `"127.0.0.1"`, `"INFO"`, `"12"`, `"1e3"`, `"-"`,
	`0`, `12`, `-1.5e3`, `1e999`, `true`, `false`, `null`, `{}`, `[]`, `[1,"a",{"b":null}]`,
	`{"db":"a"}`, `{"db":"a","role":"ro"}`, `{"db":1}`, `{"a":"x","b":[1]}`, `{"a":{"b":1}}`, `{"a":null}`,
	`{"\u0061":"x"}`, `{"d\u0062":"a\nb","x":""}`, "{ \"db\" :\t\"a\" ,\r\n\"r\" : \"\xff\" }", `{"a":"x","b":"y","c":3}`,
	`[{"id":"s1"},{"id":2}]`, `["x",1]`, `{"db":"a","db":"b"}`, `[{"a":1,"a":2}]`,
}

// genBody makes a body from the JSON names of t's fields, bodyValues and a few
// unknown names, sometimes broken on purpose.
func genBody(rng *rand.Rand, t reflect.Type) string {
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		names = append(names, name)
	}
	names = append(names, "unknown", "Target", "target ", `\u0074arget`, "")
	ws := []string{"", "", "", " ", "\n\t", "\r\n  "}
	var b strings.Builder
	b.WriteString(ws[rng.IntN(len(ws))] + "{")
	n := rng.IntN(5)
	used := map[string]bool{}
	for range n {
		name := names[rng.IntN(len(names))]
		if rng.IntN(3) > 0 && t.NumField() > 0 { // mostly known fields
			name = names[rng.IntN(t.NumField())]
		}
		if used[name] && rng.IntN(4) > 0 { // a few duplicates, not many
			continue
		}
		if len(used) > 0 {
			b.WriteString(ws[rng.IntN(len(ws))] + ",")
		}
		used[name] = true
		b.WriteString(ws[rng.IntN(len(ws))] + `"` + name + `"` + ws[rng.IntN(len(ws))] + ":" + ws[rng.IntN(len(ws))])
		b.WriteString(bodyValues[rng.IntN(len(bodyValues))])
	}
	b.WriteString(ws[rng.IntN(len(ws))] + "}" + ws[rng.IntN(len(ws))])
	s := b.String()
	switch rng.IntN(12) {
	case 0:
		s = s[:rng.IntN(len(s)+1)]
	case 1:
		i := rng.IntN(len(s) + 1)
		const junk = "{}[],:\" x\x00\xff1n"
		k := rng.IntN(len(junk))
		s = s[:i] + junk[k:k+1] + s[i:]
	case 2:
		s += []string{"x", "{}", " null", "]", `"`, "\v", "1"}[rng.IntN(7)]
	case 3:
		s = "[" + s + "]"
	case 4:
		s = bodyValues[rng.IntN(len(bodyValues))] + ws[rng.IntN(len(ws))]
	case 5:
		i := rng.IntN(len(s) + 1)
		s = s[:i] + s[rng.IntN(len(s)+1):]
	}
	return s
}

// decodeOutcome is what decodeJSON made of a body: the error's kind and
// contents, and dst as JSON.
func decodeOutcome(decode func(http.ResponseWriter, *http.Request, any) error, newDst func() any, body, ct string) string {
	r := httptest.NewRequest("POST", "/v1/requests", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	dst := newDst()
	err := decode(httptest.NewRecorder(), r, dst)
	out := fmt.Sprintf("%T %s", err, errString(err))
	if err == nil {
		b, err := json.Marshal(dst)
		out += fmt.Sprintf(" %s %v", b, err)
	}
	return out
}

// TestDecodeJSONMatchesOld compares decodeJSON with the former one on
// generated bodies for every request body type: the same error (type, code,
// field, message) or the same decoded struct.
func TestDecodeJSONMatchesOld(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	failures := 0
	for i := range n {
		newDst := bodyTypes[i%len(bodyTypes)]
		body := genBody(rng, reflect.TypeOf(newDst()).Elem())
		ct := "application/json"
		if rng.IntN(20) == 0 {
			ct = ""
		}
		got := decodeOutcome(decodeJSON, newDst, body, ct)
		want := decodeOutcome(decodeJSONRef, newDst, body, ct)
		if got != want {
			t.Errorf("%T %q:\ngot  %s\nwant %s", newDst(), body, got, want)
			if failures++; failures == 10 {
				t.Fatal("too many differences")
			}
		}
	}
}

// FuzzDecodeJSON compares decodeJSON with the former one on arbitrary bodies
// for ajar.CreateInput and oddBody.
func FuzzDecodeJSON(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		f.Add(genBody(rng, reflect.TypeFor[ajar.CreateInput]()))
	}
	for _, s := range dupSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, newDst := range []func() any{bodyTypes[0], bodyTypes[len(bodyTypes)-1]} {
			got := decodeOutcome(decodeJSON, newDst, body, "application/json")
			want := decodeOutcome(decodeJSONRef, newDst, body, "application/json")
			if got != want {
				t.Errorf("%T %q:\ngot  %s\nwant %s", newDst(), body, got, want)
			}
		}
	})
}

// TestDecodeJSONNestingLimit: a body nested deeper than encoding/json decodes
// is refused as the former decodeJSON refused it (not valid JSON), and the
// scanner stops there instead of keeping a frame for every level the body
// could open (MaxBodyBytes of them).
func TestDecodeJSONNestingLimit(t *testing.T) {
	newDst := func() any { return new(ajar.CreateInput) }
	for _, depth := range []int{maxNesting - 1, maxNesting, maxNesting + 1, MaxBodyBytes/len(`{"a":`) - 1} {
		for _, open := range []string{`{"target":` + strings.Repeat("[", depth-1), strings.Repeat(`{"a":`, depth)} {
			var closing strings.Builder
			for i := len(open) - 1; i >= 0 && closing.Len() < depth; i-- {
				switch open[i] {
				case '[':
					closing.WriteByte(']')
				case '{':
					closing.WriteByte('}')
				}
			}
			body := open + "1" + closing.String()
			if len(body) > MaxBodyBytes {
				continue
			}
			got := decodeOutcome(decodeJSON, newDst, body, "application/json")
			want := decodeOutcome(decodeJSONRef, newDst, body, "application/json")
			if got != want {
				t.Errorf("depth %d, %.12q...: got %s, want %s", depth, body, got, want)
			}
		}
	}
	var d dupScanner
	if err := d.scan([]byte(strings.Repeat("[", MaxBodyBytes))); err != nil || d.end != 0 || cap(d.stack) > 2*maxNesting {
		t.Errorf("64 KiB of [: %v, end %d, %d frames kept", err, d.end, cap(d.stack))
	}
}
