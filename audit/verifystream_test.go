package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ajar-dev/ajar"
)

// rawStream writes evs as a server does from its store's rows: each time as
// the text given (times[i], or the event's own text), in Records.
func rawStream(t testing.TB, evs []ajar.AuditEvent, times map[int]string) []byte {
	t.Helper()
	var recs Records
	for i := range evs {
		e := &evs[i]
		ts, ok := times[i]
		if !ok {
			ts = e.Time.UTC().Format(time.RFC3339Nano)
		}
		recs.Add(&RawEvent{Seq: e.Seq, Time: []byte(ts), Actor: []byte(e.Actor), Action: []byte(e.Action), Subject: []byte(e.Subject),
			Details: e.Details, PrevHash: e.PrevHash, Hash: e.Hash})
	}
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	if err := w.Records(&recs); err != nil {
		t.Fatal(err)
	}
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Records of raw rows make the same stream as events written one by one, and
// VerifyStream hashes every kind of field as ComputeHash does: times with and
// without a fraction, in another zone, empty and missing details, and the
// first event without a prev_hash.
func TestRecordsAndVerifyStream(t *testing.T) {
	evs := makeChain(60)
	evs[3].Details = nil
	evs[4].Details = []byte{}
	evs[5].Time = evs[5].Time.Truncate(time.Second)
	evs[6].Time = time.Date(2031, 2, 28, 23, 59, 59, 100, time.FixedZone("x", 3600))
	evs[7].Actor, evs[7].Subject = "", strings.Repeat("s", 300) // a length of two varint bytes
	evs[8].Details = bytes.Repeat([]byte("d"), 70000)
	rehash(evs, 3)
	raw := rawStream(t, evs, nil)
	if enc := encode(t, evs); !bytes.Equal(raw, enc) {
		t.Fatal("Records of raw rows differ from the stream of the events")
	}
	res, err := verifyStream(t, raw)
	if err != nil || res.Events != 60 || !bytes.Equal(res.Head, evs[59].Hash) {
		t.Fatalf("VerifyStream = %+v, %v", res, err)
	}
	// One hash byte off anywhere fails.
	for _, i := range []int{0, 3, 6, 8, 59} {
		evs2 := append([]ajar.AuditEvent(nil), evs...)
		evs2[i].Hash = bytes.Clone(evs2[i].Hash)
		evs2[i].Hash[31] ^= 1
		if _, err := verifyStream(t, rawStream(t, evs2, nil)); err == nil {
			t.Errorf("event %d with a wrong hash accepted", i+1)
		}
	}
}

// A time sent in another form of the same instant (an offset, trailing
// zeros) verifies as the instant it names, as Verify over StreamPages does;
// a time that is not one fails the event.
func TestVerifyStreamTimeText(t *testing.T) {
	evs := makeChain(10)
	evs[2].Time = time.Date(2030, 1, 2, 3, 4, 5, 600000000, time.UTC)
	rehash(evs, 2)
	for _, ts := range []string{"2030-01-02T04:04:05.6+01:00", "2030-01-02T03:04:05.600Z", "2030-01-02T03:04:05.600000000Z"} {
		if _, err := verifyStream(t, rawStream(t, evs, map[int]string{2: ts})); err != nil {
			t.Errorf("%s: %v", ts, err)
		}
	}
	for _, ts := range []string{"2030-01-02T03:04:05.7Z", "2030-01-02T03:04:06.6Z", "2030-02-30T03:04:05.6Z", "2030-01-02T03:04:60.6Z", "yesterday", ""} {
		_, err := verifyStream(t, rawStream(t, evs, map[int]string{2: ts}))
		if err == nil {
			t.Errorf("%s: accepted", ts)
		}
		if _, ok := errors.AsType[*BadEventError](err); !ok && !strings.Contains(err.Error(), "bad time") {
			t.Errorf("%s: %v, want a bad hash or a bad time", ts, err)
		}
	}
}

// canonicalTime accepts exactly the texts that parsing and formatting again
// gives back unchanged.
func TestCanonicalTime(t *testing.T) {
	check := func(s string) {
		t.Helper()
		tm, err := time.Parse(time.RFC3339Nano, s)
		want := err == nil && tm.UTC().Format(time.RFC3339Nano) == s
		if got := canonicalTime([]byte(s)); got != want {
			t.Errorf("canonicalTime(%q) = %v, want %v (parse: %v)", s, got, want, err)
		}
	}
	for _, s := range []string{
		"2030-01-02T03:04:05Z", "2030-01-02T03:04:05.1Z", "2030-01-02T03:04:05.123456789Z",
		"2030-01-02T03:04:05.1234567891Z", "2030-01-02T03:04:05.10Z", "2030-01-02T03:04:05.Z",
		"2030-01-02T03:04:05.000000000Z", "2030-01-02T03:04:05+00:00", "2030-01-02T03:04:05z",
		"2030-01-02t03:04:05Z", "2030-01-02 03:04:05Z", "2030/01/02T03:04:05Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999Z", "2030-00-01T00:00:00Z", "2030-13-01T00:00:00Z", "2030-01-00T00:00:00Z",
		"2030-01-32T00:00:00Z", "2030-04-31T00:00:00Z", "2028-02-29T00:00:00Z", "2030-02-29T00:00:00Z",
		"2000-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2030-01-01T24:00:00Z", "2030-01-01T23:60:00Z",
		"2030-01-01T23:59:60Z", "2030-01-01T23:59:5aZ", "2030-01-01T23:59:59.1a2Z", "2030-01-01T23:59:59Z ",
		"+030-01-01T00:00:00Z", "", "Z",
	} {
		check(s)
	}
	// Every time a log can hold comes out canonical.
	for _, tm := range []time.Time{time.Unix(0, 0), time.Unix(1<<33, 999999999), time.Date(2031, 12, 31, 23, 59, 59, 5000, time.UTC)} {
		s := tm.UTC().Format(time.RFC3339Nano)
		if !canonicalTime([]byte(s)) {
			t.Errorf("canonicalTime(%q) = false", s)
		}
		check(s)
	}
}

// BenchmarkVerifyStream verifies a stream of 1,000,000 events as `ajar audit
// verify` reads it.
func BenchmarkVerifyStream(b *testing.B) {
	enc := rawStream(b, benchChain(), nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := VerifyStream(b.Context(), bytes.NewReader(enc))
		if err != nil || res.Events != 1_000_000 {
			b.Fatal(res, err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/log")
}
