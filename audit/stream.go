package audit

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ajar-dev/ajar"
)

// The audit stream is how GET /v1/audit/stream sends the whole log to
// `ajar audit verify`: compact and cheap to encode and decode, so a million
// events verify in seconds. It is a header line, then records, each a tag
// byte:
//
//	'e' an event: uvarint Seq, then Time (RFC 3339 text, exactly as hashed),
//	    Actor, Action, Subject, Details, PrevHash and Hash, each a uvarint
//	    length and that many bytes
//	'z' the end: uvarint number of events sent, uvarint last Seq
//	'x' the server failed: a uvarint length and a message
//
// A stream without its 'z' record was cut short, and its reader fails. The
// stream carries no trust: Verify checks every event as from any other source.
const (
	StreamContentType = "application/vnd.ajar.audit-stream.v1"
	streamHeader      = "ajar-audit-stream v1\n"
	// maxStreamField bounds one field of an event, so a broken or hostile
	// stream cannot make the reader allocate without limit.
	maxStreamField = 16 << 20
)

// StreamWriter writes an audit stream. Call Event for each event in Seq
// order, then End (or Fail). It buffers: nothing is sent before Flush, End or
// Fail, or until its buffer fills.
type StreamWriter struct {
	w    *bufio.Writer
	n    uint64
	last int64
	buf  []byte
	err  error
}

// NewStreamWriter writes the stream header to w and returns the writer.
func NewStreamWriter(w io.Writer) *StreamWriter {
	s := &StreamWriter{w: bufio.NewWriterSize(w, 256<<10), buf: make([]byte, 0, 1024)}
	_, s.err = s.w.WriteString(streamHeader)
	return s
}

// Event writes one event. It returns the first write error, then the same
// error for every later call.
func (s *StreamWriter) Event(e *ajar.AuditEvent) error {
	if s.err != nil {
		return s.err
	}
	s.buf = AppendRecord(s.buf[:0], e)
	if _, s.err = s.w.Write(s.buf); s.err == nil {
		s.n++
		s.last = e.Seq
	}
	return s.err
}

// Records writes a run of event records (see Records). It returns the first
// write error, then the same error for every later call.
func (s *StreamWriter) Records(r *Records) error {
	if s.err != nil {
		return s.err
	}
	if r.N == 0 {
		return nil
	}
	if _, s.err = s.w.Write(r.B); s.err == nil {
		s.n += uint64(r.N)
		s.last = r.Last
	}
	return s.err
}

// Records is a run of event records, made with AppendRecord or
// AppendRawRecord and counted with Add, so that a server can encode pages of
// the log in parallel and write them in order (StreamWriter.Records).
type Records struct {
	B    []byte
	N    int   // how many events B holds
	Last int64 // the Seq of the last
}

// Add appends e's record.
func (r *Records) Add(e *RawEvent) {
	r.B = AppendRawRecord(r.B, e)
	r.N++
	r.Last = e.Seq
}

// RawEvent is an audit event as a store keeps it: Time is the RFC 3339 text
// that was hashed (ajar.AuditEvent.ComputeHash), as stored. Its fields are
// sent as they are; the reader checks them all.
type RawEvent struct {
	Seq                                                   int64
	Time, Actor, Action, Subject, Details, PrevHash, Hash []byte
}

// AppendRecord appends e's event record to b.
func AppendRecord(b []byte, e *ajar.AuditEvent) []byte {
	b = append(b, 'e')
	b = binary.AppendUvarint(b, uint64(e.Seq))
	// Hashed as this text: the length first, then the text in place.
	var tb [64]byte
	b = appendField(b, e.Time.UTC().AppendFormat(tb[:0], time.RFC3339Nano))
	b = appendString(b, e.Actor)
	b = appendString(b, e.Action)
	b = appendString(b, e.Subject)
	b = appendField(b, e.Details)
	b = appendField(b, e.PrevHash)
	return appendField(b, e.Hash)
}

// AppendRawRecord appends e's event record to b.
func AppendRawRecord(b []byte, e *RawEvent) []byte {
	b = append(b, 'e')
	b = binary.AppendUvarint(b, uint64(e.Seq))
	b = appendField(b, e.Time)
	b = appendField(b, e.Actor)
	b = appendField(b, e.Action)
	b = appendField(b, e.Subject)
	b = appendField(b, e.Details)
	b = appendField(b, e.PrevHash)
	return appendField(b, e.Hash)
}

// Flush sends what is buffered.
func (s *StreamWriter) Flush() error {
	if s.err == nil {
		s.err = s.w.Flush()
	}
	return s.err
}

// End writes the end record and flushes.
func (s *StreamWriter) End() error {
	if s.err != nil {
		return s.err
	}
	b := append(s.buf[:0], 'z')
	b = binary.AppendUvarint(b, s.n)
	b = binary.AppendUvarint(b, uint64(s.last))
	if _, s.err = s.w.Write(b); s.err != nil {
		return s.err
	}
	return s.Flush()
}

// Fail ends the stream with an error message instead of its end record, so
// the reader reports it (an EINTERNAL error) rather than a cut stream.
func (s *StreamWriter) Fail(msg string) error {
	if s.err != nil {
		return s.err
	}
	b := appendField(append(s.buf[:0], 'x'), []byte(msg))
	if _, s.err = s.w.Write(b); s.err != nil {
		return s.err
	}
	return s.Flush()
}

