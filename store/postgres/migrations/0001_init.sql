-- Times are UTC text, as in the SQLite store. Columns that are compared or sorted
-- (created_at, next_at...) use a fixed-width layout, 2006-01-02T15:04:05.000000000Z,
-- with the "C" collation, so text order is time order and every nanosecond
-- round-trips (timestamptz keeps only microseconds). audit_events.time is the
-- exact RFC 3339 text that was hashed.

CREATE TABLE requests (
	id                text COLLATE "C" NOT NULL PRIMARY KEY,
	target            text    NOT NULL,
	requester         text    NOT NULL,
	reason            text    NOT NULL,
	ticket            text    NOT NULL,
	duration          bigint  NOT NULL, -- nanoseconds
	params            text    NOT NULL, -- JSON object or null
	policy            text    NOT NULL,
	state             text    NOT NULL,
	end_reason        text    NOT NULL,
	created_at        text COLLATE "C" NOT NULL,
	updated_at        text COLLATE "C" NOT NULL,
	start_at          text COLLATE "C",
	approval_deadline text COLLATE "C" NOT NULL,
	activated_at      text COLLATE "C",
	expires_at        text COLLATE "C",
	ended_at          text COLLATE "C",
	approvals         text    NOT NULL, -- JSON array or null
	handle            text    NOT NULL, -- JSON object or null
	next_at           text COLLATE "C",
	attempts          bigint  NOT NULL,
	last_error        text    NOT NULL,
	version           bigint  NOT NULL  -- compare-and-swap and fencing token
);

-- The scheduler's queue: terminal requests (next_at NULL) are not in it at all.
CREATE INDEX requests_next_at ON requests (next_at, id) WHERE next_at IS NOT NULL;
-- ListRequests is newest first, unfiltered or by state or requester.
CREATE INDEX requests_created ON requests (created_at, id);
CREATE INDEX requests_state ON requests (state, created_at, id);
CREATE INDEX requests_requester ON requests (requester, created_at, id);

CREATE TABLE audit_events (
	seq       bigint NOT NULL PRIMARY KEY,
	time      text   NOT NULL,
	actor     text   NOT NULL,
	action    text   NOT NULL,
	subject   text   NOT NULL,
	details   bytea, -- the exact bytes that were hashed
	prev_hash bytea,
	hash      bytea  NOT NULL
);

CREATE INDEX audit_events_subject ON audit_events (subject, seq);

-- The chain head: one row, the last event's seq and hash. Appending locks it
-- (SELECT ... FOR UPDATE) until commit, so writers on every replica append one
-- after the other and the chain stays linear. Locking the last event row would not
-- do: a waiter would wake up to that same row, not the one appended meanwhile.
CREATE TABLE audit_head (
	one  boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
	seq  bigint  NOT NULL,
	hash bytea
);
INSERT INTO audit_head (seq, hash) VALUES (0, NULL);

-- The store has no code path that changes or removes an audit event; these make a
-- mistake (or a hand-typed statement) fail loudly instead of breaking the chain.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Only the event that extends the head may be inserted, and inserting it moves
-- the head: the two cannot drift apart.
CREATE FUNCTION audit_events_in_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	head audit_head%ROWTYPE;
BEGIN
	SELECT * INTO head FROM audit_head FOR UPDATE;
	IF NEW.seq IS DISTINCT FROM head.seq + 1 OR NEW.prev_hash IS DISTINCT FROM head.hash THEN
		RAISE EXCEPTION 'audit events are appended in sequence (head is %, got %)', head.seq, NEW.seq
			USING ERRCODE = 'restrict_violation';
	END IF;
	UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash;
	RETURN NEW;
END;
$$;

CREATE TRIGGER audit_events_in_sequence BEFORE INSERT ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_events_in_sequence();

-- The head moves only through that trigger, one event at a time.
CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP <> 'UPDATE' OR pg_trigger_depth() < 2 OR NEW.seq <> OLD.seq + 1 THEN
		RAISE EXCEPTION 'the audit head moves only by appending an event' USING ERRCODE = 'restrict_violation';
	END IF;
	RETURN NEW;
END;
$$;

CREATE TRIGGER audit_head_guard BEFORE UPDATE OR DELETE ON audit_head
	FOR EACH ROW EXECUTE FUNCTION audit_head_guard();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
	FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE tokens (
	hash       bytea NOT NULL PRIMARY KEY,
	user_id    text  NOT NULL,
	name       text  NOT NULL,
	created_at text COLLATE "C" NOT NULL
);

CREATE TABLE keys (
	name   text  NOT NULL PRIMARY KEY,
	sealed bytea NOT NULL
);

-- id keeps issue order; serial is the certificate's uint64 serial bit-cast to a
-- signed 64-bit integer, so serials above 2^63 round-trip exactly.
CREATE TABLE ssh_certs (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	serial       bigint NOT NULL UNIQUE,
	request_id   text   NOT NULL,
	key_id       text   NOT NULL,
	principals   text   NOT NULL, -- JSON array or null
	fingerprint  text   NOT NULL,
	valid_after  text COLLATE "C" NOT NULL,
	valid_before text COLLATE "C" NOT NULL,
	issued_at    text COLLATE "C" NOT NULL
);

CREATE INDEX ssh_certs_request ON ssh_certs (request_id, id);
