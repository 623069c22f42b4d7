-- Inside the REPEATABLE READ transaction whose snapshot pg_dump shares (--snapshot): the
-- snapshot's name, the row counts the dump will hold, and its time for the file name and manifest.
SELECT pg_export_snapshot() AS snapshot,
       (SELECT count(*) FROM l0_raw) AS l0_raw,
       (SELECT count(*) FROM l2_insights) AS l2_insights,
       (SELECT count(*) FROM environment_stamp) AS environment_stamp,
       to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS.MS"Z"') AS file_stamp,
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS taken_at,
       floor(extract(epoch FROM now()))::bigint AS taken_unix
