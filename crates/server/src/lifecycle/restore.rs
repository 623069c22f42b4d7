//! `cognitive-memory-mcp restore --from FILE`: a backup back into the environment's database.
//!
//! Everything that can refuse does so before the target is touched, in this order: the file
//! against its manifest (size, SHA-256) — so a truncated or damaged file is found first; the
//! backup's environment against the target's ([`decide`]); the target's own stamp; a target
//! holding memories without `--replace`; `pg_restore --list` with tools of the server's major
//! version. Only then one `psql --single-transaction` run drops the schema's tables, replays
//! the backup and (for a refresh) restamps the database — all or nothing. Afterwards the schema
//! fingerprint and row counts are compared with the manifest and pending migrations applied.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use config_core::{Environment, Loaded};
use sqlx::{PgPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backup::{self, Manifest};
use super::tools::{self, LibpqEnv, PgTools};
use super::{LifecycleError, operator, report, runtime};
use crate::cli::RestoreArgs;
use crate::config::AppConfig;
use crate::exit;
use crate::memory::begin_for_tenant;
use crate::tenancy::Tenant;

const CLEAR: &str = include_str!("sql/restore_clear.sql");
const COUNTS: &str = include_str!("sql/restore_counts.sql");
const TABLE_EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// How a backup may go into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// The backup is of the target's own environment.
    Same,
    /// A deliberate refresh of a lower environment from a higher one's backup: the restored
    /// database is restamped for the target.
    Refresh { from: Environment },
}

/// Whether a backup of `backup` may be restored into `target`, given `--from-environment`.
/// Production only ever takes its own backups; a lower environment takes a higher one's only
/// when `--from-environment` names it.
pub fn decide(
    backup: Environment,
    target: Environment,
    from_environment: Option<Environment>,
) -> Result<Permission, LifecycleError> {
    if let Some(from) = from_environment
        && from != backup
    {
        return Err(LifecycleError::Refused(format!(
            "--from-environment {from} was given, but the backup is of {backup}; nothing was changed in {target}"
        )));
    }
    if backup == target {
        return Ok(Permission::Same);
    }
    if target == Environment::Production {
        return Err(LifecycleError::Refused(format!(
            "this is a {backup} backup and the target is production: production is only ever restored from its own backups; nothing was changed in production"
        )));
    }
    if backup < target {
        return Err(LifecycleError::Refused(format!(
            "this is a {backup} backup and the target is {target}: a higher environment is never refreshed from a lower one; nothing was changed in {target}"
        )));
    }
    match from_environment {
        Some(from) => Ok(Permission::Refresh { from }),
        None => Err(LifecycleError::Refused(format!(
            "this is a {backup} backup and the target is {target}; to refresh {target} from {backup} on purpose, add --from-environment {backup} (the database is then restamped for {target}); nothing was changed in {target}"
        ))),
    }
}

pub fn command(loaded: &Loaded<AppConfig>, args: &RestoreArgs) -> u8 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let environment = loaded.resolution.environment;
    match runtime.block_on(run(&loaded.config, environment, args)) {
        Ok(summary) => {
            println!("{summary}");
            exit::OK
        }
        Err(err) => report(&err),
    }
}

