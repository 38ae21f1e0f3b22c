// Package readmodel holds what people read about ajar's requests beyond the
// API's lists: one evidence type that the API serves as JSON, ajar evidence
// renders as Markdown and the web's evidence page shows; the searchable audit
// log; and the web's view models (an approver's inbox with why a person
// cannot decide, the form for requesting a target).
//
// It sits above package broker and decides nothing: who may see a request,
// who may decide on it and what a provider answers are the broker's rules,
// which this package asks (see docs/architecture.md). The broker never
// imports it.
package readmodel

import "github.com/ajar-dev/ajar/broker"

// Reader answers the read model's questions from a broker.Service. Its
// methods are safe for concurrent use.
type Reader struct {
	svc *broker.Service
}

// New returns a Reader over svc.
func New(svc *broker.Service) *Reader { return &Reader{svc: svc} }
