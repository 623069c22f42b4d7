-- Sent by restore before the backup's own statements, in the same transaction: drop every
-- table, every function and every text search configuration and dictionary of the current
-- schema (memories, stamp, migration history, the search functions and V11's stop-word
-- configurations, and objects of migrations newer than the backup), so the backup is restored
-- into an empty schema and the migrations that follow bring it up to date. Objects that belong
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
    FOR t IN
        SELECT c.oid::regconfig AS config
        FROM pg_ts_config c
        WHERE c.cfgnamespace = current_schema()::regnamespace
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_ts_config'::regclass AND d.objid = c.oid AND d.deptype = 'e'
          )
    LOOP
        EXECUTE format('DROP TEXT SEARCH CONFIGURATION %s CASCADE', t.config);
    END LOOP;
    FOR t IN
        SELECT d.oid::regdictionary AS dictionary
        FROM pg_ts_dict d
        WHERE d.dictnamespace = current_schema()::regnamespace
          AND NOT EXISTS (
              SELECT 1 FROM pg_depend e
              WHERE e.classid = 'pg_ts_dict'::regclass AND e.objid = d.oid AND e.deptype = 'e'
          )
    LOOP
        EXECUTE format('DROP TEXT SEARCH DICTIONARY %s CASCADE', t.dictionary);
    END LOOP;
END
$$;
