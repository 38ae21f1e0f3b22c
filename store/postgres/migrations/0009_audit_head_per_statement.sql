-- The head moves once per INSERT, not once per event: the store appends the
-- events of a transaction several at a time (one INSERT of many rows), and a
-- row trigger updating the one head row for each of them walked a growing
-- chain of row versions inside a batch. A statement trigger sees all the new
-- rows at once (a transition table), checks that they extend the head one
-- after the other, and moves the head to the last of them. The guarantees of
-- migration 0001 stay: only events that extend the head in sequence (seq one
-- more than the previous, prev_hash the previous hash) are ever stored, the
-- head and the last event cannot drift apart, and the head moves only by
-- appending.

DROP TRIGGER audit_events_in_sequence ON audit_events;
DROP FUNCTION audit_events_in_sequence();

CREATE FUNCTION audit_events_extend_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	head audit_head%ROWTYPE;
	bad  record;
	last record;
BEGIN
	-- The chain-head lock first (the store holds it already): writers keep
	-- one lock order, and no one else appends until this transaction ends.
	SELECT * INTO head FROM audit_head FOR UPDATE;
	-- The i-th new row (in seq order) must be head.seq + i and link to the
	-- row before it: the head for the first.
	SELECT n.seq, n.i INTO bad FROM (
		SELECT seq, prev_hash,
			row_number() OVER w AS i,
			lag(hash) OVER w AS before
		FROM new_events WINDOW w AS (ORDER BY seq)) n
	WHERE n.seq IS DISTINCT FROM head.seq + n.i
		OR n.prev_hash IS DISTINCT FROM (CASE WHEN n.i = 1 THEN head.hash ELSE n.before END)
	ORDER BY n.i LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'audit events are appended in sequence (head is %, event % of the insert is seq %)',
			head.seq, bad.i, bad.seq USING ERRCODE = 'restrict_violation';
	END IF;
	SELECT seq, hash INTO last FROM new_events ORDER BY seq DESC LIMIT 1;
	IF FOUND THEN
		UPDATE audit_head SET seq = last.seq, hash = last.hash;
	END IF;
	RETURN NULL;
END;
$$;

CREATE TRIGGER audit_events_extend_head AFTER INSERT ON audit_events
	REFERENCING NEW TABLE AS new_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_events_extend_head();

-- The head moves only through that trigger, forward, to an event that is
-- stored with that hash.
CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP <> 'UPDATE' OR pg_trigger_depth() < 2 OR NEW.seq <= OLD.seq
		OR NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.seq = NEW.seq AND e.hash = NEW.hash) THEN
		RAISE EXCEPTION 'the audit head moves only by appending an event' USING ERRCODE = 'restrict_violation';
	END IF;
	RETURN NEW;
END;
$$;
