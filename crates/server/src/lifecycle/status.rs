//! The `lifecycle_status` table: each task's last outcome, written by the backup command and
//! the retention task, read by `memory_status` and `doctor`. It lives in the database (not in
//! the backup directory) so that every replica and every host sees the same answer, and a
//! backup that fails — even on another machine — shows up as a growing age of the last good one.

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Row};

const UPSERT: &str = include_str!("sql/status_upsert.sql");
const READ: &str = include_str!("sql/status_read.sql");

/// The last backups, as recorded after verification.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct BackupStatus {
    /// When the last backup that verified finished (UTC, RFC 3339); null if none ever did.
    pub last_good_at: Option<String>,
    /// Seconds since then.
    pub last_good_age_secs: Option<i64>,
    /// File name of the last good backup.
    pub last_good_file: Option<String>,
    /// When the last backup attempt ended, good or not.
    pub last_attempt_at: Option<String>,
    /// Why the last attempt failed; null when it succeeded.
    pub last_error: Option<String>,
}

/// The retention task's policy and its last run.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct RetentionStatus {
    /// Days raw turns are kept (0: forever), as the purging daemon is configured.
    pub raw_days: Option<u32>,
    /// Days insights are kept (0: forever).
    pub insight_days: Option<u32>,
    /// When the last run ended (UTC, RFC 3339).
    pub last_run_at: Option<String>,
    /// Raw turns the last successful run deleted.
    pub raw_deleted: Option<u64>,
    /// Insights the last successful run deleted.
    pub insights_deleted: Option<u64>,
    /// Insights that lost references to deleted turns in the last successful run.
    pub insights_unlinked: Option<u64>,
    /// Why the last run failed; null when it succeeded.
    pub last_error: Option<String>,
}

/// Both tasks.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct LifecycleStatus {
    pub backup: BackupStatus,
    pub retention: RetentionStatus,
}

/// Reads the table; an older schema without it yields empty statuses.
///
/// Unnamed statements in one transaction, as the store runs them: that also works through
/// PgBouncer in transaction mode.
pub async fn read_status(pool: &PgPool) -> Result<LifecycleStatus, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('lifecycle_status') IS NOT NULL")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    let mut status = LifecycleStatus::default();
    if !exists {
        tx.commit().await?;
        return Ok(status);
    }
    let rows = sqlx::query(READ)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    for row in rows {
        let task: String = row.try_get("task")?;
        let detail: Option<String> = row.try_get("detail")?;
        let detail: Value = detail
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        let number = |key: &str| detail.get(key).and_then(Value::as_u64);
        match task.as_str() {
            "backup" => {
                status.backup = BackupStatus {
                    last_good_at: row.try_get("last_ok_at")?,
                    last_good_age_secs: row.try_get("last_ok_age_secs")?,
                    last_good_file: detail
                        .get("file")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    last_attempt_at: row.try_get("last_attempt_at")?,
                    last_error: row.try_get("last_error")?,
                }
            }
            "retention" => {
                status.retention = RetentionStatus {
                    raw_days: number("raw_days").and_then(|n| u32::try_from(n).ok()),
                    insight_days: number("insight_days").and_then(|n| u32::try_from(n).ok()),
                    last_run_at: row.try_get("last_attempt_at")?,
                    raw_deleted: number("raw_deleted"),
                    insights_deleted: number("insights_deleted"),
                    insights_unlinked: number("insights_unlinked"),
                    last_error: row.try_get("last_error")?,
                }
            }
            _ => {}
        }
    }
    Ok(status)
}

/// Records a task's outcome: `Ok(detail)` or `Err(reason)`.
pub(crate) async fn record(
    pool: &PgPool,
    task: &str,
    outcome: Result<&Value, &str>,
) -> Result<(), sqlx::Error> {
    let (ok, error, detail) = match outcome {
        Ok(detail) => (true, None, Some(detail.to_string())),
        Err(reason) => (false, Some(reason), None),
    };
    let mut tx = pool.begin().await?;
    sqlx::query(UPSERT)
        .persistent(false)
        .bind(task)
        .bind(ok)
        .bind(error)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
