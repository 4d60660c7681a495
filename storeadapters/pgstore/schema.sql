-- atauth pgstore schema, version 1.
--
-- This file is exactly what (*pgstore.Store).Migrate applies, inside one
-- transaction, with search_path set to the schema chosen by WithSchema (if
-- any). Teams that run their own migrations can apply it as it is, for
-- example with psql --single-transaction -f schema.sql, and skip Migrate.
-- Every statement is idempotent, so applying it twice is harmless.

CREATE TABLE IF NOT EXISTS atauth_schema_version (
	version      integer     PRIMARY KEY,
	applied_at   timestamptz NOT NULL DEFAULT now()
);

-- Sessions. Everything but sealed is plain, non-secret metadata an operator
-- may query; sealed is encrypted by atauth and never opened by the store.
CREATE TABLE IF NOT EXISTS atauth_sessions (
	id           text        PRIMARY KEY,
	did          text        NOT NULL,
	handle       text        NOT NULL,
	kind         text        NOT NULL,
	group_id     text        NOT NULL,
	name         text        NOT NULL,
	prefix       text        NOT NULL,
	scopes       text        NOT NULL,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz NOT NULL,
	last_used_at timestamptz NOT NULL,
	version      bigint      NOT NULL,
	sealed       bytea       NOT NULL
);

-- ListSessionsByGroup. Most sessions are in no group, so they stay out of
-- the index.
CREATE INDEX IF NOT EXISTS atauth_sessions_group_idx
	ON atauth_sessions (group_id, created_at) WHERE group_id <> '';

-- ListSessionsByDID.
CREATE INDEX IF NOT EXISTS atauth_sessions_did_kind_idx
	ON atauth_sessions (did, kind, created_at);

-- PurgeExpired.
CREATE INDEX IF NOT EXISTS atauth_sessions_expires_idx
	ON atauth_sessions (expires_at);

-- One-time values: pending authorization flows and exchange tokens.
CREATE TABLE IF NOT EXISTS atauth_once_values (
	key          text        PRIMARY KEY,
	value        bytea       NOT NULL,
	expires_at   timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS atauth_once_values_expires_idx
	ON atauth_once_values (expires_at);

-- Leases. fence increases every time a lease passes to a new owner, and
-- never goes back, even after a lease row is deleted, because it comes from
-- a sequence.
CREATE SEQUENCE IF NOT EXISTS atauth_lease_fence;

CREATE TABLE IF NOT EXISTS atauth_leases (
	key          text        PRIMARY KEY,
	owner        text        NOT NULL,
	expires_at   timestamptz NOT NULL,
	fence        bigint      NOT NULL DEFAULT nextval('atauth_lease_fence')
);

CREATE INDEX IF NOT EXISTS atauth_leases_expires_idx
	ON atauth_leases (expires_at);

INSERT INTO atauth_schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
