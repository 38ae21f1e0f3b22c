package sqlite

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ajar-dev/ajar/audit"
)

// qAuditRows reads a range of the log for the audit stream. audit_events.time
// is the RFC 3339 text that was hashed (migration 0001), sent as it is.
const qAuditRows = `SELECT seq, time, actor, action, subject, details, prev_hash, hash
	FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq`

// ReadAuditRows calls fn with each audit event whose Seq is in (after, upTo],
// in Seq order, as the database holds it (GET /v1/audit/stream sends them so,
// and the reader checks every field). The range is read in one statement,
// so as of one moment; a deleted event is left for the verifier to see. The
// event passed to fn, and the bytes it points to, are valid only during the
// call. It returns fn's error, ctx's, the database's, or one for a row whose
// columns hold values of the wrong kind.
//
// A million rows are what `ajar audit verify` waits for, so they are read on
// a read-only connection of their own, opened for the call, straight from
// SQLite (modernc.org/sqlite/lib, the C library under the database/sql
// driver): each field is seen where SQLite holds it and copied once, by fn,
// with no Go value per column and no lock per call (the connection is used
// by this goroutine only). Through database/sql a row cost about 3 times as
// much.
func (s *Store) ReadAuditRows(ctx context.Context, after, upTo int64, fn func(*audit.RawEvent) error) error {
	var path string
	if err := s.readDB.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		return fmt.Errorf("sqlite: read audit events: database file: %w", err)
	}
	if path == "" {
		return fmt.Errorf("sqlite: read audit events: the database has no file")
	}
	c, err := openRowConn(path)
	if err != nil {
		return fmt.Errorf("sqlite: read audit events: %w", err)
	}
	defer c.close()
	if err := c.readAudit(ctx, after, upTo, fn); err != nil {
		if _, ok := err.(rowConnError); ok {
			return fmt.Errorf("sqlite: read audit events after %d: %w", after, err)
		}
		return err // fn's or ctx's
	}
	return nil
}

// rowConn is a read-only SQLite connection without SQLite's own locking
// (SQLITE_OPEN_NOMUTEX): one goroutine uses it, then closes it.
type rowConn struct {
	tls *libc.TLS
	db  uintptr
}

// rowConnError is an error of SQLite's.
type rowConnError string

func (e rowConnError) Error() string { return string(e) }

func openRowConn(path string) (_ *rowConn, err error) {
	c := &rowConn{tls: libc.NewTLS()}
	name, err := libc.CString(path)
	if err != nil {
		c.tls.Close()
		return nil, err
	}
	defer libc.Xfree(c.tls, name)
	pp := c.tls.Alloc(ptrSize)
	defer c.tls.Free(ptrSize)
	rc := sqlite3.Xsqlite3_open_v2(c.tls, name, pp, sqlite3.SQLITE_OPEN_READONLY|sqlite3.SQLITE_OPEN_NOMUTEX, 0)
	c.db = loadPtr(pp)
	if rc != sqlite3.SQLITE_OK {
		err := c.err("open", rc)
		c.close()
		return nil, err
	}
	sqlite3.Xsqlite3_busy_timeout(c.tls, c.db, int32(busyTimeout.Milliseconds()))
	return c, nil
}

func (c *rowConn) close() {
	if c.db != 0 {
		sqlite3.Xsqlite3_close_v2(c.tls, c.db)
		c.db = 0
	}
	c.tls.Close()
}

// err describes SQLite's error rc in what.
func (c *rowConn) err(what string, rc int32) error {
	msg := "out of memory"
	if c.db != 0 {
		msg = libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db))
	}
	return rowConnError(fmt.Sprintf("%s: %s (%d)", what, msg, rc))
}

func (c *rowConn) readAudit(ctx context.Context, after, upTo int64, fn func(*audit.RawEvent) error) error {
	q, err := libc.CString(qAuditRows)
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, q)
	pp := c.tls.Alloc(ptrSize)
	defer c.tls.Free(ptrSize)
	if rc := sqlite3.Xsqlite3_prepare_v2(c.tls, c.db, q, -1, pp, 0); rc != sqlite3.SQLITE_OK {
		return c.err("prepare", rc)
	}
	st := loadPtr(pp)
	defer sqlite3.Xsqlite3_finalize(c.tls, st)
	if rc := sqlite3.Xsqlite3_bind_int64(c.tls, st, 1, after); rc != sqlite3.SQLITE_OK {
		return c.err("bind", rc)
	}
	if rc := sqlite3.Xsqlite3_bind_int64(c.tls, st, 2, upTo); rc != sqlite3.SQLITE_OK {
		return c.err("bind", rc)
	}
	var e audit.RawEvent
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		switch rc := sqlite3.Xsqlite3_step(c.tls, st); rc {
		case sqlite3.SQLITE_ROW:
		case sqlite3.SQLITE_DONE:
			return nil
		default:
			return c.err("step", rc)
		}
		if t := sqlite3.Xsqlite3_column_type(c.tls, st, 0); t != sqlite3.SQLITE_INTEGER {
			return rowConnError(fmt.Sprintf("audit event after %d: seq of type %d", e.Seq, t))
		}
		e.Seq = sqlite3.Xsqlite3_column_int64(c.tls, st, 0)
		var ok [7]bool
		for i, f := range [...]*[]byte{&e.Time, &e.Actor, &e.Action, &e.Subject, &e.Details, &e.PrevHash, &e.Hash} {
			*f, ok[i] = c.column(st, int32(i+1), i >= 4)
		}
		if ok != [7]bool{true, true, true, true, true, true, true} {
			return rowConnError(fmt.Sprintf("audit event %d: a column of the wrong type (ok: %v)", e.Seq, ok))
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
}

// column returns column i of the row st is on, where SQLite holds it (valid
// until the next step): text or a blob, or (if null) nil for NULL. false for
// any other type.
func (c *rowConn) column(st uintptr, i int32, null bool) ([]byte, bool) {
	var p uintptr
	switch sqlite3.Xsqlite3_column_type(c.tls, st, i) {
	case sqlite3.SQLITE_TEXT:
		p = sqlite3.Xsqlite3_column_text(c.tls, st, i)
	case sqlite3.SQLITE_BLOB:
		p = sqlite3.Xsqlite3_column_blob(c.tls, st, i)
	case sqlite3.SQLITE_NULL:
		return nil, null
	default:
		return nil, false
	}
	n := sqlite3.Xsqlite3_column_bytes(c.tls, st, i)
	if n == 0 {
		return []byte{}, true
	}
	if p == 0 { // out of memory converting the value
		return nil, false
	}
	return libc.GoBytes(p, int(n)), true
}

// loadPtr reads the pointer SQLite wrote at p (allocated with ptrSize bytes).
func loadPtr(p uintptr) uintptr {
	if ptrSize == 4 {
		return uintptr(binary.NativeEndian.Uint32(libc.GoBytes(p, 4)))
	}
	return uintptr(binary.NativeEndian.Uint64(libc.GoBytes(p, 8)))
}

const ptrSize = strconv.IntSize / 8
