-- Initial schema of the cognitive memory store, identical in every environment.
-- Full-text search uses the `simple` configuration: memories are mixed-language, and a
-- language-specific stemmer would mangle the other languages.

-- L0: raw dialogue turns, kept verbatim.
CREATE TABLE l0_raw (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  text        NOT NULL CHECK (char_length(session_id) BETWEEN 1 AND 200),
    speaker     text        NOT NULL CHECK (speaker IN ('user', 'assistant', 'system', 'tool')),
    content     text        NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    content_tsv tsvector    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, content)) STORED
);

CREATE INDEX l0_raw_content_tsv_idx ON l0_raw USING gin (content_tsv);
-- Reading one session in order.
CREATE INDEX l0_raw_session_id_id_idx ON l0_raw (session_id, id);

-- L2: distilled insights. `source_ids` points at L0 turns; arrays cannot carry foreign keys,
-- so the server checks them.
CREATE TABLE l2_insights (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content     text        NOT NULL,
    source_ids  bigint[]    NOT NULL DEFAULT '{}',
    tags        text[]      NOT NULL DEFAULT '{}',
    importance  real        NOT NULL DEFAULT 0.5 CHECK (importance >= 0 AND importance <= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    content_tsv tsvector    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, content)) STORED
);

CREATE INDEX l2_insights_content_tsv_idx ON l2_insights USING gin (content_tsv);
-- "Forget" finds the insights derived from deleted turns.
CREATE INDEX l2_insights_source_ids_idx ON l2_insights USING gin (source_ids);

-- Which environment this database belongs to. Exactly one row, written at setup.
CREATE TABLE environment_stamp (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    environment text        NOT NULL CHECK (environment IN ('development', 'test', 'staging', 'production')),
    stamped_at  timestamptz NOT NULL DEFAULT now(),
    stamped_by  text        NOT NULL
);
