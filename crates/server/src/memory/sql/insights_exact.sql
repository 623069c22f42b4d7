-- The insights $2 that match query $1 (the text of `search_query(words, languages)`), each
-- with the relevance and score of insights_best.sql — the same expressions over the same
-- values ($3 recency_weight, $4 its half-life in seconds, $5 importance_weight, $6 the instant,
-- $7 the query's positive part that the relevance ranks).
--
-- Planner notes: as in raw_exact.sql.
WITH q AS MATERIALIZED (SELECT $1::tsquery AS matches, $7::tsquery AS ranks)
SELECT i.id,
       extract(epoch FROM i.created_at)::float8 AS created,
       c.relevance,
       c.relevance * (1 + $3 * power(0.5, greatest($6 - extract(epoch FROM i.created_at)::float8, 0) / $4))
                   * (1 + $5 * (i.importance::float8 - 0.5)) AS score
FROM q
CROSS JOIN l2_insights i
CROSS JOIN LATERAL (
    SELECT ts_rank_cd(i.search_tsv, q.ranks)::float8 AS relevance
    OFFSET 0  -- computed once per row: flattened, it would be repeated in `score`
) c
WHERE i.id = ANY ($2::bigint[])
  AND i.search_tsv @@ q.matches
