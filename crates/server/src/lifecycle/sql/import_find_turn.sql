-- An already imported copy of a turn: the same session, speaker, time, content and metadata.
-- $6 skips as many earlier equal copies as the file itself holds before this one, so a file
-- with two equal turns imports both and a second import of it finds both. Read through the
-- (session_id, id) index.
SELECT id FROM l0_raw
WHERE session_id = $1 AND speaker = $2 AND created_at = $3::timestamptz
  AND content = $4 AND metadata = $5::text::jsonb
ORDER BY id
OFFSET $6 LIMIT 1
