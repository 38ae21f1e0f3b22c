package ajar

import (
	"errors"
	"fmt"
)

// Error codes. The HTTP layer alone maps them to statuses (api.HTTPStatus).
const (
	EINVALID   = "invalid"         // bad input; Field names the offending field
	ENOTFOUND  = "not_found"       // the named thing does not exist (or is not visible to the caller)
	EFORBIDDEN = "forbidden"       // authenticated but not allowed (self-approval, not an approver...)
	EUNAUTH    = "unauthenticated" // missing or unknown credentials
	ECONFLICT  = "conflict"        // the request is not in a state that allows the operation, or a lost compare-and-swap
	ETOOMANY   = "too_many"        // a per-user limit of the policy's "limits" section is reached; try again later
	EINTERNAL  = "internal"        // anything else; the message is never shown to clients
)

// Error is ajar's one error type: a machine-readable code, a message that is safe to
// show to the caller, and, for invalid input, the field path that was wrong.
type Error struct {
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID *Error naming field.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any
// other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the safe message of the first *Error in err's chain, and a
// generic text for any other error so internals never leak to clients.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorField returns the field of the first *Error in err's chain, or "".
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// SafeMessage is err as it may be stored, audited and shown: an *Error's own
// message, or any other error's text cut to 500 bytes.
func SafeMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	return msg
}
