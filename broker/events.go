package broker

import (
	"time"

	"github.com/ajar-dev/ajar"
)

// Notifications are written to the outbox by the audit write (audit in
// service.go), in the transaction of the change; package events builds them
// (events.Notifier) and notify/outbox delivers them.

// activeNextAt is when the scheduler must look at an active request next: at
// its expiry, or before it to send the expiry reminder.
func (s *Service) activeNextAt(r *ajar.Request, now time.Time) *time.Time {
	if at, ok := s.notify.ReminderAt(r); ok && now.Before(at) {
		return ptr(at)
	}
	return ptr(*r.ExpiresAt)
}
