-- The best $3 raw turns of session $6 for query $1 (stemmed in languages $2), ranked over every
-- match of that session: the expressions of raw_best.sql over the same values ($4
-- recency_weight, $5 its half-life in seconds, $7 the instant), so a turn ranks here exactly as
-- it ranks there ($8 to $11 too).
--
-- Planner notes: the session's turns are read by `l0_raw_tenant_session_id_id_idx` (the
-- tenant condition repeats the row-level security policy's, migration V7) and each is
-- checked and ranked on its row — the cost is the session's size (the caller counts it first,
-- `session_size.sql`), not the number of matches in the whole table, which for a frequent
-- word is tens of thousands of GIN entries. `OFFSET 0` keeps the `@@` condition out of the
-- subquery, so the planner cannot turn it into a BitmapAnd with the GIN index. The only
-- conditions on the table are text equalities (leakproof, so a row-level security policy does not
-- keep it out of the index condition).
SELECT r.id,
       extract(epoch FROM r.created_at)::float8 AS created,
       c.relevance,
       c.relevance * (1 + $4 * power(0.5, greatest($7 - extract(epoch FROM r.created_at)::float8, 0) / $5)) AS score
FROM (SELECT s.id, s.created_at, s.search_tsv FROM l0_raw s
      WHERE s.tenant = current_setting('app.tenant', true) AND s.session_id = $6 OFFSET 0) r
CROSS JOIN LATERAL (
    SELECT CASE WHEN $11::tsquery IS NOT NULL AND NOT (r.search_tsv @@ $10::tsquery)
                THEN ts_rank_cd(r.search_tsv, $11::tsquery)
                ELSE ts_rank_cd(r.search_tsv, coalesce($9::tsquery, querytree(coalesce($8::tsquery, search_query($1, $2)))::tsquery))
           END::float8 AS relevance
    OFFSET 0  -- computed once per row: flattened, it would be repeated in `score`
) c
WHERE r.search_tsv @@ coalesce($8::tsquery, search_query($1, $2))
  AND querytree(coalesce($8::tsquery, search_query($1, $2))) <> 'T'
ORDER BY score DESC, r.created_at DESC, r.id DESC
LIMIT $3
