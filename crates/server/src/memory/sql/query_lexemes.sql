-- Query $1 stemmed in languages $2 (`search_query`, as text for the statements that follow),
-- its positive part (`querytree`: what a match must contain, without the excluded words; 'T'
-- when nothing is left), which the relevance ranks (raw_best.sql), every lexeme of that
-- positive part, whether its operators are all `|` (one word with its forms, or words joined
-- by `or`, whatever words are excluded besides), and how many postings each lexeme has per
-- layer, counted up to $3 ($4 for an `or` positive part, which needs only to know whether
-- they are few; a positive part that is not an `or` query is counted only when $5, else the
-- counts are NULL), and which lexemes are common words whose adjacent pairs have postings
-- (`search_pair_word`, migration V12; phrase_pairs.rs). The postings path (postings.rs) decides from these whether to read the
-- lists of `lexemes`; for a query it will not read them this is `search_query` as text, as
-- cheap as `SELECT search_query(…)` (the statement it replaces for such queries).
--
-- Planner notes: the counts are one range of `search_postings_order_idx` per lexeme and
-- layer (the tenant condition repeats the row-level security policy's), at most the cap entries each (index-only where the visibility map allows); equality on
-- text and "char" only.
WITH q AS (SELECT q, querytree(q) AS positive FROM search_query($1, $2) AS q),
l AS (
    SELECT search_query_or_lexemes(q.positive::tsquery) IS NOT NULL AS or_only,
           ARRAY(SELECT DISTINCT replace(replace(m[1], '''''', ''''), '\\', '\')
                 FROM regexp_matches(q.positive, '''((?:[^'']|'''')*)''', 'g') AS m
                 ORDER BY 1) AS lexemes
    FROM q
), lc AS (
    SELECT l.*, CASE WHEN l.or_only THEN $4 WHEN $5 THEN $3 END AS cap FROM l
)
SELECT q.q::text AS query,
       l.lexemes,
       q.positive,
       l.or_only,
       ARRAY(SELECT search_pair_word(x.lexeme)
             FROM unnest(l.lexemes) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) AS paired,
       CASE WHEN l.cap IS NOT NULL THEN
       ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM search_postings s
                                           WHERE s.tenant = current_setting('app.tenant', true)
                                             AND s.layer = 'r' AND s.lexeme = x.lexeme
                                           LIMIT l.cap) c)
             FROM unnest(l.lexemes) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) END AS raw_postings,
       CASE WHEN l.cap IS NOT NULL THEN
       ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM search_postings s
                                           WHERE s.tenant = current_setting('app.tenant', true)
                                             AND s.layer = 'i' AND s.lexeme = x.lexeme
                                           LIMIT l.cap) c)
             FROM unnest(l.lexemes) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) END AS insight_postings
FROM q, lc l
