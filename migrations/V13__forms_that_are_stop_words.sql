-- A word form of one language that is a stop word of the other is not searched for (issue
-- #18; docs/architecture.md, "Search").
--
-- Every memory's `search_tsv` holds its words' English and German forms, whatever language it
-- is written in, so an English memory's `not` is also stored as the German form `not`. The
-- German stem of the English word `note` is `not`: until now `note` searched its German branch
-- for `not` and matched every memory with "not" (about one turn in six on the benchmark's
-- corpus: a false match for the user, and 155,000 postings read or rows ranked per search on a
-- million turns). The same holds for `notes`, `theme`, `fore` (German `them`, `for`) and, the
-- other way round, for English stems that are German stop words.
--
-- Now, when both languages are configured, an operand of a language's branch whose form
-- differs from the word and is a stop word of the other language is the exact word instead
-- (`meeting note`: `'meeting':AC & 'note':AC`, not `'meeting':AC & 'not':AC`). What is given
-- up: the other inflections of such a word in that language (`Note` no longer finds `Noten`
-- through German); the exact word, its other language's forms, and every other word's forms
-- match as before. The stored vectors and postings are not touched.

-- `websearch_to_tsquery(config, words)` with each operand whose lexeme differs from the exact
-- word's (`exact_config`, the same operand in the same place: every configuration of a
-- branch leaves out the same stop words, V11) and that `other_stems` (the other language's
-- Snowball dictionary, NULL for none) treats as a stop word replaced by the exact word. When
-- the two queries do not have the same operands (a query of only stop words, whose branches
-- are built with different configurations), the forms as they are.
CREATE FUNCTION search_forms(config regconfig, words text, exact_config regconfig, other_stems regdictionary)
RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    lexeme constant text := '''(?:[^'']|'''')*''';
    forms constant tsquery := websearch_to_tsquery(config, words);
    forms_text constant text := forms::text;
    exact_text text;
    operands integer;
    pieces text[];
    stem text;
    word text;
    result text;
    replaced boolean := false;
BEGIN
    IF other_stems IS NULL OR config = exact_config OR forms IS NULL THEN
        RETURN forms;
    END IF;
    exact_text := websearch_to_tsquery(exact_config, words)::text;
    -- No form differs from its word (the common case): nothing to replace.
    IF forms_text = exact_text THEN
        RETURN forms;
    END IF;
    operands := regexp_count(forms_text, lexeme);
    IF operands = 0 OR operands <> regexp_count(exact_text, lexeme) THEN
        RETURN forms;
    END IF;
    pieces := regexp_split_to_array(forms_text, lexeme);
    result := pieces[1];
    FOR i IN 1 .. operands LOOP
        stem := regexp_substr(forms_text, lexeme, 1, i);
        word := regexp_substr(exact_text, lexeme, 1, i);
        IF stem <> word
           AND ts_lexize(other_stems, replace(replace(substr(stem, 2, length(stem) - 2), '''''', ''''), '\\', '\')) = '{}' THEN
            result := result || word;
            replaced := true;
        ELSE
            result := result || stem;
        END IF;
        result := result || pieces[i + 1];
    END LOOP;
    IF NOT replaced THEN
        RETURN forms;
    END IF;
    RETURN result::tsquery;
END
$$;

-- The forms `search_query` searches in `language` ('english' or 'german') for `words`, built
-- with `config` (NULL: no branch), the exact words' configuration `exact_config`, and the
-- other language's stop words when it is configured too. (The search reads why its hits
-- matched from the query these build, `hit_terms.rs`; `tests/memory_search.rs` checks that
-- against this function.)
CREATE FUNCTION search_language_forms(words text, languages text[], language text,
                                      config regconfig, exact_config regconfig)
RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT search_forms(config, words, exact_config,
                        CASE WHEN language = 'english' AND 'german' = ANY (languages) THEN 'german_stem'
                             WHEN language = 'german' AND 'english' = ANY (languages) THEN 'english_stem'
                        END::regdictionary)
$$;

-- V11's construction, each language's branch from `search_language_forms`.
CREATE OR REPLACE FUNCTION search_query_branches(words text, languages text[], simple_config regconfig,
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
        branch := regexp_replace(search_language_forms(words, languages, 'english', english_config, simple_config)::text, lexeme, '\&:AB', 'g')::tsquery;
        IF numnode(branch) = 0 OR querytree(branch) <> 'T' THEN
            result := result || branch;
        END IF;
    END IF;
    IF 'german' = ANY (languages) AND german_config IS NOT NULL THEN
        branch := regexp_replace(search_language_forms(words, languages, 'german', german_config, simple_config)::text, lexeme, '\&:AC', 'g')::tsquery;
        IF numnode(branch) = 0 OR querytree(branch) <> 'T' THEN
            result := result || branch;
        END IF;
    END IF;
    RETURN result;
END
$$;

-- V11's `search_query`, building the branches once when the query has a positive word left
-- after the stop words (the common case; before, `search_configs` built them to find that
-- out and `search_query` built them again).
CREATE OR REPLACE FUNCTION search_query(words text, languages text[]) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET client_min_messages = warning
AS $$
DECLARE
    english constant boolean := 'english' = ANY (languages);
    german constant boolean := 'german' = ANY (languages);
    q constant tsquery := search_query_branches(words, languages,
        CASE WHEN english AND german THEN 'search_simple_en_de'
             WHEN english THEN 'search_simple_en'
             WHEN german THEN 'search_simple_de'
             ELSE 'simple' END::regconfig,
        CASE WHEN german THEN 'search_english_de' ELSE 'english' END::regconfig,
        CASE WHEN english THEN 'search_german_en' ELSE 'german' END::regconfig);
    configs regconfig[];
BEGIN
    IF numnode(q) > 0 AND querytree(q) <> 'T' THEN
        RETURN q;
    END IF;
    configs := search_configs(words, languages);
    RETURN search_query_branches(words, languages, configs[1], configs[2], configs[3]);
END
$$;
