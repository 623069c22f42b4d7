-- The best $3 insights for query $1 (stemmed in languages $2), ranked over every match.
--
-- score = relevance × (1 + $4 × 0.5 ^ (age / $5 seconds)) × (1 + $6 × (importance − 0.5)):
-- as for raw turns (raw_best.sql), on the same scale, with the insight's importance (0..1)
-- weighing in by $6 (importance_weight). Ties: newest first. $8 to $11 as in raw_best.sql.
--
-- Planner notes: as in raw_best.sql (every match is found in the GIN index, read and ranked).
SELECT i.id,
       extract(epoch FROM i.created_at)::float8 AS created,
       c.relevance,
       c.relevance * (1 + $4 * power(0.5, greatest($7 - extract(epoch FROM i.created_at)::float8, 0) / $5))
                   * (1 + $6 * (i.importance::float8 - 0.5)) AS score
FROM l2_insights i
CROSS JOIN LATERAL (
    SELECT CASE WHEN $11::tsquery IS NOT NULL AND NOT (i.search_tsv @@ $10::tsquery)
                THEN ts_rank_cd(i.search_tsv, $11::tsquery)
                ELSE ts_rank_cd(i.search_tsv, coalesce($9::tsquery, querytree(coalesce($8::tsquery, search_query($1, $2)))::tsquery))
           END::float8 AS relevance
    OFFSET 0  -- computed once per row: flattened, it would be repeated in `score`
) c
WHERE i.search_tsv @@ coalesce($8::tsquery, search_query($1, $2))
  AND querytree(coalesce($8::tsquery, search_query($1, $2))) <> 'T'
ORDER BY score DESC, i.created_at DESC, i.id DESC
LIMIT $3
