-- One batch of expired raw turns: at most $2 turns older than $1 days, locked in ascending id
-- order like every other deletion (see memory/store.rs), skipping turns another transaction
-- holds — a turn an insight is citing right now goes in a later batch, after it is linked.
WITH doomed AS MATERIALIZED (
    SELECT id FROM l0_raw
    WHERE tenant = current_setting('app.tenant', true)
      AND created_at < now() - make_interval(days => $1)
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM l0_raw AS t USING doomed WHERE t.id = doomed.id RETURNING t.id
