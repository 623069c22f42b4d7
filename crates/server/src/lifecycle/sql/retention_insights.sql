-- One batch of expired insights: at most $2 insights older than $1 days.
WITH doomed AS MATERIALIZED (
    SELECT id FROM l2_insights
    WHERE tenant = current_setting('app.tenant', true)
      AND created_at < now() - make_interval(days => $1)
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM l2_insights AS t USING doomed WHERE t.id = doomed.id RETURNING t.id
