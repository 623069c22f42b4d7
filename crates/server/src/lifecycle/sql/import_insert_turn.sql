INSERT INTO l0_raw (session_id, speaker, content, metadata, created_at)
VALUES ($1, $2, $4, $5::text::jsonb, $3::timestamptz)
RETURNING id
