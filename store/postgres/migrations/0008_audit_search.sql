-- Audit search by index (docs/architecture.md, "Audit log"): who made the
-- request an event is about and its target, copied from the request when the
-- event is inserted (the trigger below; filled here for the events already
-- there), and the time in the fixed-width layout so text order is time order.
-- None of them is hashed: the chain covers the event as it was before.

ALTER TABLE audit_events
	ADD COLUMN requester text,
	ADD COLUMN target text,
	ADD COLUMN time_key text COLLATE "C" GENERATED ALWAYS AS (
		substr(time, 1, 19) || '.' ||
		rpad(CASE WHEN substr(time, 20, 1) = '.' THEN substr(time, 21, length(time) - 21) ELSE '' END, 9, '0') ||
		'Z') STORED;

-- The append-only trigger stops every UPDATE; lift it for the backfill only
-- (this migration runs in one transaction under the migration lock).
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update;
UPDATE audit_events a SET requester = r.requester, target = r.target FROM requests r WHERE r.id = a.subject;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update;

CREATE FUNCTION audit_events_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	SELECT r.requester, r.target INTO NEW.requester, NEW.target FROM requests r WHERE r.id = NEW.subject;
	RETURN NEW;
END;
$$;

CREATE TRIGGER audit_events_request BEFORE INSERT ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_events_request();

CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_requester ON audit_events (requester, seq) WHERE requester IS NOT NULL;
CREATE INDEX audit_events_target ON audit_events (target, seq) WHERE target IS NOT NULL;
CREATE INDEX audit_events_time ON audit_events (time_key, seq);

-- The inbox lists the extensions waiting for approval in one read.
CREATE INDEX extensions_pending ON extensions (request_id, seq) WHERE state = 'pending';
