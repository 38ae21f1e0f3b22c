package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ajar-dev/ajar"
)

// SQLSTATE codes the store acts on. Errors are told apart by these codes only,
// never by their message text.
const (
	codeUniqueViolation      = "23505"
	codeCharNotInRepertoire  = "22021" // invalid UTF-8, or a NUL byte, in a text value
	codeUntranslatable       = "22P05"
	codeProgramLimitExceeded = "54000" // e.g. a value too large for an index entry
)

// pgCode returns the SQLSTATE of a PostgreSQL error in err's chain, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mapError turns the database errors that are the caller's fault into ajar errors:
// a duplicate key (ECONFLICT; the inserts avoid it with ON CONFLICT DO NOTHING, so
// that the transaction stays usable) and text the database cannot store
// (EINVALID). Anything else is wrapped with what was being done.
func mapError(err error, doing string) error {
	switch pgCode(err) {
	case codeUniqueViolation:
		return ajar.Errorf(ajar.ECONFLICT, "%s: already exists", doing)
	case codeCharNotInRepertoire, codeUntranslatable:
		return ajar.Errorf(ajar.EINVALID, "%s: text must be valid UTF-8 without NUL characters", doing)
	case codeProgramLimitExceeded:
		return ajar.Errorf(ajar.EINVALID, "%s: a value is too large", doing)
	}
	return fmt.Errorf("postgres: %s: %w", doing, err)
}
