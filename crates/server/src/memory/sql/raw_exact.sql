-- The raw turns $2 that match query $1 (the text of `search_query(words, languages)`), each
-- with the relevance and score of raw_best.sql — the same expressions over the same values
-- ($3 recency_weight, $4 its half-life in seconds, $5 the instant, $6 the query's positive
-- part that the relevance ranks), so a turn ranks here exactly as it ranks there.
--
-- Planner notes: primary-key probes for the candidates the postings named (a few times
-- `limit`). A named statement: the plan does not depend on the values, and the two tsqueries
-- are parsed once per execution (`q`), not once per row as a cast of a parameter in a generic
-- plan would be.
WITH q AS MATERIALIZED (SELECT $1::tsquery AS matches, $6::tsquery AS ranks)
SELECT r.id,
       extract(epoch FROM r.created_at)::float8 AS created,
       c.relevance,
       c.relevance * (1 + $3 * power(0.5, greatest($5 - extract(epoch FROM r.created_at)::float8, 0) / $4)) AS score
FROM q
CROSS JOIN l0_raw r
CROSS JOIN LATERAL (
    SELECT ts_rank_cd(r.search_tsv, q.ranks)::float8 AS relevance
    OFFSET 0  -- computed once per row: flattened, it would be repeated in `score`
) c
WHERE r.id = ANY ($2::bigint[])
  AND r.search_tsv @@ q.matches
