-- atauth sqlitestore schema, version 2: an index for ListIdleSessions,
-- which the janitor (Manager.RunJanitor) uses to find sessions whose grant
-- has been idle.
--
-- Open and New apply this file after schema.sql, in the same BEGIN
-- IMMEDIATE transaction, to a database below version 2.

CREATE INDEX IF NOT EXISTS atauth_sessions_last_used_idx
	ON atauth_sessions (last_used_at);

-- atauth_schema_version holds one row from this version on: the version
-- the schema is at.
DELETE FROM atauth_schema_version WHERE version < 2;
INSERT OR IGNORE INTO atauth_schema_version (version, applied_at)
	VALUES (2, CAST(strftime('%s', 'now') AS INTEGER) * 1000000000);
