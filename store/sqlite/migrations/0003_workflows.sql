-- Workflows: the notification outbox, break-glass review tasks and extensions.

-- One row per event per sink. A sink's rows are delivered in id order; id is
-- INTEGER PRIMARY KEY, so it grows in commit order with the one writer.
CREATE TABLE notifications (
	id         INTEGER NOT NULL PRIMARY KEY,
	sink       TEXT    NOT NULL,
	key        TEXT,             -- NULL for none; unique per sink otherwise
	event      BLOB    NOT NULL, -- the JSON delivered
	created_at TEXT    NOT NULL,
	next_at    TEXT    NOT NULL,
	attempts   INTEGER NOT NULL,
	last_error TEXT    NOT NULL,
	state      TEXT    NOT NULL, -- pending, delivered, dropped
	done_at    TEXT,
	version    INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX notifications_key ON notifications (sink, key) WHERE key IS NOT NULL;
-- The head of each sink's queue.
CREATE INDEX notifications_pending ON notifications (sink, id) WHERE state = 'pending';
CREATE INDEX notifications_done ON notifications (done_at) WHERE state != 'pending';

CREATE TABLE reviews (
	request_id TEXT NOT NULL PRIMARY KEY,
	kind       TEXT NOT NULL,
	requester  TEXT NOT NULL,
	target     TEXT NOT NULL,
	reason     TEXT NOT NULL,
	opened_at  TEXT NOT NULL,
	closed_at  TEXT,
	closed_by  TEXT NOT NULL,
	comment    TEXT NOT NULL
) STRICT;

CREATE INDEX reviews_opened ON reviews (opened_at, request_id);
CREATE INDEX reviews_open ON reviews (opened_at, request_id) WHERE closed_at IS NULL;

CREATE TABLE extensions (
	request_id   TEXT    NOT NULL,
	seq          INTEGER NOT NULL,
	by_ns        INTEGER NOT NULL, -- nanoseconds
	reason       TEXT    NOT NULL,
	requested_by TEXT    NOT NULL,
	requested_at TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	approvals    TEXT    NOT NULL, -- JSON array or null
	decided_at   TEXT,
	version      INTEGER NOT NULL,
	PRIMARY KEY (request_id, seq)
) STRICT;
