-- Sessions: web and CLI sign-ins and API tokens, by the SHA-256 hash of their
-- secret, with expiry, last use and revocation (see ajar.Session). Optional
-- times are NULL when zero; group_names is JSON, NULL for none.
CREATE TABLE sessions (
	id           text COLLATE "C" NOT NULL PRIMARY KEY,
	hash         bytea NOT NULL UNIQUE,
	kind         text NOT NULL,
	user_id      text NOT NULL,
	name         text NOT NULL,
	group_names  text,
	created_at   text COLLATE "C" NOT NULL,
	expires_at   text COLLATE "C" NOT NULL,
	last_used_at text COLLATE "C",
	refreshed_at text COLLATE "C",
	refresh      bytea,
	mfa_at       text COLLATE "C",
	revoked_at   text COLLATE "C",
	revoked_by   text NOT NULL DEFAULT '',
	parent       text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);
CREATE INDEX sessions_created ON sessions (created_at, id);

-- The API tokens made before sessions existed never expired: they become
-- sessions of kind "token" that expire 90 days after this migration, with an id
-- made from their hash. The tokens table is then dropped.
INSERT INTO sessions (id, hash, kind, user_id, name, created_at, expires_at)
	SELECT 'tok_' || substr(encode(hash, 'hex'), 1, 16), hash, 'token', user_id, name, created_at,
		to_char((now() AT TIME ZONE 'UTC') + interval '90 days', 'YYYY-MM-DD"T"HH24:MI:SS') || '.000000000Z'
	FROM tokens;
DROP TABLE tokens;

-- What the IdP last said about a person (ajar.Identity).
CREATE TABLE identities (
	user_id    text COLLATE "C" NOT NULL PRIMARY KEY,
	group_names text NOT NULL,
	source     text NOT NULL,
	updated_at text COLLATE "C" NOT NULL
);

-- One-use sign-in steps (ajar.AuthFlow).
CREATE TABLE auth_flows (
	kind       text NOT NULL,
	key_hash   bytea NOT NULL,
	data       bytea NOT NULL,
	expires_at text COLLATE "C" NOT NULL,
	PRIMARY KEY (kind, key_hash)
);

-- Security keys and passkeys (ajar.WebAuthnCredential).
CREATE TABLE webauthn_credentials (
	id           bytea NOT NULL PRIMARY KEY,
	user_id      text NOT NULL,
	name         text NOT NULL,
	data         bytea NOT NULL,
	created_at   text COLLATE "C" NOT NULL,
	last_used_at text COLLATE "C"
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id, created_at);
