-- Audit search by index (docs/architecture.md, "Audit log"): who made the
-- request an event is about and its target, copied from the request when the
-- event is appended (AppendAudit; filled here for the events already there),
-- and the time in the fixed-width layout so text order is time order. None of
-- them is hashed: the chain covers the event as it was before.

ALTER TABLE audit_events ADD COLUMN requester TEXT;
ALTER TABLE audit_events ADD COLUMN target TEXT;
ALTER TABLE audit_events ADD COLUMN time_key TEXT GENERATED ALWAYS AS (
	substr(time, 1, 19) || '.' ||
	substr(CASE WHEN substr(time, 20, 1) = '.' THEN substr(time, 21, length(time) - 21) ELSE '' END || '000000000', 1, 9) ||
	'Z') VIRTUAL;

-- The append-only trigger stops every UPDATE; lift it for the backfill only.
DROP TRIGGER audit_events_no_update;
UPDATE audit_events SET (requester, target) = (SELECT requester, target FROM requests WHERE requests.id = audit_events.subject)
	WHERE subject IN (SELECT id FROM requests);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_requester ON audit_events (requester, seq) WHERE requester IS NOT NULL;
CREATE INDEX audit_events_target ON audit_events (target, seq) WHERE target IS NOT NULL;
CREATE INDEX audit_events_time ON audit_events (time_key, seq);

-- The inbox lists the extensions waiting for approval in one read.
CREATE INDEX extensions_pending ON extensions (request_id, seq) WHERE state = 'pending';
