package audit

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ajar-dev/ajar"
)

// encode writes evs as an audit stream, with its end record.
func encode(t testing.TB, evs []ajar.AuditEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// verifyStream verifies the stream b both ways, with VerifyStream and with
// Verify over StreamPages, fails the test unless they agree (the same result,
// or both an error), and returns VerifyStream's. VerifyStream also reads it
// a byte at a time, so that every record crosses the end of its buffer.
func verifyStream(t testing.TB, b []byte, cps ...*Checkpoint) (Result, error) {
	t.Helper()
	res, err := VerifyStream(t.Context(), bytes.NewReader(b), cps...)
	res2, err2 := Verify(t.Context(), StreamPages(bytes.NewReader(b), 7), cps...)
	res3, err3 := VerifyStream(t.Context(), iotest.OneByteReader(bytes.NewReader(b)), cps...)
	if (err == nil) != (err2 == nil) || res.Events != res2.Events || !bytes.Equal(res.Head, res2.Head) {
		t.Fatalf("VerifyStream = %+v, %v; Verify(StreamPages) = %+v, %v", res, err, res2, err2)
	}
	if (err == nil) != (err3 == nil) || res.Events != res3.Events || !bytes.Equal(res.Head, res3.Head) {
		t.Fatalf("VerifyStream = %+v, %v; a byte at a time = %+v, %v", res, err, res3, err3)
	}
	return res, err
}

func TestStreamRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 7, 50} {
		evs := makeChain(n)
		if n > 2 {
			evs[2].Details = nil
			rehash(evs, 2)
		}
		res, err := verifyStream(t, encode(t, evs))
		if err != nil || res.Events != int64(n) {
			t.Fatalf("n=%d: Verify = %+v, %v", n, res, err)
		}
		if n > 0 && !bytes.Equal(res.Head, evs[n-1].Hash) {
			t.Errorf("n=%d: head %x, want %x", n, res.Head, evs[n-1].Hash)
		}
		// Every event comes back as it went in.
		next := StreamPages(bytes.NewReader(encode(t, evs)), 1000)
		page, err := next(t.Context())
		if err != nil || len(page) != n {
			t.Fatalf("n=%d: page of %d, %v", n, len(page), err)
		}
		for i := range page {
			got, want := page[i], evs[i]
			if got.Seq != want.Seq || !got.Time.Equal(want.Time) || got.Actor != want.Actor || got.Action != want.Action ||
				got.Subject != want.Subject || !bytes.Equal(got.Details, want.Details) || !bytes.Equal(got.PrevHash, want.PrevHash) ||
				!bytes.Equal(got.Hash, want.Hash) {
				t.Errorf("event %d: got %+v, want %+v", i+1, got, want)
			}
		}
	}
}

// A tampered, reordered or missing event in the middle of a stream fails
// Verify as it would from any source.
func TestStreamTampered(t *testing.T) {
	evs := makeChain(40)
	edited := append([]ajar.AuditEvent(nil), evs...)
	edited[20].Actor = "mallory@example.com"
	swapped := append([]ajar.AuditEvent(nil), evs...)
	swapped[20], swapped[21] = swapped[21], swapped[20]
	dropped := append(append([]ajar.AuditEvent(nil), evs[:20]...), evs[21:]...)
	for name, c := range map[string][]ajar.AuditEvent{"edited": edited, "out of order": swapped, "deleted": dropped} {
		_, err := verifyStream(t, encode(t, c))
		if _, ok := errors.AsType[*BadEventError](err); !ok {
			t.Errorf("%s: Verify = %v, want a *BadEventError", name, err)
		}
	}
	// A byte flipped on the wire inside an event's hash is caught too.
	b := encode(t, evs)
	i := bytes.Index(b, evs[30].Hash)
	b[i] ^= 1
	if _, err := verifyStream(t, b); err == nil {
		t.Error("Verify accepted a stream with a flipped hash byte")
	}
}

// A stream cut anywhere, even between events, fails: only its end record
// says it is whole.
func TestStreamTruncated(t *testing.T) {
	b := encode(t, makeChain(30))
	for cut := 0; cut < len(b); cut++ {
		_, err := verifyStream(t, b[:cut])
		if err == nil {
			t.Fatalf("Verify accepted the stream cut at byte %d of %d", cut, len(b))
		}
	}
	// Cut just before the end record: a whole chain, still refused.
	_, err := verifyStream(t, b[:len(b)-3])
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut before the end: %v, want io.ErrUnexpectedEOF", err)
	}
}

// An end record that does not match what arrived, a server error, and
// something that is not a stream all fail.
func TestStreamBadEnds(t *testing.T) {
	evs := makeChain(10)
	short := encode(t, evs[:9])
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	for i := range evs[:5] {
		w.Event(&evs[i])
	}
	w.Fail("disk on fire")
	// A stream whose end claims more events than it holds (one was dropped
	// from the end of the stream, then the end record copied on).
	full := encode(t, evs)
	lastStart := bytes.LastIndex(full, []byte{'e', 10})
	forged := append(append([]byte(nil), full[:lastStart]...), full[len(full)-3:]...)
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"server error": {buf.Bytes(), "disk on fire"},
		"not a stream": {[]byte(`{"events":[]}`), "not an audit stream"},
		"bad record":   {append(short[:len(short)-3:len(short)-3], 'q'), "bad record"},
		"forged end":   {forged, "the server says it sent 10 events"},
		"huge field":   {append([]byte(streamHeader+"e\x01"), 0xff, 0xff, 0xff, 0xff, 0x0f), "a field of"},
	}
	for name, c := range cases {
		_, err := verifyStream(t, c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Verify = %v, want an error with %q", name, err, c.want)
		}
	}
}

// A stream that ends before a checkpoint it must reach is a truncated log.
func TestStreamCheckpoint(t *testing.T) {
	evs := makeChain(20)
	cp := &Checkpoint{Size: 20, Head: evs[19].Hash}
	if _, err := verifyStream(t, encode(t, evs), cp); err != nil {
		t.Fatal(err)
	}
	_, err := verifyStream(t, encode(t, evs[:15]), cp)
	if _, ok := errors.AsType[*TruncatedError](err); !ok {
		t.Errorf("Verify = %v, want a *TruncatedError", err)
	}
}

func BenchmarkStream(b *testing.B) {
	evs := makeChain(100000)
	enc := encode(b, evs)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		res, err := Verify(b.Context(), StreamPages(bytes.NewReader(enc), 0))
		if err != nil || res.Events != int64(len(evs)) {
			b.Fatal(res, err)
		}
	}
}
