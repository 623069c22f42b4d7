-- Rows per table after a restore, compared with the manifest.
SELECT (SELECT count(*) FROM l0_raw) AS l0_raw,
       (SELECT count(*) FROM l2_insights) AS l2_insights,
       (SELECT count(*) FROM environment_stamp) AS environment_stamp
