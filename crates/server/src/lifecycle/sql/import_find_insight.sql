-- An already imported copy of an insight: same time, content, tags, importance and (remapped)
-- sources; $6 as for turns. Read through the created_at index.
SELECT id FROM l2_insights
WHERE created_at = $1::timestamptz AND content = $2 AND tags = $3::text[]
  AND importance = $4::real AND source_ids = $5::bigint[]
ORDER BY id
OFFSET $6 LIMIT 1
