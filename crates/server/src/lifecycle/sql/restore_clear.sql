-- Sent by restore before the backup's own statements, in the same transaction: drop every
-- table of the current schema (memories, stamp, migration history, and tables of migrations
-- newer than the backup), so the backup is restored into an empty schema and the migrations
-- that follow bring it up to date. If anything later fails, the transaction rolls this back.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
        EXECUTE format('DROP TABLE %I CASCADE', t.tablename);
    END LOOP;
END
$$;
