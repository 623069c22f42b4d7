-- How many turns session $1 has, counted up to $2: a session with fewer is ranked from its own
-- turns (`raw_session_best.sql`), a larger one through the full-text index (`raw_best.sql`).
--
-- The tenant condition repeats the row-level security policy's (migration V7), so the index,
-- which leads with the tenant, serves the lookup whatever the policies.
-- Planner notes: a range of `l0_raw_tenant_session_id_id_idx` (index-only where the visibility map
-- allows), at most $2 entries.
SELECT count(*) AS turns
FROM (SELECT 1 FROM l0_raw
      WHERE tenant = current_setting('app.tenant', true) AND session_id = $1 LIMIT $2) s
