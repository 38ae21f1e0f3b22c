-- Times are UTC text. Columns that are compared or sorted (created_at, next_at...)
-- use a fixed-width layout, 2006-01-02T15:04:05.000000000Z, so text order is time
-- order and every nanosecond round-trips; audit_events.time is the exact
-- RFC 3339 text that was hashed.

CREATE TABLE requests (
	id                TEXT    NOT NULL PRIMARY KEY,
	target            TEXT    NOT NULL,
	requester         TEXT    NOT NULL,
	reason            TEXT    NOT NULL,
	ticket            TEXT    NOT NULL,
	duration          INTEGER NOT NULL, -- nanoseconds
	params            TEXT    NOT NULL, -- JSON object or null
	policy            TEXT    NOT NULL,
	state             TEXT    NOT NULL,
	end_reason        TEXT    NOT NULL,
	created_at        TEXT    NOT NULL,
	updated_at        TEXT    NOT NULL,
	start_at          TEXT,
	approval_deadline TEXT    NOT NULL,
	activated_at      TEXT,
	expires_at        TEXT,
	ended_at          TEXT,
	approvals         TEXT    NOT NULL, -- JSON array or null
	handle            TEXT    NOT NULL, -- JSON object or null
	next_at           TEXT,
	attempts          INTEGER NOT NULL,
	last_error        TEXT    NOT NULL,
	version           INTEGER NOT NULL
) STRICT;

-- The scheduler's queue: terminal requests (next_at NULL) are not in it at all.
CREATE INDEX requests_next_at ON requests (next_at, id) WHERE next_at IS NOT NULL;
-- ListRequests is newest first, unfiltered or by state or requester.
CREATE INDEX requests_created ON requests (created_at, id);
CREATE INDEX requests_state ON requests (state, created_at, id);
CREATE INDEX requests_requester ON requests (requester, created_at, id);

CREATE TABLE audit_events (
	seq       INTEGER NOT NULL PRIMARY KEY,
	time      TEXT    NOT NULL,
	actor     TEXT    NOT NULL,
	action    TEXT    NOT NULL,
	subject   TEXT    NOT NULL,
	details   BLOB, -- the exact bytes that were hashed
	prev_hash BLOB,
	hash      BLOB    NOT NULL
) STRICT;

CREATE INDEX audit_events_subject ON audit_events (subject, seq);

-- The store has no code path that changes or removes an audit event; these make a
-- mistake (or a hand-typed statement) fail loudly instead of breaking the chain.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit events are append-only');
END;

-- Only the next sequence number may be inserted; this also stops INSERT OR
-- REPLACE, which removes the old row without firing the delete trigger.
CREATE TRIGGER audit_events_in_sequence BEFORE INSERT ON audit_events
WHEN NEW.seq IS NOT coalesce((SELECT max(seq) FROM audit_events), 0) + 1
BEGIN
	SELECT RAISE(ABORT, 'audit events are appended in sequence');
END;

CREATE TABLE tokens (
	hash       BLOB NOT NULL PRIMARY KEY,
	user_id    TEXT NOT NULL,
	name       TEXT NOT NULL,
	created_at TEXT NOT NULL
) STRICT;

CREATE TABLE keys (
	name   TEXT NOT NULL PRIMARY KEY,
	sealed BLOB NOT NULL
) STRICT;

-- id keeps issue order; serial is the certificate's uint64 serial bit-cast to a
-- signed 64-bit integer, so serials above 2^63 round-trip exactly.
CREATE TABLE ssh_certs (
	id           INTEGER NOT NULL PRIMARY KEY,
	serial       INTEGER NOT NULL UNIQUE,
	request_id   TEXT    NOT NULL,
	key_id       TEXT    NOT NULL,
	principals   TEXT    NOT NULL, -- JSON array or null
	fingerprint  TEXT    NOT NULL,
	valid_after  TEXT    NOT NULL,
	valid_before TEXT    NOT NULL,
	issued_at    TEXT    NOT NULL
) STRICT;

CREATE INDEX ssh_certs_request ON ssh_certs (request_id, id);
