-- Query $1 stemmed in languages $2 (`search_query`, as text for the statements that follow),
-- every lexeme in it (also those of excluded words: they take part in `ts_rank_cd`'s covers),
-- its positive part (`querytree`: what a match must contain, without the excluded words; 'T'
-- when nothing is left), whether its operators are all `|` (one word with its forms, or words
-- joined by `or`), and how many postings each lexeme has per layer, counted up to $3 ($4 for
-- an `or` query, which needs only to know whether they are few). The
-- postings path (postings.rs) decides from these whether to read the lists of `lexemes`.
--
-- Planner notes: the counts are one range of `search_postings_order_idx` per lexeme and
-- layer (the tenant condition repeats the row-level security policy's), at most the cap entries each (index-only where the visibility map allows); equality on
-- text and "char" only.
WITH q AS (SELECT search_query($1, $2) AS q),
l AS (
    SELECT CASE WHEN search_query_or_lexemes(q.q) IS NOT NULL THEN $4 ELSE $3 END AS cap,
           ARRAY(SELECT DISTINCT replace(replace(m[1], '''''', ''''), '\\', '\')
                 FROM q, regexp_matches(q.q::text, '''((?:[^'']|'''')*)''', 'g') AS m
                 ORDER BY 1) AS lexemes
    FROM q
)
SELECT q.q::text AS query,
       l.lexemes,
       querytree(q.q) AS positive,
       search_query_or_lexemes(q.q) IS NOT NULL AS or_only,
       ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM search_postings s
                                           WHERE s.tenant = current_setting('app.tenant', true)
                                             AND s.layer = 'r' AND s.lexeme = x.lexeme
                                           LIMIT l.cap) c)
             FROM unnest(l.lexemes) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) AS raw_postings,
       ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM search_postings s
                                           WHERE s.tenant = current_setting('app.tenant', true)
                                             AND s.layer = 'i' AND s.lexeme = x.lexeme
                                           LIMIT l.cap) c)
             FROM unnest(l.lexemes) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) AS insight_postings
FROM q, l
