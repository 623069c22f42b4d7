-- Impact-ordered postings beside the memory tables, so that a search for a frequent word reads
-- its best memories first instead of ranking every match (issue #18; docs/architecture.md,
-- "Search").
--
-- One row per (layer, lexeme of `search_tsv`, memory): the lexeme's `impact`, the sum over its
-- positions of their weight as `ts_rank_cd` weighs them (A 1.0, B 0.4, C 0.2, D 0.1). For a
-- query whose operators are all `|` (one word with its forms, or words joined by `or`),
-- `ts_rank_cd` without normalisation is the sum of the matched positions' weights, so a
-- memory's relevance is at most the sum of its query lexemes' impacts. The index below yields
-- a lexeme's postings best impact first, newest first within one impact: the search reads
-- them until no memory it has not read can beat the `limit`-th exactly ranked one, and ranks
-- the memories it read with the same statement as before (crates/server/src/memory/postings.rs).
--
-- The table is kept by statement-level triggers in the transaction that changes a memory: it
-- holds exactly the postings of the visible rows. Stock PostgreSQL, no extension.

CREATE TABLE search_postings (
    layer      "char"      NOT NULL CHECK (layer IN ('r', 'i')),
    lexeme     text        NOT NULL,
    impact     real        NOT NULL,
    created_at timestamptz NOT NULL,
    id         bigint      NOT NULL
);

-- The postings of a `search_tsv`: each lexeme with its impact (a lexeme without positions,
-- which `ts_rank_cd` ignores, has impact 0).
CREATE FUNCTION search_postings_of(doc tsvector) RETURNS TABLE (lexeme text, impact real)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT t.lexeme,
           coalesce((SELECT sum(CASE w WHEN 'A' THEN 1.0 WHEN 'B' THEN 0.4 WHEN 'C' THEN 0.2 ELSE 0.1 END)
                     FROM unnest(t.weights) AS w), 0)::real
    FROM unnest(doc) AS t
$$;

-- The distinct lexemes of a query whose operators are all `|` (checked: the query's text
-- without its quoted lexemes holds only `|`, weights, parentheses and spaces, and it has one
-- operand more than `|` operators), or NULL for any other query (`&`, phrases, `!`).
CREATE FUNCTION search_query_or_lexemes(q tsquery) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN numnode(q) > 0
         AND regexp_replace(q::text, '''(?:[^'']|'''')*''', '', 'g') ~ '^[ |():A-D]*$'
         AND (SELECT count(*) FROM regexp_matches(q::text, '''(?:[^'']|'''')*''', 'g')) * 2 - 1 = numnode(q)
        THEN ARRAY(
            SELECT DISTINCT replace(replace(m[1], '''''', ''''), '\\', '\')
            FROM regexp_matches(q::text, '''((?:[^'']|'''')*)''', 'g') AS m
            ORDER BY 1)
    END
$$;

CREATE FUNCTION search_postings_insert() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    kind constant "char" := CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
BEGIN
    INSERT INTO search_postings (layer, lexeme, impact, created_at, id)
    SELECT kind, p.lexeme, p.impact, n.created_at, n.id
    FROM new_rows n CROSS JOIN LATERAL search_postings_of(n.search_tsv) p;
    RETURN NULL;
END
$$;

CREATE FUNCTION search_postings_delete() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    kind constant "char" := CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
BEGIN
    DELETE FROM search_postings s
    USING old_rows o CROSS JOIN LATERAL search_postings_of(o.search_tsv) p
    WHERE s.layer = kind AND s.lexeme = p.lexeme AND s.impact = p.impact
      AND s.created_at = o.created_at AND s.id = o.id;
    RETURN NULL;
END
$$;

-- An update that changes a memory's words or time replaces its postings.
CREATE FUNCTION search_postings_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    kind constant "char" := CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
BEGIN
    DELETE FROM search_postings s
    USING old_rows o
    JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL search_postings_of(o.search_tsv) p
    WHERE (o.search_tsv, o.created_at) IS DISTINCT FROM (n.search_tsv, n.created_at)
      AND s.layer = kind AND s.lexeme = p.lexeme AND s.impact = p.impact
      AND s.created_at = o.created_at AND s.id = o.id;
    INSERT INTO search_postings (layer, lexeme, impact, created_at, id)
    SELECT kind, p.lexeme, p.impact, n.created_at, n.id
    FROM old_rows o
    JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL search_postings_of(n.search_tsv) p
    WHERE (o.search_tsv, o.created_at) IS DISTINCT FROM (n.search_tsv, n.created_at);
    RETURN NULL;
END
$$;

CREATE FUNCTION search_postings_truncate() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM search_postings
    WHERE layer = CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
    RETURN NULL;
END
$$;

CREATE TRIGGER search_postings_insert AFTER INSERT ON l0_raw
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_insert();
CREATE TRIGGER search_postings_delete AFTER DELETE ON l0_raw
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_delete();
CREATE TRIGGER search_postings_update AFTER UPDATE ON l0_raw
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_postings_update();
CREATE TRIGGER search_postings_truncate AFTER TRUNCATE ON l0_raw
    FOR EACH STATEMENT EXECUTE FUNCTION search_postings_truncate();

CREATE TRIGGER search_postings_insert AFTER INSERT ON l2_insights
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_insert();
CREATE TRIGGER search_postings_delete AFTER DELETE ON l2_insights
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_postings_delete();
CREATE TRIGGER search_postings_update AFTER UPDATE ON l2_insights
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION search_postings_update();
CREATE TRIGGER search_postings_truncate AFTER TRUNCATE ON l2_insights
    FOR EACH STATEMENT EXECUTE FUNCTION search_postings_truncate();

-- The memories stored before this migration.
INSERT INTO search_postings (layer, lexeme, impact, created_at, id)
SELECT 'r', p.lexeme, p.impact, r.created_at, r.id
FROM l0_raw r CROSS JOIN LATERAL search_postings_of(r.search_tsv) p;
INSERT INTO search_postings (layer, lexeme, impact, created_at, id)
SELECT 'i', p.lexeme, p.impact, i.created_at, i.id
FROM l2_insights i CROSS JOIN LATERAL search_postings_of(i.search_tsv) p;

-- Best impact first, newest first within one impact (the order the search reads).
CREATE INDEX search_postings_order_idx
    ON search_postings (layer, lexeme, impact DESC, created_at DESC, id DESC);
