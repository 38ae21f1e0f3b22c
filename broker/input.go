package broker

import "github.com/ajar-dev/ajar"

// Free text is checked at the edge with ajar.CheckText (one line) and
// ajar.CheckLines (reasons and comments): no control or bidirectional
// characters, valid UTF-8, bounded length (see docs/security.md, "Free text").
// Every method taking free text calls one of the checks below before it reads
// the store.

// checkCreateText checks the free text of a new request (also a break-glass
// request and an explanation). Errors are EINVALID naming the field.
func checkCreateText(in ajar.CreateInput) error {
	if err := ajar.CheckText("target", in.Target, maxTargetLen); err != nil {
		return err
	}
	if err := ajar.CheckLines("reason", in.Reason, maxReasonLen); err != nil {
		return err
	}
	if err := ajar.CheckText("ticket", in.Ticket, maxTicketLen); err != nil {
		return err
	}
	for k, v := range in.Params {
		if err := ajar.CheckText("params", k, 64); err != nil {
			return err
		}
		if err := ajar.CheckText("params."+k, v, maxParamLen); err != nil {
			return err
		}
	}
	return nil
}

// checkComment checks an approver's comment, or the reason of a denial or an
// extension (field names it). EINVALID naming field.
func checkComment(field, s string) error { return ajar.CheckLines(field, s, maxCommentLen) }
