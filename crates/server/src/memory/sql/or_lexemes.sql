-- Query $1 stemmed in languages $2 (`search_query`, as text for the statements that follow),
-- and its lexemes when its operators are all `|` (one word with its forms, or words joined by
-- `or`), else NULL: such a query can be ranked from the impact-ordered postings (migration
-- V6, postings.rs); any other goes the every-match way.
SELECT q::text AS query, search_query_or_lexemes(q) AS lexemes
FROM search_query($1, $2) AS q
