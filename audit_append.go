package ajar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/ajar-dev/ajar/internal/jsonenc"
)

// AppendAudit appends one audit event in tx, at the store's time, with details
// encoded as JSON (nil: none). Call it in the transaction of the change it
// records, so the change and its audit event commit together. It fails when
// details cannot be encoded or the store refuses the event; an audit write that
// fails must fail the operation. It is MarshalAuditDetails then
// AppendAuditJSON, for a caller that needs the encoded details only once.
func AppendAudit(ctx context.Context, tx Tx, actor, action, subject string, details any) error {
	raw, err := MarshalAuditDetails(action, details)
	if err != nil {
		return err
	}
	return AppendAuditJSON(ctx, tx, actor, action, subject, raw)
}

// MarshalAuditDetails encodes the details of an audit event action as
// AppendAudit stores them: json.Marshal's output (valid, compact JSON, <, >
// and & escaped), nil for nil details. A caller that also hands the details
// on (the notification of the event) encodes them once with it and appends
// with AppendAuditJSON. An error means details cannot be encoded.
//
// The bytes are hashed into the audit chain, so they are json.Marshal's,
// always: the common shapes (a map[string]any of strings, numbers, times,
// string lists and maps, raw JSON; see jsonenc.AppendValue) are written
// without reflection, byte for byte the same, and anything else, or anything
// json.Marshal might refuse, goes to json.Marshal whole.
func MarshalAuditDetails(action string, details any) (json.RawMessage, error) {
	if details == nil {
		return nil, nil
	}
	scratch := detailsScratch.Get().(*[]byte)
	enc, ok := jsonenc.AppendValue((*scratch)[:0], details)
	var out json.RawMessage
	if ok {
		out = bytes.Clone(enc) // at its size, and not the pool's: the event and its notification keep it
	}
	if cap(enc) <= 64<<10 {
		*scratch = enc[:0]
		detailsScratch.Put(scratch)
	}
	if ok {
		return out, nil
	}
	b, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", action, err)
	}
	return b, nil
}

// detailsScratch holds the buffers MarshalAuditDetails writes details in
// before it copies them out at their size.
var detailsScratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// AppendAuditJSON is AppendAudit with details already encoded by
// MarshalAuditDetails; they are stored as they are (the store checks that
// they are JSON). It fails when the store refuses the event.
func AppendAuditJSON(ctx context.Context, tx Tx, actor, action, subject string, details json.RawMessage) error {
	_, err := tx.AppendAudit(ctx, AuditEvent{Time: tx.Now(), Actor: actor, Action: action, Subject: subject, Details: details})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}
