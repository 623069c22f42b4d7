INSERT INTO l2_insights (content, source_ids, tags, importance, created_at)
VALUES ($2, $5::bigint[], $3::text[], $4::real, $1::timestamptz)
RETURNING id
