-- What a client sees of the chosen hits ($1 layers, $2 ids, in rank order) for query $3 with
-- languages $4: a snippet, the time, the session, and why each matched: the query's exact
-- words found in it (`matched_words`) and the stems found only as other word forms
-- (`matched_forms`, as `stem (language)`), read with the configurations `search_query` used
-- (`search_configs`: a stop word left out of the query is never why a memory matched) and
-- its forms (`search_language_forms`, V13: a form that is the other language's stop word is
-- the exact word).
--
-- Planner notes: runs for at most `limit` rows (primary key probes), never for every match:
-- `ts_headline` re-parses the whole content (it marks the positive part's words only). The words and, per language, the stems of the
-- query's positive part (`querytree`: an excluded word is never why a memory matched), each
-- stem tagged with its language's weight, and the queries whose words the snippets mark are
-- computed once (`q`), not per hit and lexeme; the
-- `OFFSET 0` keeps each hit's matched words one evaluation (a flattened subquery would be
-- repeated wherever `w.words` is used). A hit deleted meanwhile (`forget`) has no row and is
-- left out by the caller.
WITH c AS MATERIALIZED (SELECT search_configs($3, $4::text[]) AS c),
q AS MATERIALIZED (
    SELECT c.c AS configs,
           ARRAY(SELECT DISTINCT replace(replace(m[1], '''''', ''''), '\\', '\')
                       FROM regexp_matches(querytree(websearch_to_tsquery(c.c[1], $3)), '''((?:[^'']|'''')*)''', 'g') AS m) AS words,
           ARRAY(SELECT l.weight || t.lexeme
                 FROM (VALUES ('english', 'B', 2), ('german', 'C', 3)) AS l(language, weight, n),
                 LATERAL (SELECT DISTINCT replace(replace(m[1], '''''', ''''), '\\', '\')
                       FROM regexp_matches(querytree(search_language_forms($3, $4::text[], l.language, c.c[l.n], c.c[1])), '''((?:[^'']|'''')*)''', 'g') AS m) AS t(lexeme)
                 WHERE l.language = ANY ($4::text[])) AS forms,
           -- The words the snippet marks: the exact words' query, or the first language's
           -- for a hit with none of them.
           (SELECT CASE WHEN querytree(t) = 'T' THEN t ELSE querytree(t)::tsquery END
            FROM websearch_to_tsquery(c.c[1], $3) AS t) AS exact_marks,
           (SELECT CASE WHEN querytree(t) = 'T' THEN t ELSE querytree(t)::tsquery END
            FROM search_language_forms($3, $4::text[], ($4::text[])[1],
                CASE WHEN ($4::text[])[1] = 'english' THEN coalesce(c.c[2], c.c[1])
                     ELSE coalesce(c.c[3], c.c[1]) END,
                c.c[1]) AS t) AS language_marks
    FROM c
)
SELECT h.layer, h.id,
       m.content IS NOT NULL AS found,
       coalesce(ts_headline(
           CASE WHEN cardinality(w.words) > 0 OR cardinality($4::text[]) = 0 THEN 'simple' ELSE ($4::text[])[1] END::regconfig,
           m.content,
           CASE WHEN cardinality(w.words) > 0 OR cardinality($4::text[]) = 0 THEN q.exact_marks
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
