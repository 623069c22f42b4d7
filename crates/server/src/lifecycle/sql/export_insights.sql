-- The insights an export holds, oldest first: created at or after $2 and, for one session ($1),
-- those citing at least one of its turns.
SELECT id, content, source_ids, tags, importance,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
FROM l2_insights
WHERE ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
  AND ($1::text IS NULL
       OR source_ids && ARRAY(SELECT r.id FROM l0_raw r WHERE r.session_id = $1))
ORDER BY id
