//! `cognitive-memory-mcp export`: memories as JSON Lines, for moving them between environments
//! or installations ([`super::import`] reads them back).
//!
//! The file is a header line, one line per turn, one per insight, and an end line with the
//! counts (so a truncated file is recognised). Database ids stay behind: each turn and insight
//! gets a `ref` numbered from 1 in export order, and insights cite turns by `source_refs`. So an
//! export, imported into an empty database and exported again, is the same file apart from the
//! header. A session or time filter keeps only the citations of turns inside the export.
//!
//! One file holds one tenant's memories (`--tenant`, default `memory.tenant`), named in the
//! header; the export reads them with that tenant set (row-level security, migration V7). A copy
//! of every tenant at once is a backup.

use std::collections::HashMap;
use std::io::Write;

use config_core::{Environment, Loaded};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Row};

use super::{LifecycleError, report, runtime};
use crate::cli::ExportArgs;
use crate::config::AppConfig;
use crate::exit;
use crate::memory::begin_statement;
use crate::tenancy::Tenant;

const TURNS: &str = include_str!("sql/export_turns.sql");
const INSIGHTS: &str = include_str!("sql/export_insights.sql");
/// `format` of the header line.
pub const EXPORT_FORMAT: &str = "cognitive-memory-export";
pub const EXPORT_VERSION: u32 = 1;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    Header {
        format: String,
        version: u32,
        #[serde(with = "super::environment_name")]
        environment: Environment,
        database: String,
        session: Option<String>,
        since: Option<String>,
        /// Whose memories the file holds (files from before tenancy have none: `default`).
        #[serde(default)]
        tenant: Option<String>,
    },
    Turn {
        #[serde(rename = "ref")]
        reference: u64,
        session_id: String,
        speaker: String,
        content: String,
        metadata: Value,
        created_at: String,
    },
    Insight {
        #[serde(rename = "ref")]
        reference: u64,
        content: String,
        source_refs: Vec<u64>,
        tags: Vec<String>,
        importance: f32,
        created_at: String,
    },
    End {
        turns: u64,
        insights: u64,
    },
}

pub fn command(loaded: &Loaded<AppConfig>, args: &ExportArgs) -> u8 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let environment = loaded.resolution.environment;
    let result = runtime.block_on(async {
        let pool = super::connect(&loaded.config.database).await?;
        let result = async {
            db::check_stamp(&pool, environment).await?;
            let tenant =
                super::tenant_argument(args.tenant.as_deref(), &loaded.config, "--tenant")?;
            let stdout = std::io::stdout().lock();
            let mut out = std::io::BufWriter::new(stdout);
            export(
                &pool,
                environment,
                &tenant,
                args.session.as_deref(),
                args.since.as_deref(),
                &mut out,
            )
            .await
        }
        .await;
        pool.close().await;
        result
    });
    match result {
        Ok((turns, insights)) => {
            eprintln!(
                "exported {turns} turn(s) and {insights} insight(s) of tenant {} from {environment}",
                args.tenant
                    .as_deref()
                    .unwrap_or(&loaded.config.memory.tenant)
            );
            exit::OK
        }
        Err(err) => report(&err),
    }
}

/// Writes the export to `out`; returns the numbers of turns and insights.
pub async fn export(
    pool: &PgPool,
    environment: Environment,
    tenant: &Tenant,
    session: Option<&str>,
    since: Option<&str>,
    out: &mut impl Write,
) -> Result<(u64, u64), LifecycleError> {
    if let Some(since) = since {
        // Checked by PostgreSQL's own parser, so what is accepted is what filters.
        sqlx::query("SELECT $1::timestamptz")
            .bind(since)
            .execute(pool)
            .await
            .map_err(|_| {
                LifecycleError::Refused(format!(
                    "--since {since:?} is not a timestamp; use e.g. 2026-11-01 or 2026-11-01T08:00:00Z"
                ))
            })?;
    }
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await
        .map_err(LifecycleError::query("name the database"))?;
    let write_error =
        |err: std::io::Error| LifecycleError::Failed(format!("cannot write the export: {err}"));
    let emit = |line: &Line, out: &mut dyn Write| -> Result<(), LifecycleError> {
        serde_json::to_writer(&mut *out, line)
            .map_err(|err| LifecycleError::Failed(format!("cannot write the export: {err}")))?;
        out.write_all(b"\n").map_err(write_error)
    };
    emit(
        &Line::Header {
            format: EXPORT_FORMAT.to_owned(),
            version: EXPORT_VERSION,
            environment,
            database,
            session: session.map(str::to_owned),
            since: since.map(str::to_owned),
            tenant: Some(tenant.to_string()),
        },
        out,
    )?;
    // One snapshot for both tables, so every cited turn of a full export is in it.
    // ... of the tenant only (row-level security).
    let begin = begin_statement(tenant).replacen(
        "BEGIN",
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        1,
    );
    let mut tx = pool
        .begin_with(sqlx::AssertSqlSafe(begin))
        .await
        .map_err(LifecycleError::query("start the export"))?;
    let mut refs: HashMap<i64, u64> = HashMap::new();
    {
        let mut rows = sqlx::query(TURNS).bind(session).bind(since).fetch(&mut *tx);
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(LifecycleError::query("read the turns"))?
        {
            let reference = refs.len() as u64 + 1;
            let id: i64 = row
                .try_get("id")
                .map_err(LifecycleError::query("read the turns"))?;
            refs.insert(id, reference);
            let metadata: String = row
                .try_get("metadata")
                .map_err(LifecycleError::query("read the turns"))?;
            let line = Line::Turn {
                reference,
                session_id: row
                    .try_get("session_id")
                    .map_err(LifecycleError::query("read the turns"))?,
                speaker: row
                    .try_get("speaker")
                    .map_err(LifecycleError::query("read the turns"))?,
                content: row
                    .try_get("content")
                    .map_err(LifecycleError::query("read the turns"))?,
                metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
                created_at: row
                    .try_get("created_at")
                    .map_err(LifecycleError::query("read the turns"))?,
            };
            emit(&line, out)?;
        }
    }
    let turns = refs.len() as u64;
    let mut insights = 0u64;
    {
        let mut rows = sqlx::query(INSIGHTS)
            .bind(session)
            .bind(since)
            .fetch(&mut *tx);
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(LifecycleError::query("read the insights"))?
        {
            insights += 1;
            let read = LifecycleError::query("read the insights");
            let sources: Vec<i64> = row.try_get("source_ids").map_err(read)?;
            let line = Line::Insight {
                reference: insights,
                content: row
                    .try_get("content")
                    .map_err(LifecycleError::query("read the insights"))?,
                source_refs: sources
                    .iter()
                    .filter_map(|id| refs.get(id).copied())
                    .collect(),
                tags: row
                    .try_get("tags")
                    .map_err(LifecycleError::query("read the insights"))?,
                importance: row
                    .try_get("importance")
                    .map_err(LifecycleError::query("read the insights"))?,
                created_at: row
                    .try_get("created_at")
                    .map_err(LifecycleError::query("read the insights"))?,
            };
            emit(&line, out)?;
        }
    }
    tx.commit()
        .await
        .map_err(LifecycleError::query("finish the export"))?;
    emit(&Line::End { turns, insights }, out)?;
    out.flush().map_err(write_error)?;
    Ok((turns, insights))
}
