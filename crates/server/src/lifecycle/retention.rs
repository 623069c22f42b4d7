//! Expiry of old memories in the daemon: `memory.retention.raw_days` and `insight_days`.
//!
//! Every `interval_secs` (the first run right after start-up) the task deletes expired rows in
//! batches of `batch_size`, each batch its own short transaction, with a pause between batches,
//! so no lock is held for long and concurrent calls see no spike. Deleted turns are removed from
//! the insights citing them in the same transaction, with the statement `forget` uses. Each
//! batch first takes a transaction-level advisory lock with `pg_try_advisory_xact_lock`: when
//! another replica holds it, this one leaves the round to that replica (it works through a
//! pooler in transaction mode too). The outcome — counts only, never content — is logged and
//! recorded in `lifecycle_status`, where `memory_status` reads it.
//!
//! Tenants: under row-level security (migration V7) a statement sees one tenant's rows, the one
//! its transaction sets. The run walks the tenants listed in `memory_tenants` (every tenant that
//! ever stored a memory; the insert trigger registers it) and purges each in transactions of its
//! own, so retention covers every tenant without any role that bypasses the policies.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::status;
use crate::config::RetentionConfig;
use crate::memory::{UNLINK, begin_for_tenant};
use crate::tenancy::Tenant;

const RAW_BATCH: &str = include_str!("sql/retention_raw.sql");
const INSIGHT_BATCH: &str = include_str!("sql/retention_insights.sql");
/// `pg_try_advisory_xact_lock` key: "cogmem" followed by 3. Only the retention task takes it.
const RETENTION_LOCK_KEY: i64 = 0x636f_676d_656d_0003;

/// The settings of the task, copied out of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub raw_days: u32,
    pub insight_days: u32,
    pub interval: Duration,
    pub batch_size: u32,
    pub batch_pause: Duration,
}

impl Policy {
    pub fn from_config(config: &RetentionConfig) -> Self {
        Self {
            raw_days: config.raw_days,
            insight_days: config.insight_days,
            interval: Duration::from_secs(config.interval_secs),
            batch_size: config.batch_size,
            batch_pause: Duration::from_millis(config.batch_pause_ms),
        }
    }
}

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub raw_deleted: u64,
    pub insights_deleted: u64,
    pub insights_unlinked: u64,
    /// Another replica held the lock, so this run left the work to it.
    pub yielded: bool,
}

/// Starts the periodic task; it ends when `stop` is cancelled.
pub fn spawn(pool: PgPool, policy: Policy, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        if policy.raw_days == 0 && policy.insight_days == 0 {
            tracing::info!(
                "retention: memories are kept forever (memory.retention.raw_days and insight_days are 0)"
            );
        }
        loop {
            let outcome = tokio::select! {
                outcome = run_once(&pool, &policy) => outcome,
                () = stop.cancelled() => return,
            };
            let recorded = match outcome {
                Ok(purged) if purged.yielded => {
                    tracing::debug!("retention: another replica is purging; skipped this round");
                    Ok(())
                }
                Ok(purged) => {
                    crate::telemetry::metrics::record_retention_run(
                        purged.raw_deleted,
                        purged.insights_deleted,
                    );
                    if purged.raw_deleted + purged.insights_deleted > 0 {
                        tracing::info!(
                            raw_deleted = purged.raw_deleted,
                            insights_deleted = purged.insights_deleted,
                            insights_unlinked = purged.insights_unlinked,
                            "retention: removed {} expired turn(s) and {} insight(s)",
                            purged.raw_deleted,
                            purged.insights_deleted
                        );
                    }
                    let detail = json!({
                        "raw_days": policy.raw_days,
                        "insight_days": policy.insight_days,
                        "raw_deleted": purged.raw_deleted,
                        "insights_deleted": purged.insights_deleted,
                        "insights_unlinked": purged.insights_unlinked,
                    });
                    status::record(&pool, "retention", Ok(&detail)).await
                }
                Err(err) => {
                    tracing::warn!(
                        "retention run failed (retried in {:?}): {err}",
                        policy.interval
                    );
                    status::record(&pool, "retention", Err(&err.to_string())).await
                }
            };
            if let Err(err) = recorded {
                tracing::warn!("retention: cannot record the run in lifecycle_status: {err}");
            }
            tokio::select! {
                () = tokio::time::sleep(policy.interval) => {}
                () = stop.cancelled() => return,
            }
        }
    })
}

const TENANTS: &str = "SELECT tenant FROM memory_tenants ORDER BY tenant";

/// One retention run over every tenant: for each, expired turns, then expired insights, batch by
/// batch.
pub async fn run_once(pool: &PgPool, policy: &Policy) -> Result<Purged, sqlx::Error> {
    let mut purged = Purged::default();
    if policy.raw_days == 0 && policy.insight_days == 0 {
        return Ok(purged);
    }
    // In a transaction, as every unnamed statement here: behind PgBouncer in transaction mode
    // sqlx's two exchanges (Parse/Describe, then Bind/Execute) could otherwise reach two server
    // connections ("unnamed prepared statement does not exist").
    let mut tx = pool.begin().await?;
    let names: Vec<String> = sqlx::query_scalar(TENANTS)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    for name in names {
        // The table's CHECK admits only valid names.
        let Ok(tenant) = Tenant::new(name) else {
            continue;
        };
        run_tenant(pool, policy, &tenant, &mut purged).await?;
        if purged.yielded {
            break;
        }
    }
    Ok(purged)
}

/// The expired memories of one tenant.
async fn run_tenant(
    pool: &PgPool,
    policy: &Policy,
    tenant: &Tenant,
    purged: &mut Purged,
) -> Result<(), sqlx::Error> {
    let tables = [
        (policy.raw_days, RAW_BATCH, true),
        (policy.insight_days, INSIGHT_BATCH, false),
    ];
    for (days, statement, raw) in tables {
        if days == 0 {
            continue;
        }
        loop {
            let mut tx = begin_for_tenant(pool, tenant).await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .persistent(false)
                .bind(RETENTION_LOCK_KEY)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                purged.yielded = true;
                return Ok(());
            }
            let deleted: Vec<i64> = sqlx::query_scalar(statement)
                .persistent(false)
                .bind(i32::try_from(days).unwrap_or(i32::MAX))
                .bind(i64::from(policy.batch_size))
                .fetch_all(&mut *tx)
                .await?;
            let unlinked = if raw && !deleted.is_empty() {
                sqlx::query_scalar::<_, i64>(UNLINK)
                    .persistent(false)
                    .bind(&deleted)
                    .fetch_all(&mut *tx)
                    .await?
                    .len()
            } else {
                0
            };
            tx.commit().await?;
            let n = deleted.len() as u64;
            if raw {
                purged.raw_deleted += n;
                purged.insights_unlinked += unlinked as u64;
            } else {
                purged.insights_deleted += n;
            }
            if n < u64::from(policy.batch_size) {
                break;
            }
            tokio::time::sleep(policy.batch_pause).await;
        }
    }
    Ok(())
}
