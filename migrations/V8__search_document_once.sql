-- `search_tsv` computed with one `simple` vector instead of three (issue #17: store throughput).
--
-- V2's generation expression calls to_tsvector five times per row: the `simple` vector three
-- times (once for the A positions, once for each ts_delete of the stems that are words of the
-- memory), then English and German. `search_document` computes the `simple` vector and its
-- words once; the result is the same vector, position for position (tests/search_postings.rs
-- compares the two on its corpus). On the bench's turns it costs about 60 % of V2's
-- expression (docs/benchmarks.md, "Store throughput").
--
-- PostgreSQL 15 cannot change a generated column's expression in place, so the column is
-- dropped and added again: **this rewrites both memory tables and rebuilds their GIN indexes**
-- under an ACCESS EXCLUSIVE lock (on 1,000,000 turns: minutes; see docs/benchmarks.md). The
-- postings (V6) stay as they are: the vectors do not change. The column stays generated, so a
-- restore (pg_dump does not dump generated values) and every insert compute it the same way;
-- the function names only pg_catalog objects, schema-qualified, so it gives the same result
-- under the empty search_path pg_restore runs with.

CREATE FUNCTION search_document(content text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    exact constant tsvector := pg_catalog.to_tsvector('pg_catalog.simple'::pg_catalog.regconfig, content);
    words constant text[] := pg_catalog.tsvector_to_array(exact);
BEGIN
    RETURN pg_catalog.setweight(exact, 'A')
        || pg_catalog.ts_delete(pg_catalog.setweight(pg_catalog.to_tsvector('pg_catalog.english'::pg_catalog.regconfig, content), 'B'), words)
        || pg_catalog.ts_delete(pg_catalog.setweight(pg_catalog.to_tsvector('pg_catalog.german'::pg_catalog.regconfig, content), 'C'), words);
END
$$;

ALTER TABLE l0_raw
    DROP COLUMN search_tsv,
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (search_document(content)) STORED;
CREATE INDEX l0_raw_search_tsv_idx ON l0_raw USING gin (search_tsv);

ALTER TABLE l2_insights
    DROP COLUMN search_tsv,
    ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (search_document(content)) STORED;
CREATE INDEX l2_insights_search_tsv_idx ON l2_insights USING gin (search_tsv);
