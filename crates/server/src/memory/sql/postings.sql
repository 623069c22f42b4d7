-- The first $3 postings of each lexeme $2 in layer $1 ('r' raw, 'i' insight), in the index's
-- order: best impact first, newest first within one impact (`list` numbers the lexemes from
-- 1). Then, for each lexeme that has $3 postings or more, the next lower impact after the last
-- one read (`below`): every posting not read has the last one's impact and is not newer, or
-- at most that lower impact.
--
-- The tenant condition repeats the row-level security policy's (migration V7), so the index,
-- which leads with the tenant, serves the lookup whatever the policies.
-- Planner notes: one range of `search_postings_order_idx` per lexeme, read in index order
-- (no sort), and one probe of it for `below`; the memory tables are not touched.
WITH lists AS (
    SELECT l.n, l.lexeme FROM unnest($2::text[]) WITH ORDINALITY AS l(lexeme, n)
), top AS MATERIALIZED (
    SELECT l.n, p.impact, p.created_at, p.id
    FROM lists l
    CROSS JOIN LATERAL (
        SELECT s.impact, s.created_at, s.id
        FROM search_postings s
        WHERE s.tenant = current_setting('app.tenant', true)
          AND s.layer = $1::"char" AND s.lexeme = l.lexeme
        ORDER BY s.impact DESC, s.created_at DESC, s.id DESC
        LIMIT $3
    ) p
)
SELECT t.n AS list, t.id, t.impact::float8 AS impact,
       extract(epoch FROM t.created_at)::float8 AS created, false AS below
FROM top t
UNION ALL
SELECT l.n, NULL, b.impact::float8, NULL, true
FROM lists l
CROSS JOIN LATERAL (
    SELECT min(t.impact) AS last FROM top t WHERE t.n = l.n HAVING count(*) >= $3
) m
CROSS JOIN LATERAL (
    SELECT s.impact
    FROM search_postings s
    WHERE s.tenant = current_setting('app.tenant', true)
      AND s.layer = $1::"char" AND s.lexeme = l.lexeme AND s.impact < m.last
    ORDER BY s.impact DESC
    LIMIT 1
) b
