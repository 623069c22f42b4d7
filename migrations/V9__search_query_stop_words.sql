-- A query whose positive words are all stop words of one language ("your -money": English drops
-- "your") left that language's branch of `search_query` with only the exclusion,
-- `!'money':AB`, which matches almost every memory: `querytree` of the whole query became 'T',
-- so the search refused it as a query of only excluded words (issue #18). A stemmed branch
-- without a positive word is now left out — it has no word of its own to match; the exact
-- (`simple`) branch, which has no stop words, is always kept, so a query that really has only
-- excluded words is still refused. Only queries that were refused change; `search_tsv` does not
-- depend on this function.
CREATE OR REPLACE FUNCTION search_query(words text, languages text[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    -- A lexeme in tsquery text is quoted, with quotes inside doubled: 'it''s'.
    lexeme constant text := '''(?:[^'']|'''')*''';
    result tsquery := regexp_replace(websearch_to_tsquery('simple', words)::text, lexeme, '\&:A', 'g')::tsquery;
    branch tsquery;
BEGIN
    IF 'english' = ANY (languages) THEN
        branch := regexp_replace(websearch_to_tsquery('english', words)::text, lexeme, '\&:AB', 'g')::tsquery;
        IF numnode(branch) = 0 OR querytree(branch) <> 'T' THEN
            result := result || branch;
        END IF;
    END IF;
    IF 'german' = ANY (languages) THEN
        branch := regexp_replace(websearch_to_tsquery('german', words)::text, lexeme, '\&:AC', 'g')::tsquery;
        IF numnode(branch) = 0 OR querytree(branch) <> 'T' THEN
            result := result || branch;
        END IF;
    END IF;
    RETURN result;
END
$$;
