package sqlcodec

import (
	"strconv"
	"strings"

	"github.com/ajar-dev/ajar"
)

// AuditDialect is what differs between the stores in the audit search query.
type AuditDialect struct {
	// Placeholder is the query text of the nth argument (1-based).
	Placeholder func(n int) string
	// Unindexed wraps a column so that the planner does not pick an index for
	// a condition on it (SQLite: "+col"); nil leaves the column as it is.
	Unindexed func(col string) string
}

// AuditSelect returns the query that selects cols of the audit events f
// selects (at most limit, in Seq order, descending with f.Newest) from
// audit_events, and its arguments. Every condition but an action prefix has
// an index (migration 0008): subject, actor, requester and target each with
// seq, and time_key, the event's time in TimeLayout. A user is the actor or
// the requester, so that search is the union of two index walks, each stopped
// at limit. It returns EINVALID when a time is out of range.
func AuditSelect(d AuditDialect, cols string, f ajar.AuditFilter, limit int) (string, []any, error) {
	var from, to string
	var err error
	if !f.From.IsZero() {
		if from, err = FormatTime("from", f.From.UTC()); err != nil {
			return "", nil, err
		}
	}
	if !f.To.IsZero() {
		if to, err = FormatTime("to", f.To.UTC()); err != nil {
			return "", nil, err
		}
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return d.Placeholder(len(args))
	}
	// With an equality on an indexed column, that index answers the search and
	// the time is checked on its rows; with none, the time index does.
	timeCol := "time_key"
	if d.Unindexed != nil && (f.Subject != "" || f.User != "" || f.Target != "") {
		timeCol = d.Unindexed(timeCol)
	}
	// where writes the conditions, with col = val first unless col is "".
	// Arguments are numbered in the order they appear in the text.
	where := func(col string, val any) string {
		var b strings.Builder
		b.WriteString(" WHERE seq > " + arg(f.AfterSeq))
		if col != "" {
			b.WriteString(" AND " + col + " = " + arg(val))
		}
		if f.BeforeSeq > 0 {
			b.WriteString(" AND seq < " + arg(f.BeforeSeq))
		}
		if f.Subject != "" {
			b.WriteString(" AND subject = " + arg(f.Subject))
		}
		if f.Target != "" {
			b.WriteString(" AND target = " + arg(f.Target))
		}
		if prefix, ok := strings.CutSuffix(f.Action, "."); ok {
			n := len(prefix) + 1
			b.WriteString(" AND substr(action, 1, " + strconv.Itoa(n) + ") = " + arg(f.Action))
		} else if f.Action != "" {
			b.WriteString(" AND action = " + arg(f.Action))
		}
		if from != "" {
			b.WriteString(" AND " + timeCol + " >= " + arg(from))
		}
		if to != "" {
			b.WriteString(" AND " + timeCol + " < " + arg(to))
		}
		return b.String()
	}
	dir := " ORDER BY seq"
	if f.Subject == "" && f.User == "" && f.Target == "" && (from != "" || to != "") {
		// A time range alone: the time index finds its events, which are then
		// sorted. Ordering by the bare seq would let a planner walk the whole
		// log by seq from one end instead, betting that matches are spread
		// evenly (PostgreSQL did: 230 ms for an hour in the middle of a
		// million events; this way, a few ms).
		dir = " ORDER BY seq + 0"
	}
	if f.Newest {
		dir += " DESC"
	}
	if f.User == "" {
		q := "SELECT " + cols + " FROM audit_events" + where("", nil) + dir
		return q + " LIMIT " + arg(limit), args, nil
	}
	actor := "SELECT seq FROM audit_events" + where("actor", f.User) + dir
	actor += " LIMIT " + arg(limit)
	requester := "SELECT seq FROM audit_events" + where("requester", f.User) + dir
	requester += " LIMIT " + arg(limit)
	q := "SELECT " + cols + " FROM audit_events WHERE seq IN (SELECT seq FROM (" + actor + ") AS a UNION ALL SELECT seq FROM (" +
		requester + ") AS r)" + dir
	return q + " LIMIT " + arg(limit), args, nil
}

// AuditCap is the capacity to give the result of a ListAudit of limit
// events: all of it for the large pages that read the whole log (so they do
// not grow it step by step), little for the rest, which rarely fill theirs.
func AuditCap(limit int) int {
	if limit >= 5000 {
		return limit
	}
	return 0
}

// Slab copies many small byte slices into shared blocks. Each copy is its
// own slice (its capacity ends with it), so appending to one never touches
// another.
type Slab struct{ b []byte }

// Copy returns a copy of p, nil for nil.
func (s *Slab) Copy(p []byte) []byte {
	if p == nil {
		return nil
	}
	if len(p) > cap(s.b)-len(s.b) {
		s.b = make([]byte, 0, max(len(p), 64<<10))
	}
	start := len(s.b)
	s.b = append(s.b, p...)
	return s.b[start:len(s.b):len(s.b)]
}
