package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"
)

// VerifyStream verifies the audit stream read from r (see StreamWriter) as
// Verify(ctx, StreamPages(r, 0), cps...) does, with the same checks and
// errors, but without making an ajar.AuditEvent of each event: each is hashed
// from the bytes it arrived in, with no allocation per event, so a million
// events verify in a fraction of a second. It fails on a stream cut short, a
// server's error record or an end record that does not match what arrived
// (errors wrapped as Verify wraps next's), and on a broken chain (a
// *BadEventError, *TruncatedError or *RewrittenError).
func VerifyStream(ctx context.Context, r io.Reader, cps ...*Checkpoint) (Result, error) {
	c := newChain(cps)
	s := &streamReader{r: bufio.NewReaderSize(r, 1<<20)}
	fail := func(err error) (Result, error) {
		return Result{}, fmt.Errorf("verify audit log: read events after %d: %w", c.n, err)
	}
	if err := s.readHeader(); err != nil {
		return fail(err)
	}
	var h eventHasher
	for i := 0; ; i++ {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return Result{}, fmt.Errorf("verify audit log: %w", err)
			}
		}
		tag, err := s.r.ReadByte()
		if err != nil {
			return fail(s.cut(err))
		}
		if tag != 'e' {
			if err := s.end(tag); err != nil {
				return fail(err)
			}
			return c.finish()
		}
		if err := h.read(s); err != nil {
			return fail(err)
		}
		s.n++
		s.last = h.seq
		if err := c.checkSeq(h.seq); err != nil {
			return Result{}, err
		}
		if err := c.link(h.seq, h.prev, h.hash, h.hashOK); err != nil {
			return Result{}, err
		}
	}
}

// eventHasher reads one event record (after its tag) and hashes it as
// ajar.AuditEvent.ComputeHash does, into buffers it reuses.
type eventHasher struct {
	in     []byte // what is hashed: the fields, each after its length
	tb     []byte // the time's text, when it is not canonical
	rec    []byte // the fields of a record read piece by piece
	seq    int64
	prev   []byte // in in
	hash   []byte // as it arrived, valid until the next read
	hashOK bool   // hash is what the fields hash to
}

// hashDomain begins what ComputeHash hashes.
const hashDomain = "ajar-audit-v1\n"

// read reads the record from the reader's buffer when it holds all of it
// (nearly always), else piece by piece.
func (h *eventHasher) read(s *streamReader) error {
	var f [8][]byte // Seq's place, then Time, Actor, Action, Subject, Details, PrevHash, Hash
	buf, _ := s.r.Peek(s.r.Buffered())
	u, k := binary.Uvarint(buf)
	p := k
	for i := 1; i < len(f) && k > 0; i++ {
		var n uint64
		n, k = binary.Uvarint(buf[p:])
		if k <= 0 || n > maxStreamField || uint64(len(buf)-p-k) < n {
			k = 0
			break
		}
		f[i] = buf[p+k : p+k+int(n)]
		p += k + int(n)
	}
	if k <= 0 {
		return h.readPieces(s)
	}
	if err := h.sum(u, &f); err != nil {
		return err
	}
	s.r.Discard(p) // after sum: f is in the buffer
	return nil
}

// readPieces reads the record through the reader, for one that crosses the
// end of its buffer.
func (h *eventHasher) readPieces(s *streamReader) error {
	u, err := binary.ReadUvarint(s.r)
	if err != nil {
		return s.cut(err)
	}
	var f [8][]byte
	var ends [8]int
	rec := h.rec[:0]
	for i := 1; i < len(f); i++ {
		if rec, err = s.fieldInto(rec); err != nil {
			return s.cut(err)
		}
		ends[i] = len(rec)
	}
	for i := 1; i < len(f); i++ {
		f[i] = rec[ends[i-1]:ends[i]]
	}
	h.rec = rec
	return h.sum(u, &f)
}

// sum hashes the event seq of fields f (as read: f[0] unused) and keeps what
// the chain needs.
func (h *eventHasher) sum(seq uint64, f *[8][]byte) error {
	h.seq = int64(seq)
	in := append(h.in[:0], hashDomain...)
	in = binary.BigEndian.AppendUint64(in, seq)
	// The time is hashed as Time.UTC().Format(RFC3339Nano): text already in
	// that form is hashed as it is, anything else as what it parses to, or
	// the event is refused (as StreamPages does).
	if !canonicalTime(f[1]) {
		t, err := time.Parse(time.RFC3339Nano, string(f[1]))
		if err != nil {
			return fmt.Errorf("audit stream: event %d: bad time: %w", h.seq, err)
		}
		h.tb = t.UTC().AppendFormat(h.tb[:0], time.RFC3339Nano)
		f[1] = h.tb
	}
	var prevAt int
	for _, b := range f[1:7] { // Time, Actor, Action, Subject, Details, PrevHash
		in = binary.BigEndian.AppendUint64(in, uint64(len(b)))
		prevAt = len(in)
		in = append(in, b...)
	}
	h.in, h.prev, h.hash = in, in[prevAt:], f[7]
	sum := sha256.Sum256(in)
	h.hashOK = bytes.Equal(h.hash, sum[:])
	return nil
}

// fieldInto reads one length-prefixed field and appends it to b.
func (s *streamReader) fieldInto(b []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(s.r)
	if err != nil {
		return b, err
	}
	if n > maxStreamField {
		return b, fmt.Errorf("a field of %d bytes", n)
	}
	start := len(b)
	b = slices.Grow(b, int(n))[:start+int(n)]
	if _, err := io.ReadFull(s.r, b[start:]); err != nil {
		return b[:start], err
	}
	return b, nil
}

// canonicalTime reports whether b is a valid time in the form
// Time.UTC().Format(time.RFC3339Nano) gives, so that parsing and formatting
// it again would give b: YYYY-MM-DDTHH:MM:SS, then a fraction of up to nine
// digits without trailing zeros or none, then Z, with a real date and time
// (no second 60: time.Parse refuses it too).
func canonicalTime(b []byte) bool {
	const base = len("2006-01-02T15:04:05Z")
	if len(b) < base || len(b) == base+1 || len(b) > base+10 || b[len(b)-1] != 'Z' {
		return false
	}
	for i, c := range b[:19] {
		switch i {
		case 4, 7:
			if c != '-' {
				return false
			}
		case 10:
			if c != 'T' {
				return false
			}
		case 13, 16:
			if c != ':' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || frac[len(frac)-1] == '0' {
			return false
		}
		for _, c := range frac[1:] {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range b[i : i+n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	if month < 1 || month > 12 || day < 1 || num(11, 2) > 23 || num(14, 2) > 59 || num(17, 2) > 59 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	return day <= days
}
