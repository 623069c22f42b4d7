-- Records one run of a lifecycle task ($1: 'backup' or 'retention'). $2: whether it succeeded;
-- $3: why it failed (NULL on success); $4: counts and settings of a successful run. A failed
-- run keeps the last good time and detail, so the age of the last good backup stays visible.
INSERT INTO lifecycle_status AS s (task, last_ok_at, last_attempt_at, last_error, detail)
VALUES ($1, CASE WHEN $2 THEN now() END, now(), $3, coalesce($4::text::jsonb, '{}'::jsonb))
ON CONFLICT (task) DO UPDATE SET
    last_ok_at      = coalesce(EXCLUDED.last_ok_at, s.last_ok_at),
    last_attempt_at = EXCLUDED.last_attempt_at,
    last_error      = EXCLUDED.last_error,
    detail          = CASE WHEN $2 THEN EXCLUDED.detail ELSE s.detail END
