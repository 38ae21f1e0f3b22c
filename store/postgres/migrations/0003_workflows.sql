-- Workflows: the notification outbox, break-glass review tasks and extensions.

-- One row per event per sink. A sink's rows are delivered in id order. id comes
-- from an identity sequence, which alone would give ids in the order transactions
-- asked for them, not the order they committed; EnqueueNotification takes the
-- audit chain-head lock first (as every write does) and holds it to commit, so
-- ids are handed out in commit order.
CREATE TABLE notifications (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	sink       text   NOT NULL,
	key        text,             -- NULL for none; unique per sink otherwise
	event      bytea  NOT NULL,  -- the JSON delivered
	created_at text COLLATE "C" NOT NULL,
	next_at    text COLLATE "C" NOT NULL,
	attempts   bigint NOT NULL,
	last_error text   NOT NULL,
	state      text   NOT NULL, -- pending, delivered, dropped
	done_at    text COLLATE "C",
	version    bigint NOT NULL
);

CREATE UNIQUE INDEX notifications_key ON notifications (sink, key) WHERE key IS NOT NULL;
-- The head of each sink's queue.
CREATE INDEX notifications_pending ON notifications (sink, id) WHERE state = 'pending';
CREATE INDEX notifications_done ON notifications (done_at) WHERE state <> 'pending';

CREATE TABLE reviews (
	request_id text COLLATE "C" NOT NULL PRIMARY KEY,
	kind       text NOT NULL,
	requester  text NOT NULL,
	target     text NOT NULL,
	reason     text NOT NULL,
	opened_at  text COLLATE "C" NOT NULL,
	closed_at  text COLLATE "C",
	closed_by  text NOT NULL,
	comment    text NOT NULL
);

CREATE INDEX reviews_opened ON reviews (opened_at, request_id);
CREATE INDEX reviews_open ON reviews (opened_at, request_id) WHERE closed_at IS NULL;

CREATE TABLE extensions (
	request_id   text   NOT NULL,
	seq          bigint NOT NULL,
	by_ns        bigint NOT NULL, -- nanoseconds
	reason       text   NOT NULL,
	requested_by text   NOT NULL,
	requested_at text COLLATE "C" NOT NULL,
	state        text   NOT NULL,
	approvals    text   NOT NULL, -- JSON array or null
	decided_at   text COLLATE "C",
	version      bigint NOT NULL,
	PRIMARY KEY (request_id, seq)
);
