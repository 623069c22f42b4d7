-- Stop words are left out of every branch of a search query (issue #18; docs/architecture.md,
-- "Search").
--
-- Until now a word that English or German ignores as a stop word was dropped from that
-- language's branch of `search_query` only: `then invoice` became
-- `'then' & 'invoice' | 'invoic' | 'then' & 'invoic':AC`. The English branch alone already
-- matched every memory with `invoic`, so `then` changed almost no match (now a German form
-- alone matches without it, as it does for `invoice`); it changed the ranking only
-- through the German branch, as a proximity bonus for positions whose German stem differs from
-- the word (`ts_rank_cd` covers are the shortest spans satisfying the query, and one
-- exact-or-English position already does). And it made every frequent-word query with a stop
-- word an `&` query, ranked over every match (tens of thousands of rows on a million turns)
-- instead of from the postings.
--
-- Now a word that one of the configured languages treats as a stop word is left out of the
-- other branches too — the query matches and ranks as it would without it — with the same
-- rules that language applies (a phrase keeps the distance:
-- `"invoice the bill"` is `'invoice' <2> 'bill'`). A query made only of stop words (`to be or
-- not to be`, `"the and"`), or whose positive words are all stop words (`your -money`), is
-- built with them: the exact words, and the branch of each language that drops none of them
-- (before, a language that dropped some matched the others alone: `"the also"` found every
-- memory with `the`, through German, which drops `also`).
--
-- The filters are `simple` dictionaries over the languages' own stop-word files with
-- `Accept = false`: a stop word ends the dictionary chain with no lexeme, any other word goes
-- on to the configuration's own dictionary, unchanged. The stored vectors (`search_document`)
-- are not touched.

CREATE TEXT SEARCH DICTIONARY search_english_stop (TEMPLATE = simple, STOPWORDS = english, ACCEPT = false);
CREATE TEXT SEARCH DICTIONARY search_german_stop (TEMPLATE = simple, STOPWORDS = german, ACCEPT = false);

-- The word token types — those `english` and `german` stem (the others, numbers, URLs and
-- the like, have no stop words).
CREATE TEXT SEARCH CONFIGURATION search_simple_en (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION search_simple_en
    ALTER MAPPING FOR asciiword, word, hword_part, hword_asciipart, asciihword, hword
    WITH search_english_stop, simple;
CREATE TEXT SEARCH CONFIGURATION search_simple_de (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION search_simple_de
    ALTER MAPPING FOR asciiword, word, hword_part, hword_asciipart, asciihword, hword
    WITH search_german_stop, simple;
CREATE TEXT SEARCH CONFIGURATION search_simple_en_de (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION search_simple_en_de
    ALTER MAPPING FOR asciiword, word, hword_part, hword_asciipart, asciihword, hword
    WITH search_english_stop, search_german_stop, simple;
CREATE TEXT SEARCH CONFIGURATION search_english_de (COPY = english);
ALTER TEXT SEARCH CONFIGURATION search_english_de
    ALTER MAPPING FOR asciiword, word, hword_part, hword_asciipart, asciihword, hword
    WITH search_german_stop, english_stem;
CREATE TEXT SEARCH CONFIGURATION search_german_en (COPY = german);
ALTER TEXT SEARCH CONFIGURATION search_german_en
    ALTER MAPPING FOR asciiword, word, hword_part, hword_asciipart, asciihword, hword
    WITH search_english_stop, german_stem;

-- V9's construction with the configurations as parameters: the exact words at weight A, each
-- language's forms at A or its own weight (no branch for a NULL configuration); a stemmed
-- branch left with only excluded words is dropped.
CREATE FUNCTION search_query_branches(words text, languages text[], simple_config regconfig,
                                      english_config regconfig, german_config regconfig)
RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    -- A lexeme in tsquery text is quoted, with quotes inside doubled: 'it''s'.
    lexeme constant text := '''(?:[^'']|'''')*''';
    result tsquery := regexp_replace(websearch_to_tsquery(simple_config, words)::text, lexeme, '\&:A', 'g')::tsquery;
    branch tsquery;
BEGIN
    IF 'english' = ANY (languages) AND english_config IS NOT NULL THEN
        branch := regexp_replace(websearch_to_tsquery(english_config, words)::text, lexeme, '\&:AB', 'g')::tsquery;
        IF numnode(branch) = 0 OR querytree(branch) <> 'T' THEN
            result := result || branch;
        END IF;
    END IF;
    IF 'german' = ANY (languages) AND german_config IS NOT NULL THEN
        branch := regexp_replace(websearch_to_tsquery(german_config, words)::text, lexeme, '\&:AC', 'g')::tsquery;
        IF numnode(branch) = 0 OR querytree(branch) <> 'T' THEN
            result := result || branch;
        END IF;
    END IF;
    RETURN result;
END
$$;

-- The configurations `search_query` builds `words` with, as [exact words, English, German]:
-- the ones that leave out every configured language's stop words, unless that leaves no
-- positive word. Then (a query of only stop words) the exact words and each language that
-- drops none of them: a language that drops some would match the rest by themselves — `the
-- also` every memory with `the`, through German, which drops `also` — so it has no branch
-- (NULL). `hit_details.sql` reads the matched words with the same configurations.
CREATE FUNCTION search_configs(words text, languages text[]) RETURNS regconfig[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    lexeme constant text := '''(?:[^'']|'''')*''';
    english constant boolean := 'english' = ANY (languages);
    german constant boolean := 'german' = ANY (languages);
    filtered constant regconfig[] := ARRAY[
        CASE WHEN english AND german THEN 'search_simple_en_de'
             WHEN english THEN 'search_simple_en'
             WHEN german THEN 'search_simple_de'
             ELSE 'simple' END,
        CASE WHEN german THEN 'search_english_de' ELSE 'english' END,
        CASE WHEN english THEN 'search_german_en' ELSE 'german' END]::regconfig[];
    q tsquery := search_query_branches(words, languages, filtered[1], filtered[2], filtered[3]);
    operands integer;
BEGIN
    IF numnode(q) > 0 AND querytree(q) <> 'T' THEN
        RETURN filtered;
    END IF;
    SELECT count(*) INTO operands
    FROM regexp_matches(websearch_to_tsquery('simple', words)::text, lexeme, 'g');
    RETURN ARRAY[
        'simple',
        CASE WHEN (SELECT count(*) FROM regexp_matches(websearch_to_tsquery('english', words)::text, lexeme, 'g')) = operands
             THEN 'english' END,
        CASE WHEN (SELECT count(*) FROM regexp_matches(websearch_to_tsquery('german', words)::text, lexeme, 'g')) = operands
             THEN 'german' END]::regconfig[];
END
$$;

CREATE OR REPLACE FUNCTION search_query(words text, languages text[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    configs constant regconfig[] := search_configs(words, languages);
BEGIN
    RETURN search_query_branches(words, languages, configs[1], configs[2], configs[3]);
END
$$;
