-- Search ranked by relevance over every memory, with word forms (issue #18).
--
-- `search_tsv` holds every word of a memory as written (`simple`) at weight A, and, told apart
-- by the weight label of their positions, its English stem at B and its German stem at C where
-- the stem is not itself one of the memory's words (`ts_delete`; most stems are, so the vector
-- stays close to the exact one in size). A search asks for each word exactly (A), by its
-- English stem (A or B) and by its German stem (A or C), so `ts_rank_cd` (PostgreSQL's default
-- weights: A 1.0, B 0.4, C 0.2) ranks exact words and phrases above inflected ones, and a
-- mixed-language memory is found in either language. It replaces the exact-only `content_tsv`
-- of V1, whose content `search_tsv` contains (its A positions).
--
-- The languages are fixed here, so that every environment has the same schema;
-- `memory.search.languages` chooses which of them queries use.

ALTER TABLE l0_raw DROP COLUMN content_tsv;
ALTER TABLE l0_raw ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
       setweight(to_tsvector('simple'::regconfig, content), 'A')
    || ts_delete(setweight(to_tsvector('english'::regconfig, content), 'B'),
                 tsvector_to_array(to_tsvector('simple'::regconfig, content)))
    || ts_delete(setweight(to_tsvector('german'::regconfig, content), 'C'),
                 tsvector_to_array(to_tsvector('simple'::regconfig, content)))
) STORED;
CREATE INDEX l0_raw_search_tsv_idx ON l0_raw USING gin (search_tsv);

ALTER TABLE l2_insights DROP COLUMN content_tsv;
ALTER TABLE l2_insights ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
       setweight(to_tsvector('simple'::regconfig, content), 'A')
    || ts_delete(setweight(to_tsvector('english'::regconfig, content), 'B'),
                 tsvector_to_array(to_tsvector('simple'::regconfig, content)))
    || ts_delete(setweight(to_tsvector('german'::regconfig, content), 'C'),
                 tsvector_to_array(to_tsvector('simple'::regconfig, content)))
) STORED;
CREATE INDEX l2_insights_search_tsv_idx ON l2_insights USING gin (search_tsv);

-- The tsquery for a web-search query text (`websearch_to_tsquery` syntax): the exact words
-- restricted to the A positions of `search_tsv`, or'ed with the same query stemmed in each of
-- `languages` ('english' → A or B positions, 'german' → A or C), so every statement matches
-- and ranks alike. A query that is only stop words in a language adds nothing for that language; the
-- NOTICE PostgreSQL raises then is kept out of the server's log.
CREATE FUNCTION search_query(words text, languages text[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    -- A lexeme in tsquery text is quoted, with quotes inside doubled: 'it''s'.
    lexeme constant text := '''(?:[^'']|'''')*''';
    result tsquery := regexp_replace(websearch_to_tsquery('simple', words)::text, lexeme, '\&:A', 'g')::tsquery;
BEGIN
    IF 'english' = ANY (languages) THEN
        result := result || regexp_replace(websearch_to_tsquery('english', words)::text, lexeme, '\&:AB', 'g')::tsquery;
    END IF;
    IF 'german' = ANY (languages) THEN
        result := result || regexp_replace(websearch_to_tsquery('german', words)::text, lexeme, '\&:AC', 'g')::tsquery;
    END IF;
    RETURN result;
END
$$;
