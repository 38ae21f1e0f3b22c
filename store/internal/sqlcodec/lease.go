package sqlcodec

import (
	"time"

	"github.com/ajar-dev/ajar"
)

// LeaseArgs checks the arguments of ajar.Tx.AcquireLease against the
// transaction's clock now, and returns until and now as stored. It returns
// EINVALID for an empty name or owner, or an until not after now.
func LeaseArgs(name, owner string, until, now time.Time) (untilS, nowS string, err error) {
	switch {
	case name == "":
		return "", "", ajar.FieldErrorf("name", "lease name is required")
	case owner == "":
		return "", "", ajar.FieldErrorf("owner", "lease owner is required")
	case !until.After(now):
		return "", "", ajar.FieldErrorf("until", "must be after now (%s), got %s",
			now.UTC().Format(time.RFC3339Nano), until.UTC().Format(time.RFC3339Nano))
	}
	if untilS, err = FormatTime("until", until); err != nil {
		return "", "", err
	}
	nowS, err = FormatTime("now", now)
	return untilS, nowS, err
}
