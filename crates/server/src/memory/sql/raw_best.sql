-- The best $3 raw turns for query $1 (stemmed in languages $2), ranked over every match;
-- optionally only those of session $6. $8, when not null, is the same query as a tsquery with
-- fewer items (ranking_query.rs): the same matches and scores, ranked cheaper; it replaces
-- `search_query($1, $2)`. $9, when not null, is the query's positive part (`querytree`) with
-- fewer items; it replaces `querytree(...)` in the relevance.
-- $10 and $11, when not null, are $9's exact form (`ranking_query::exact_form`): a row that
-- $10 does not match — it holds the query's lexemes only at weight A, the common case — is
-- ranked with $11, the same relevance with fewer items (`ts_rank_cd` zeroes 32 KiB per query
-- item for every row it ranks).
--
-- score = relevance × (1 + $4 × 0.5 ^ (age / $5 seconds)), the age at $7 (seconds since the
-- epoch, one instant for both layers of a search, so they are boosted alike): relevance is `ts_rank_cd` over
-- `search_tsv` (exact words weigh 1.0, English stems 0.4, German stems 0.2; covers of several
-- query words close together count more) for the query's positive part — what a match must
-- contain (`querytree`): excluded words (`-word`) filter, they do not score (ranked against the
-- whole query, `ts_rank_cd` let the positions of an excluded word's other forms into its
-- covers) — lightly boosted by recency ($4 = recency_weight, $5 = its half-life). Ties:
-- newest first.
--
-- Planner notes. `coalesce($8::tsquery, search_query($1, $2))` is written out (not taken from
-- a CTE): IMMUTABLE with bound values, it is folded to a constant (without calling
-- `search_query` when $8 is given) in this unnamed statement's custom plan, so the
-- planner estimates the match count from the column statistics and, with a session, chooses
-- between the session's rows (`l0_raw_session_id_id_idx`, frequent words) and the GIN index
-- (rare words). `$6::text IS NULL` folds away the same way. Every match's row is read to rank
-- it (GIN stores no positions or weights, so each match is also rechecked on its row): the
-- cost grows with the number of matches, ~20,000 rows for a word in 2 % of a million turns
-- (see docs/benchmarks.md, search).
-- `querytree(...) <> 'T'` is false for a query without any positive word (`-word` alone),
-- which would match nearly everything: checked once, before any scan. A row-level security
-- policy adds its own condition to this WHERE; nothing here depends on seeing every row.
SELECT r.id,
       extract(epoch FROM r.created_at)::float8 AS created,
       c.relevance,
       c.relevance * (1 + $4 * power(0.5, greatest($7 - extract(epoch FROM r.created_at)::float8, 0) / $5)) AS score
FROM l0_raw r
CROSS JOIN LATERAL (
    SELECT CASE WHEN $11::tsquery IS NOT NULL AND NOT (r.search_tsv @@ $10::tsquery)
                THEN ts_rank_cd(r.search_tsv, $11::tsquery)
                ELSE ts_rank_cd(r.search_tsv, coalesce($9::tsquery, querytree(coalesce($8::tsquery, search_query($1, $2)))::tsquery))
           END::float8 AS relevance
    OFFSET 0  -- computed once per row: flattened, it would be repeated in `score`
) c
WHERE r.search_tsv @@ coalesce($8::tsquery, search_query($1, $2))
  AND querytree(coalesce($8::tsquery, search_query($1, $2))) <> 'T'
  AND ($6::text IS NULL OR r.session_id = $6)
ORDER BY score DESC, r.created_at DESC, r.id DESC
LIMIT $3
