package ajar

import (
	"context"
	"encoding/json"
	"fmt"
)

// AppendAudit appends one audit event in tx, at the store's time, with details
// encoded as JSON (nil: none). Call it in the transaction of the change it
// records, so the change and its audit event commit together. It fails when
// details cannot be encoded or the store refuses the event; an audit write that
// fails must fail the operation.
func AppendAudit(ctx context.Context, tx Tx, actor, action, subject string, details any) error {
	var raw json.RawMessage
	if details != nil {
		b, err := json.Marshal(details)
		if err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
		raw = b
	}
	_, err := tx.AppendAudit(ctx, AuditEvent{Time: tx.Now(), Actor: actor, Action: action, Subject: subject, Details: raw})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}
