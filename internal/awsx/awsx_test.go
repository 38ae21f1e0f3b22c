package awsx

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestFields(t *testing.T) {
	f := DecodeFields(json.RawMessage(`{"a":"x","n":3,"list":["p",2],"m":{"k":"v","bad":1},"d":"90s","neg":"-1s","Region":"x","sub":{"z":1}}`),
		"a", "n", "list", "m", "d", "neg", "sub", "missing")
	if f.String("a", true) != "x" || f.String("missing", true) != "" {
		t.Error("String")
	}
	if n, ok := f.Int("n"); n != 3 || !ok {
		t.Error("Int")
	}
	if got := f.Strings("list"); !slices.Equal(got, []string{"p"}) {
		t.Errorf("Strings = %v", got)
	}
	if got := f.StringMap("m"); got["k"] != "v" {
		t.Errorf("StringMap = %v", got)
	}
	if f.Duration("d") != 90*time.Second {
		t.Error("Duration")
	}
	f.Duration("neg")
	f.Object("sub", "y")
	var fields []string
	for _, p := range f.Problems() {
		fields = append(fields, p.Field)
	}
	want := []string{"Region", "missing", "list[1]", "m.bad", "neg", "sub.z"}
	if !slices.Equal(fields, want) {
		t.Fatalf("problems at %q, want %q (%v)", fields, want, f.Problems())
	}

	if probs := DecodeFields(json.RawMessage(`"str"`), "a").Problems(); len(probs) != 1 || probs[0].Field != "" {
		t.Fatalf("a non-object config: %v", probs)
	}
}

func TestUserMap(t *testing.T) {
	m := UserMap{Template: "{local}.{domain}-{user}", Names: map[string]string{"boss@example.com": "the.boss"}}
	if got := m.Resolve("alice@example.com"); got != "alice.example.com-alice@example.com" {
		t.Errorf("Resolve = %q", got)
	}
	if got := m.Resolve("boss@example.com"); got != "the.boss" {
		t.Errorf("Resolve = %q", got)
	}
	f := DecodeFields(json.RawMessage(`{"t":"{login}"}`), "t", "n")
	f.UserMap("t", "n", "{local}")
	if probs := f.Problems(); len(probs) != 1 || probs[0].Field != "t" {
		t.Fatalf("unknown placeholder: %v", probs)
	}
}

func TestParseRoleARN(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:iam::111122223333:role/ro":             "ro",
		"arn:aws:iam::111122223333:role/team/a/ro":      "ro",
		"arn:aws-cn:iam::111122223333:role/ro":          "ro",
		"arn:aws:iam::111122223333:user/ro":             "",
		"arn:aws:iam::1111:role/ro":                     "",
		"arn:aws:iam::111122223333:role/has space/role": "",
	} {
		_, _, name, ok := ParseRoleARN(arn)
		if name != want || ok != (want != "") {
			t.Errorf("ParseRoleARN(%s) = %q, %v", arn, name, ok)
		}
	}
}

func TestParsePolicyURLEncoded(t *testing.T) {
	p := NewPolicy(Statement{Effect: "Allow", Action: []string{"a:B"}, Resource: []string{"*"},
		Condition: map[string]map[string]any{"DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}})
	enc := "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%5B%22a%3AB%22%5D%2C%22Resource%22%3A%5B%22%2A%22%5D%2C%22Condition%22%3A%7B%22DateLessThan%22%3A%7B%22aws%3ACurrentTime%22%3A%222026-01-01T00%3A00%3A00Z%22%7D%7D%7D%5D%7D"
	for _, doc := range []string{p.JSON(), enc} {
		got, err := ParsePolicy(doc)
		if err != nil || got.JSON() != p.JSON() {
			t.Errorf("ParsePolicy = %s, %v", got.JSON(), err)
		}
	}
}

func TestKeyedMutex(t *testing.T) {
	var k KeyedMutex
	var mu sync.Mutex
	inside := map[string]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		key := []string{"a", "b"}[i%2]
		wg.Go(func() {
			defer k.Lock(key)()
			mu.Lock()
			inside[key]++
			if inside[key] > 1 {
				t.Errorf("two holders of %s", key)
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inside[key]--
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(k.locks) != 0 {
		t.Fatalf("locks left: %v", k.locks)
	}
}
