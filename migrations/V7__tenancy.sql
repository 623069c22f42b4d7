-- Tenants isolated by row-level security (issue #12; docs/tenancy.md).
--
-- Every memory row belongs to one tenant (`tenant`, the validated name of
-- crates/server/src/tenancy.rs). The server sets the tenant of each transaction with
-- `set_config('app.tenant', <tenant>, true)`, and the policies below restrict every statement
-- on a memory table to the rows of that tenant: a statement without a tenant set sees no row
-- and cannot insert, update or delete one. The login role owns the tables (it runs these
-- migrations), so the policies are FORCEd: they hold for the owner too.
--
-- Rows stored before this migration belong to tenant `default`. The column is added with that
-- constant default (no table rewrite, every existing row gets it), and the default is then
-- switched to the transaction's tenant, so an insert without a tenant set fails (NOT NULL).
--
-- Indexes lead with the tenant where a lookup is per tenant: a session's pages, the newest
-- insights, the postings of a lexeme, the retention purge. The GIN indexes on `search_tsv`
-- and `source_ids` stay as they are: the tenant's policy condition is checked on the rows the
-- index yields. PostgreSQL uses them under row-level security only when the operators (`@@`,
-- `&&`) are LEAKPROOF, which only a superuser can declare: `setup-db` does it where it can,
-- and `doctor` / `memory_status` say whether it is in place (docs/tenancy.md). This migration is
-- the same in every environment either way.

-- The memory tables.
ALTER TABLE l0_raw ADD COLUMN tenant text NOT NULL DEFAULT 'default'
    CONSTRAINT l0_raw_tenant_check CHECK (tenant ~ '^[a-z0-9][a-z0-9_.-]{0,62}$');
ALTER TABLE l0_raw ALTER COLUMN tenant SET DEFAULT current_setting('app.tenant', true);

ALTER TABLE l2_insights ADD COLUMN tenant text NOT NULL DEFAULT 'default'
    CONSTRAINT l2_insights_tenant_check CHECK (tenant ~ '^[a-z0-9][a-z0-9_.-]{0,62}$');
ALTER TABLE l2_insights ALTER COLUMN tenant SET DEFAULT current_setting('app.tenant', true);

-- The postings (V6) carry the tenant of their memory.
ALTER TABLE search_postings ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE search_postings ALTER COLUMN tenant SET DEFAULT current_setting('app.tenant', true);

-- Which tenants hold (or held) memories: retention walks them, one tenant per transaction,
-- since under the policies no statement sees two tenants' rows. Kept by the insert triggers
-- below; it holds tenant names only (no memory), and no policy restricts it.
CREATE TABLE memory_tenants (
    tenant     text        PRIMARY KEY CHECK (tenant ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    first_seen timestamptz NOT NULL DEFAULT now()
);
INSERT INTO memory_tenants (tenant)
SELECT 'default'
WHERE EXISTS (SELECT 1 FROM l0_raw) OR EXISTS (SELECT 1 FROM l2_insights);

-- Indexes leading with the tenant.
DROP INDEX l0_raw_session_id_id_idx;
CREATE INDEX l0_raw_tenant_session_id_id_idx ON l0_raw (tenant, session_id, id);
DROP INDEX l0_raw_created_at_idx;
CREATE INDEX l0_raw_tenant_created_at_idx ON l0_raw (tenant, created_at);
DROP INDEX l2_insights_created_at_idx;
CREATE INDEX l2_insights_tenant_created_at_idx ON l2_insights (tenant, created_at);
-- The newest insights of a tenant (`memory://insights/recent`).
CREATE INDEX l2_insights_tenant_id_idx ON l2_insights (tenant, id);
DROP INDEX search_postings_order_idx;
CREATE INDEX search_postings_order_idx
    ON search_postings (tenant, layer, lexeme, impact DESC, created_at DESC, id DESC);

-- The postings triggers of V6, now with the tenant (and registering new tenants).
CREATE OR REPLACE FUNCTION search_postings_insert() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    kind constant "char" := CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
BEGIN
    INSERT INTO search_postings (tenant, layer, lexeme, impact, created_at, id)
    SELECT n.tenant, kind, p.lexeme, p.impact, n.created_at, n.id
    FROM new_rows n CROSS JOIN LATERAL search_postings_of(n.search_tsv) p;
    INSERT INTO memory_tenants (tenant)
    SELECT DISTINCT n.tenant FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM memory_tenants t WHERE t.tenant = n.tenant)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION search_postings_delete() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    kind constant "char" := CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
BEGIN
    DELETE FROM search_postings s
    USING old_rows o CROSS JOIN LATERAL search_postings_of(o.search_tsv) p
    WHERE s.tenant = o.tenant AND s.layer = kind AND s.lexeme = p.lexeme AND s.impact = p.impact
      AND s.created_at = o.created_at AND s.id = o.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION search_postings_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    kind constant "char" := CASE TG_TABLE_NAME WHEN 'l0_raw' THEN 'r' ELSE 'i' END;
BEGIN
    DELETE FROM search_postings s
    USING old_rows o
    JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL search_postings_of(o.search_tsv) p
    WHERE (o.search_tsv, o.created_at, o.tenant) IS DISTINCT FROM (n.search_tsv, n.created_at, n.tenant)
      AND s.tenant = o.tenant AND s.layer = kind AND s.lexeme = p.lexeme AND s.impact = p.impact
      AND s.created_at = o.created_at AND s.id = o.id;
    INSERT INTO search_postings (tenant, layer, lexeme, impact, created_at, id)
    SELECT n.tenant, kind, p.lexeme, p.impact, n.created_at, n.id
    FROM old_rows o
    JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL search_postings_of(n.search_tsv) p
    WHERE (o.search_tsv, o.created_at, o.tenant) IS DISTINCT FROM (n.search_tsv, n.created_at, n.tenant);
    RETURN NULL;
END
$$;

-- Row-level security: one policy per memory table, for every command, FORCEd so that the
-- owning login role is bound too. `current_setting('app.tenant', true)` is NULL or '' when no
-- tenant is set, which equals no tenant (the CHECKs above refuse an empty name).
ALTER TABLE l0_raw ENABLE ROW LEVEL SECURITY;
ALTER TABLE l0_raw FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON l0_raw
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));

ALTER TABLE l2_insights ENABLE ROW LEVEL SECURITY;
ALTER TABLE l2_insights FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON l2_insights
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));

ALTER TABLE search_postings ENABLE ROW LEVEL SECURITY;
ALTER TABLE search_postings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON search_postings
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