func appendField(b, f []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

func appendString(b []byte, f string) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

// StreamPages returns a next function for Verify that reads an audit stream
// from r in pages of up to pageSize events (<= 0: 10,000). A page is valid
// until the next call. At the end record it checks that the stream held as
// many events as it says and ended at the Seq it says, then returns an empty
// page. It fails on a stream that is not one, is cut short (io.EOF before the
// end record: io.ErrUnexpectedEOF wrapped), or ends with the server's error.
func StreamPages(r io.Reader, pageSize int) func(context.Context) ([]ajar.AuditEvent, error) {
	if pageSize <= 0 {
		pageSize = 10000
	}
	sr := &streamReader{r: bufio.NewReaderSize(r, 256<<10), page: make([]ajar.AuditEvent, 0, pageSize), strs: map[string]string{}}
	return sr.next
}

type streamReader struct {
	r      *bufio.Reader
	header bool
	done   bool
	n      uint64
	last   int64
	page   []ajar.AuditEvent
	slab   []byte            // where fields are read to (see field)
	strs   map[string]string // see intern
}

func (s *streamReader) next(ctx context.Context) ([]ajar.AuditEvent, error) {
	if s.done {
		return nil, nil
	}
	if err := s.readHeader(); err != nil {
		return nil, err
	}
	page := s.page[:0]
	for len(page) < cap(page) {
		tag, err := s.r.ReadByte()
		if err != nil {
			return nil, s.cut(err)
		}
		switch tag {
		case 'e':
			var e ajar.AuditEvent
			if err := s.event(&e); err != nil {
				return nil, err
			}
			s.n++
			s.last = e.Seq
			page = append(page, e)
		default:
			if err := s.end(tag); err != nil {
				return nil, err
			}
			return page, nil
		}
	}
	return page, nil
}

// readHeader reads the stream's header, once.
func (s *streamReader) readHeader() error {
	if s.header {
		return nil
	}
	h := make([]byte, len(streamHeader))
	if _, err := io.ReadFull(s.r, h); err != nil || string(h) != streamHeader {
		return errors.New("audit stream: not an audit stream (bad header)")
	}
	s.header = true
	return nil
}

// end reads the record of tag, which is not an event's: nil (and s.done) for
// an end record that matches what arrived, an error for anything else.
func (s *streamReader) end(tag byte) error {
	switch tag {
	case 'z':
		n, err1 := binary.ReadUvarint(s.r)
		last, err2 := binary.ReadUvarint(s.r)
		if err := errors.Join(err1, err2); err != nil {
			return s.cut(err)
		}
		if n != s.n || int64(last) != s.last {
			return fmt.Errorf("audit stream: the server says it sent %d events ending at %d, but %d arrived ending at %d", n, last, s.n, s.last)
		}
		s.done = true
		return nil
	case 'x':
		msg, err := s.field()
		if err != nil {
			return s.cut(err)
		}
		return ajar.Errorf(ajar.EINTERNAL, "audit stream: the server failed after %d events: %s", s.n, msg)
	default:
		return fmt.Errorf("audit stream: bad record after %d events", s.n)
	}
}

// cut describes a read error: io.EOF within the stream means it was cut short.
func (s *streamReader) cut(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("audit stream cut short after %d events: %w", s.n, err)
}

func (s *streamReader) event(e *ajar.AuditEvent) error {
	seq, err := binary.ReadUvarint(s.r)
	if err != nil {
		return s.cut(err)
	}
	e.Seq = int64(seq)
	var f [7][]byte
	for i := range f {
		if f[i], err = s.field(); err != nil {
			return s.cut(err)
		}
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, string(f[0])); err != nil {
		return fmt.Errorf("audit stream: event %d: bad time: %w", e.Seq, err)
	}
	e.Actor, e.Action, e.Subject = s.intern(f[1]), s.intern(f[2]), s.intern(f[3])
	if len(f[4]) > 0 {
		e.Details = f[4]
	}
	if len(f[5]) > 0 {
		e.PrevHash = f[5]
	}
	e.Hash = f[6]
	return nil
}

// intern returns b as a string, the same string for the actors, actions and
// subjects that repeat, so a million events do not make a million copies.
func (s *streamReader) intern(b []byte) string {
	if v, ok := s.strs[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(s.strs) >= 1<<14 {
		clear(s.strs) // bounded: a log of distinct subjects only fills it again
	}
	s.strs[v] = v
	return v
}

// field reads one length-prefixed field. The bytes are carved from a shared
// slab, never written again, so an event's fields cost no allocation each.
func (s *streamReader) field() ([]byte, error) {
	n, err := binary.ReadUvarint(s.r)
	if err != nil {
		return nil, err
	}
	if n > maxStreamField {
		return nil, fmt.Errorf("a field of %d bytes", n)
	}
	if int(n) > cap(s.slab)-len(s.slab) {
		s.slab = make([]byte, 0, max(int(n), 1<<20))
	}
	b := s.slab[len(s.slab) : len(s.slab)+int(n) : len(s.slab)+int(n)]
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, err
	}
	s.slab = s.slab[:len(s.slab)+int(n)]
	return b, nil
}
