package postgres

import (
	"strconv"

	"github.com/ajar-dev/ajar/store/internal/sqlcodec"
)

// auditDialect writes PostgreSQL's numbered placeholders for ListAudit. The
// requester and target columns it searches are filled by an insert trigger
// (migration 0008), so AppendAudit inserts the hashed columns only.
var auditDialect = sqlcodec.AuditDialect{Placeholder: func(n int) string { return "$" + strconv.Itoa(n) }}
