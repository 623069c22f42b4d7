-- Sent by restore before the backup's own statements, in the same transaction: drop every
-- table and every function of the current schema (memories, stamp, migration history, the
-- search functions, and objects of migrations newer than the backup), so the backup is restored
-- into an empty schema and the migrations that follow bring it up to date. Functions that belong
-- to an extension stay. If anything later fails, the transaction rolls all of this back.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
        EXECUTE format('DROP TABLE %I CASCADE', t.tablename);
    END LOOP;
    FOR t IN
        SELECT p.oid::regprocedure AS routine
        FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.prokind IN ('f', 'p')
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          )
    LOOP
        EXECUTE format('DROP ROUTINE %s CASCADE', t.routine);
    END LOOP;
END
$$;