/// Restores `args.from` into `environment`'s database; returns a summary.
pub async fn run(
    config: &AppConfig,
    environment: Environment,
    args: &RestoreArgs,
) -> Result<String, LifecycleError> {
    let started = Instant::now();
    let from_environment = args
        .from_environment
        .as_deref()
        .map(str::parse::<Environment>)
        .transpose()
        .map_err(|err| LifecycleError::Refused(format!("--from-environment: {err}")))?;
    let manifest = backup::check_file(&args.from)?;
    let permission = decide(manifest.environment, environment, from_environment)?;

    let pool = super::connect(&config.database).await?;
    let result = restore(&pool, config, environment, args, &manifest, permission).await;
    pool.close().await;
    let summary = result?;
    Ok(format!(
        "{summary} in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}

async fn restore(
    pool: &PgPool,
    config: &AppConfig,
    environment: Environment,
    args: &RestoreArgs,
    manifest: &Manifest,
    permission: Permission,
) -> Result<String, LifecycleError> {
    let database = check_target(pool, environment, args.replace).await?;
    let (major, _) = tools::server_version(pool).await?;
    let tools = tools::find(config.backup.pg_bin_dir.as_deref(), major)?;
    backup::verify(
        &args.from,
        Some(tools.bin_dir.to_string_lossy().as_ref()),
        Some(major),
    )
    .await?;
    let libpq = LibpqEnv::from_url(&config.database.url)?;

    let restamp = match permission {
        Permission::Same => None,
        Permission::Refresh { from } => Some(format!(
            "restore --from-environment {from} of {} by {}",
            manifest.file,
            operator()
        )),
    };
    replay(&tools, &libpq, &args.from, environment, restamp.as_deref()).await?;
    if let Some(by) = &restamp {
        eprintln!(
            "refreshed {environment} database {database} from the {} backup {}; restamped for {environment} ({by})",
            manifest.environment, manifest.file
        );
    }

    let fingerprint = db::fingerprint(pool).await?;
    if fingerprint.hash != manifest.schema_fingerprint {
        return Err(LifecycleError::Failed(format!(
            "restored {database}, but its schema fingerprint {} differs from the manifest's {}: compare with `cargo xtask verify-env` before using it",
            fingerprint.hash, manifest.schema_fingerprint
        )));
    }
    let counts = count_every_tenant(pool).await?;
    for (table, expected) in &manifest.row_counts {
        let found = counts.get(table.as_str()).copied().unwrap_or(0);
        if u64::try_from(found).ok() != Some(*expected) {
            return Err(LifecycleError::Failed(format!(
                "restored {database}, but {table} holds {found} rows where the manifest says {expected}"
            )));
        }
    }
    db::check_stamp(pool, environment).await?;
    let migrations = db::migrate(pool).await?;
    let count = |table: &str| manifest.row_counts.get(table).copied().unwrap_or(0);
    Ok(format!(
        "restored {} into {environment} database {database}: {} turns, {} insights, fingerprint {} matches; {migrations}",
        manifest.file,
        count("l0_raw"),
        count("l2_insights"),
        &manifest.schema_fingerprint[..manifest.schema_fingerprint.len().min(12)],
    ))
}

/// Rows per table of [`COUNTS`], summed over every tenant: under the row-level security of
/// migration V7 one statement counts one tenant's rows, so each tenant listed in
/// `memory_tenants` is counted in a transaction of its own (before V7: one plain count).
async fn count_every_tenant(
    pool: &PgPool,
) -> Result<std::collections::BTreeMap<&'static str, i64>, LifecycleError> {
    let context = "count the rows of every tenant";
    let has_tenants: bool = sqlx::query_scalar(TABLE_EXISTS)
        .bind("memory_tenants")
        .fetch_one(pool)
        .await
        .map_err(LifecycleError::query(context))?;
    let tenants: Vec<Option<Tenant>> = if has_tenants {
        let names: Vec<String> = sqlx::query_scalar("SELECT tenant FROM memory_tenants")
            .fetch_all(pool)
            .await
            .map_err(LifecycleError::query(context))?;
        names
            .into_iter()
            .filter_map(|name| Tenant::new(name).ok())
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut counts = std::collections::BTreeMap::new();
    let stamp: i64 = sqlx::query_scalar("SELECT count(*) FROM environment_stamp")
        .fetch_one(pool)
        .await
        .map_err(LifecycleError::query(context))?;
    counts.insert("environment_stamp", stamp);
    for tenant in tenants {
        let row = match &tenant {
            Some(tenant) => {
                let mut tx = begin_for_tenant(pool, tenant)
                    .await
                    .map_err(LifecycleError::query(context))?;
                let row = sqlx::query(COUNTS)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(LifecycleError::query(context))?;
                tx.commit().await.map_err(LifecycleError::query(context))?;
                row
            }
            None => sqlx::query(COUNTS)
                .fetch_one(pool)
                .await
                .map_err(LifecycleError::query(context))?,
        };
        for table in ["l0_raw", "l2_insights"] {
            let n: i64 = row.try_get(table).map_err(LifecycleError::query(context))?;
            *counts.entry(table).or_insert(0) += n;
        }
    }
    Ok(counts)
}

/// The target's name, once it may be overwritten: stamped for `environment` (or not stamped
/// at all) and, without `replace`, holding no memories.
async fn check_target(
    pool: &PgPool,
    environment: Environment,
    replace: bool,
) -> Result<String, LifecycleError> {
    match db::check_stamp(pool, environment).await {
        Ok(_) | Err(db::DbError::Unstamped { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await
        .map_err(LifecycleError::query("name the target database"))?;
    let mut held = Vec::new();
    let exists: bool = sqlx::query_scalar(TABLE_EXISTS)
        .bind("l0_raw")
        .fetch_one(pool)
        .await
        .map_err(LifecycleError::query("inspect the target database"))?;
    if exists {
        let counts = count_every_tenant(pool).await?;
        for (table, what) in [("l0_raw", "turns"), ("l2_insights", "insights")] {
            let rows = counts.get(table).copied().unwrap_or(0);
            if rows > 0 {
                held.push(format!("{rows} {what}"));
            }
        }
    }
    if !held.is_empty() && !replace {
        return Err(LifecycleError::Refused(format!(
            "{environment} database {database} holds {}; add --replace to overwrite them with the backup (take a backup of them first); nothing was changed",
            held.join(" and ")
        )));
    }
    Ok(database)
}

/// `pg_restore -f -` piped into `psql --single-transaction`, between the statements that clear
/// the schema and (for a refresh) restamp it.
async fn replay(
    tools: &PgTools,
    libpq: &LibpqEnv,
    file: &Path,
    environment: Environment,
    restamp: Option<&str>,
) -> Result<(), LifecycleError> {
    let mut restore = tokio::process::Command::new(tools.pg_restore());
    restore
        .args(["--no-owner", "--no-privileges", "--file=-"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut psql = tokio::process::Command::new(tools.psql());
    psql.args([
        "--no-psqlrc",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        "--single-transaction",
        "--file=-",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    libpq.apply(&mut psql);
    let spawn_error = |tool: &Path| {
        let tool = tool.display().to_string();
        move |err: std::io::Error| LifecycleError::Failed(format!("cannot run {tool}: {err}"))
    };
    let mut restore = restore.spawn().map_err(spawn_error(&tools.pg_restore()))?;
    let mut psql = psql.spawn().map_err(spawn_error(&tools.psql()))?;
    let mut input = psql.stdin.take().expect("stdin is piped");
    let mut script = restore.stdout.take().expect("stdout is piped");
    let stderr_of = |stream: Option<tokio::process::ChildStderr>| {
        tokio::spawn(async move {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text).await;
            }
            text
        })
    };
    let restore_errors = stderr_of(restore.stderr.take());
    let psql_errors = stderr_of(psql.stderr.take());
    let epilogue = restamp.map(|by| {
        format!(
            "RESET search_path;\nUPDATE environment_stamp SET environment = '{}', stamped_at = now(), stamped_by = '{}';\n",
            environment.as_str(),
            by.replace('\'', "''")
        )
    });
    // `async move`: the feed owns both pipe ends, so when it stops early (psql exited) they are
    // closed with it and pg_restore gets EPIPE instead of blocking on a pipe nobody reads.
    let feed = async move {
        input.write_all(CLEAR.as_bytes()).await?;
        tokio::io::copy(&mut script, &mut input).await?;
        if let Some(epilogue) = &epilogue {
            input.write_all(epilogue.as_bytes()).await?;
        }
        input.shutdown().await?;
        std::io::Result::Ok(())
    };
    // A failed write means psql stopped early; its exit status and stderr say why.
    let _ = feed.await;
    let restore_status = restore.wait().await;
    let psql_status = psql.wait().await;
    let restore_errors = restore_errors.await.unwrap_or_default();
    let psql_errors = psql_errors.await.unwrap_or_default();
    match (restore_status, psql_status) {
        (Ok(r), Ok(p)) if r.success() && p.success() => Ok(()),
        (r, p) => Err(LifecycleError::Failed(format!(
            "the restore failed and was rolled back, the database is as it was (pg_restore: {}, psql: {}): {} {}",
            r.map_or_else(|e| e.to_string(), |s| s.to_string()),
            p.map_or_else(|e| e.to_string(), |s| s.to_string()),
            restore_errors.trim(),
            psql_errors.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::*;

    #[test]
    fn production_takes_only_its_own_backups() {
        assert_eq!(
            decide(Production, Production, None).unwrap(),
            Permission::Same
        );
        for backup in [Development, Test, Staging] {
            for flag in [None, Some(backup)] {
                let err = decide(backup, Production, flag).unwrap_err().to_string();
                assert!(
                    err.contains(backup.as_str()) && err.contains("production"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn a_lower_environment_is_refreshed_only_on_purpose() {
        let err = decide(Production, Development, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("production")
                && err.contains("development")
                && err.contains("--from-environment production"),
            "{err}"
        );
        assert_eq!(
            decide(Production, Staging, Some(Production)).unwrap(),
            Permission::Refresh { from: Production }
        );
        assert!(decide(Production, Test, Some(Staging)).is_err());
        assert!(decide(Development, Test, Some(Development)).is_err());
    }
}
