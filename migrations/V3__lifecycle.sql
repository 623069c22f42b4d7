-- Data lifecycle (issue #11): retention finds expired rows by creation time, and the backup and
-- retention tasks record their last outcome for `doctor` and `memory_status`.

-- The retention purge walks rows older than the window; without these it would scan each table.
CREATE INDEX l0_raw_created_at_idx ON l0_raw (created_at);
CREATE INDEX l2_insights_created_at_idx ON l2_insights (created_at);

-- One row per lifecycle task: when it last succeeded, when it last ran and why that run failed.
-- `detail` holds counts and settings (never memory content).
CREATE TABLE lifecycle_status (
    task            text        PRIMARY KEY CHECK (task IN ('backup', 'retention')),
    last_ok_at      timestamptz,
    last_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
