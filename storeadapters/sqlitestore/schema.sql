-- atauth sqlitestore schema, version 1.
--
-- Open and New apply this file in one BEGIN IMMEDIATE transaction when
-- atauth_schema_version shows it has not been applied yet. Every statement
-- is idempotent. Times are Unix nanoseconds (0 for the zero time.Time).

CREATE TABLE IF NOT EXISTS atauth_schema_version (
	version      INTEGER PRIMARY KEY,
	applied_at   INTEGER NOT NULL
) STRICT;

-- Sessions. Everything but sealed is plain, non-secret metadata an operator
-- may query; sealed is encrypted by atauth and never opened by the store.
CREATE TABLE IF NOT EXISTS atauth_sessions (
	id           TEXT    PRIMARY KEY,
	did          TEXT    NOT NULL,
	handle       TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	group_id     TEXT    NOT NULL,
	name         TEXT    NOT NULL,
	prefix       TEXT    NOT NULL,
	scopes       TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL,
	version      INTEGER NOT NULL,
	sealed       BLOB    NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS atauth_sessions_group_idx
	ON atauth_sessions (group_id, created_at) WHERE group_id <> '';

CREATE INDEX IF NOT EXISTS atauth_sessions_did_kind_idx
	ON atauth_sessions (did, kind, created_at);

CREATE INDEX IF NOT EXISTS atauth_sessions_expires_idx
	ON atauth_sessions (expires_at);

-- One-time values: pending authorization flows and exchange tokens.
CREATE TABLE IF NOT EXISTS atauth_once_values (
	key          TEXT    PRIMARY KEY,
	value        BLOB    NOT NULL,
	expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS atauth_once_values_expires_idx
	ON atauth_once_values (expires_at);

CREATE TABLE IF NOT EXISTS atauth_leases (
	key          TEXT    PRIMARY KEY,
	owner        TEXT    NOT NULL,
	expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS atauth_leases_expires_idx
	ON atauth_leases (expires_at);

INSERT OR IGNORE INTO atauth_schema_version (version, applied_at)
	VALUES (1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000000);
