-- The statement trigger of migration 0009 checks and moves the head in one
-- statement instead of four (lock, check, read the last row, move): an UPDATE
-- of the head row, which locks it first as before, moves it to the last new
-- row only if every new row extends it (the i-th in seq order is head.seq + i
-- and links to the row before it, the head for the first). At READ COMMITTED
-- an UPDATE that waited for the row re-checks that condition against the head
-- it then finds. Only when it moves nothing are the rows looked at again, to
-- say which one is wrong. Every statement a trigger runs costs the server
-- more than the few rows it reads; the checks and the guard of the head row
-- do not change.
CREATE OR REPLACE FUNCTION audit_events_extend_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	head audit_head%ROWTYPE;
	bad  record;
BEGIN
	UPDATE audit_head h SET seq = l.seq, hash = l.hash
	FROM (SELECT seq, hash FROM new_events ORDER BY seq DESC LIMIT 1) l
	WHERE NOT EXISTS (
		SELECT 1 FROM (
			SELECT seq, prev_hash,
				row_number() OVER w AS i,
				lag(hash) OVER w AS before
			FROM new_events WINDOW w AS (ORDER BY seq)) n
		WHERE n.seq IS DISTINCT FROM h.seq + n.i
			OR n.prev_hash IS DISTINCT FROM (CASE WHEN n.i = 1 THEN h.hash ELSE n.before END)
		OFFSET 0); -- a subquery run for the head row it finds, not a join
	IF FOUND OR NOT EXISTS (SELECT 1 FROM new_events) THEN
		RETURN NULL;
	END IF;
	-- Refused: find the first row that does not extend the head, to say so.
	SELECT * INTO head FROM audit_head FOR UPDATE;
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
	RAISE EXCEPTION 'audit events are appended in sequence (head is %): the head did not move', head.seq
		USING ERRCODE = 'restrict_violation';
END;
$$;
