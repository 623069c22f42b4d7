-- The turns an export holds, oldest first: optionally one session ($1) and those created at or
-- after $2. Times in UTC with microseconds, which is all timestamptz keeps: nothing is lost.
SELECT id, session_id, speaker, content, metadata::text AS metadata,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
FROM l0_raw
WHERE ($1::text IS NULL OR session_id = $1)
  AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
ORDER BY id
