-- atauth pgstore schema, version 2: an index for ListIdleSessions, which
-- the janitor (Manager.RunJanitor) uses to find sessions whose grant has
-- been idle.
--
-- Migrate applies this file after schema.sql, in the same transaction, to
-- a database below version 2. CREATE INDEX blocks writes to atauth_sessions while it builds,
-- a few seconds per million sessions; on a large, busy table run
--
--	CREATE INDEX CONCURRENTLY IF NOT EXISTS atauth_sessions_last_used_idx
--		ON atauth_sessions (last_used_at);
--
-- by hand first, and this statement finds the index already there.

CREATE INDEX IF NOT EXISTS atauth_sessions_last_used_idx
	ON atauth_sessions (last_used_at);

-- atauth_schema_version holds one row from this version on: the version
-- the schema is at.
DELETE FROM atauth_schema_version WHERE version < 2;
INSERT INTO atauth_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;
