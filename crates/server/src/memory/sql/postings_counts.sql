-- For each lexeme of $1 (in order): how many postings it has per layer, counted up to $2 (NULL:
-- not counted, the arrays are NULL), and whether it is a common word whose adjacent pairs have
-- postings (`search_pair_word`, migration V12; phrase_pairs.rs). The postings path
-- (postings.rs) reads a query's tsquery and positive part first (`SELECT search_query`) and
-- its lexemes from them, and asks this only for a query it may answer from the postings: an
-- `or` query (are its lists few?), a phrase (are its words common?), or with
-- `postings_beyond_or`.
--
-- Planner notes: the counts are one range of `search_postings_order_idx` per lexeme and layer
-- (the tenant condition repeats the row-level security policy's), at most $2 entries each
-- (index-only where the visibility map allows); equality on text and "char" only. A named
-- statement: nothing here depends on the values for its plan.
SELECT CASE WHEN $2::bigint IS NOT NULL THEN
       ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM search_postings s
                                           WHERE s.tenant = current_setting('app.tenant', true)
                                             AND s.layer = 'r' AND s.lexeme = x.lexeme
                                           LIMIT $2) c)
             FROM unnest($1::text[]) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) END AS raw_postings,
       CASE WHEN $2::bigint IS NOT NULL THEN
       ARRAY(SELECT (SELECT count(*) FROM (SELECT 1 FROM search_postings s
                                           WHERE s.tenant = current_setting('app.tenant', true)
                                             AND s.layer = 'i' AND s.lexeme = x.lexeme
                                           LIMIT $2) c)
             FROM unnest($1::text[]) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) END AS insight_postings,
       ARRAY(SELECT search_pair_word(x.lexeme)
             FROM unnest($1::text[]) WITH ORDINALITY AS x(lexeme, n) ORDER BY x.n) AS paired
