-- Every lifecycle task's last outcome, with ages in whole seconds (NULL when it never succeeded).
SELECT task,
       to_char(last_ok_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_ok_at,
       extract(epoch FROM now() - last_ok_at)::bigint AS last_ok_age_secs,
       to_char(last_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_attempt_at,
       last_error,
       detail::text AS detail
FROM lifecycle_status
