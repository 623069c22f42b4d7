-- What a client sees of the chosen hits ($1 layers, $2 ids, in rank order): a snippet, the
-- time, the session, and why each matched: the query's exact words found in it
-- (`matched_words`; $3, the exact words of the query's positive part) and the stems found only
-- as other word forms (`matched_forms`, as `stem (language)`; $4, each language's forms of the
-- positive part prefixed with its weight, `Bcollect`, `Chaus`). $5 is the exact words' query
-- and $6 the first configured language's (of $7, the languages), without weights, that the
-- snippets mark. All of them come from the positive part of `search_query` (`querytree`: an
-- excluded word is never why a memory matched), read in Rust (`hit_terms.rs`), so the query is
-- not built again here.
--
-- Planner notes: runs for at most `limit` rows (primary key probes), never for every match:
-- `ts_headline` re-parses the whole content (it marks the positive part's words only). The
-- queries the snippets mark are cast once (`q`), not per hit; the `OFFSET 0` keeps each hit's
-- matched words one evaluation (a flattened subquery would be repeated wherever `w.words` is
-- used). A hit deleted meanwhile (`forget`) has no row and is left out by the caller.
WITH q AS MATERIALIZED (
    SELECT $3::text[] AS words, $4::text[] AS forms,
           $5::tsquery AS exact_marks, $6::tsquery AS language_marks
)
SELECT h.layer, h.id,
       m.content IS NOT NULL AS found,
       coalesce(ts_headline(
           CASE WHEN cardinality(w.words) > 0 OR cardinality($7::text[]) = 0 THEN 'simple' ELSE ($7::text[])[1] END::regconfig,
           m.content,
           CASE WHEN cardinality(w.words) > 0 OR cardinality($7::text[]) = 0 THEN q.exact_marks
                ELSE q.language_marks END,
           'MaxFragments=2, MaxWords=20, MinWords=5, StartSel=**, StopSel=**'), '') AS snippet,
       coalesce(to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '') AS created_at,
       m.session_id,
       w.words AS matched_words,
       f.forms AS matched_forms
FROM q
CROSS JOIN unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS h(layer, id, n)
LEFT JOIN l0_raw r ON h.layer = 'raw' AND r.id = h.id
LEFT JOIN l2_insights i ON h.layer = 'insight' AND i.id = h.id
CROSS JOIN LATERAL (
    SELECT coalesce(r.content, i.content) AS content,
           coalesce(r.search_tsv, i.search_tsv) AS search_tsv,
           coalesce(r.created_at, i.created_at) AS created_at,
           r.session_id
) m
CROSS JOIN LATERAL (
    SELECT ARRAY(
        SELECT t.lexeme FROM unnest(m.search_tsv) t
        WHERE 'A' = ANY (t.weights)
          AND t.lexeme = ANY (q.words)
        ORDER BY t.lexeme
    ) AS words
    OFFSET 0
) w
CROSS JOIN LATERAL (
    SELECT ARRAY(
        SELECT DISTINCT t.lexeme || ' (' || l.language || ')'
        FROM unnest(m.search_tsv) t
        JOIN (VALUES ('english', 'B'), ('german', 'C')) AS l(language, weight)
          ON l.weight = ANY (t.weights)
        WHERE l.weight || t.lexeme = ANY (q.forms)
          AND t.lexeme <> ALL (w.words)
        ORDER BY 1
    ) AS forms
    OFFSET 0
) f
ORDER BY h.n
