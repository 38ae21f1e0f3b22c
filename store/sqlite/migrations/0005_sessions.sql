-- Sessions: web and CLI sign-ins and API tokens, by the SHA-256 hash of their
-- secret, with expiry, last use and revocation (see ajar.Session). Optional
-- times are NULL when zero; group_names is JSON, NULL for none.
CREATE TABLE sessions (
	id           TEXT NOT NULL PRIMARY KEY,
	hash         BLOB NOT NULL UNIQUE,
	kind         TEXT NOT NULL,
	user_id      TEXT NOT NULL,
	name         TEXT NOT NULL,
	group_names  TEXT,
	created_at   TEXT NOT NULL,
	expires_at   TEXT NOT NULL,
	last_used_at TEXT,
	refreshed_at TEXT,
	refresh      BLOB,
	mfa_at       TEXT,
	revoked_at   TEXT,
	revoked_by   TEXT NOT NULL DEFAULT '',
	parent       TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id, created_at);
CREATE INDEX sessions_created ON sessions (created_at, id);

-- The API tokens made before sessions existed never expired: they become
-- sessions of kind "token" that expire 90 days after this migration, with an id
-- made from their hash. The tokens table is then dropped.
INSERT INTO sessions (id, hash, kind, user_id, name, created_at, expires_at)
	SELECT 'tok_' || lower(substr(hex(hash), 1, 16)), hash, 'token', user_id, name, created_at,
		strftime('%Y-%m-%dT%H:%M:%S', 'now', '+90 days') || '.000000000Z'
	FROM tokens;
DROP TABLE tokens;

-- What the IdP last said about a person (ajar.Identity).
CREATE TABLE identities (
	user_id    TEXT NOT NULL PRIMARY KEY,
	group_names TEXT NOT NULL,
	source     TEXT NOT NULL,
	updated_at TEXT NOT NULL
) STRICT;

-- One-use sign-in steps (ajar.AuthFlow).
CREATE TABLE auth_flows (
	kind       TEXT NOT NULL,
	key_hash   BLOB NOT NULL,
	data       BLOB NOT NULL,
	expires_at TEXT NOT NULL,
	PRIMARY KEY (kind, key_hash)
) STRICT;

-- Security keys and passkeys (ajar.WebAuthnCredential).
CREATE TABLE webauthn_credentials (
	id           BLOB NOT NULL PRIMARY KEY,
	user_id      TEXT NOT NULL,
	name         TEXT NOT NULL,
	data         BLOB NOT NULL,
	created_at   TEXT NOT NULL,
	last_used_at TEXT
) STRICT;
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id, created_at);
