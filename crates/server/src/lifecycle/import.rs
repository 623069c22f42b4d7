//! `cognitive-memory-mcp import`: reads an [`export`](super::export) from stdin into the
//! environment's database.
//!
//! All or nothing: one transaction, committed only after the end line confirmed the counts, so a
//! truncated or malformed file changes nothing (the error names its line). New ids are assigned
//! and the insights' `source_refs` remapped to them. Idempotent: a turn or insight already
//! present (same content, time and other fields) is reused instead of inserted again, so
//! importing a file twice leaves one copy.

use std::collections::HashMap;
use std::io::BufRead;

use config_core::{Environment, Loaded};
use sqlx::{PgConnection, PgPool};

use super::export::{EXPORT_FORMAT, EXPORT_VERSION, Line};
use super::{LifecycleError, report, runtime};
use crate::cli::ImportArgs;
use crate::config::AppConfig;
use crate::exit;
use crate::memory::begin_for_tenant;
use crate::tenancy::{DEFAULT_TENANT, Tenant};

const FIND_TURN: &str = include_str!("sql/import_find_turn.sql");
const INSERT_TURN: &str = include_str!("sql/import_insert_turn.sql");
const FIND_INSIGHT: &str = include_str!("sql/import_find_insight.sql");
const INSERT_INSIGHT: &str = include_str!("sql/import_insert_insight.sql");

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub turns_added: u64,
    pub turns_present: u64,
    pub insights_added: u64,
    pub insights_present: u64,
}

pub fn command(loaded: &Loaded<AppConfig>, args: &ImportArgs) -> u8 {
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
            let from_tenant = args
                .from_tenant
                .as_deref()
                .map(|name| super::tenant_argument(Some(name), &loaded.config, "--from-tenant"))
                .transpose()?;
            import(
                &pool,
                environment,
                &tenant,
                from_tenant.as_ref(),
                std::io::stdin().lock(),
            )
            .await
        }
        .await;
        pool.close().await;
        result
    });
    match result {
        Ok(done) => {
            println!(
                "imported into {environment}: {} turn(s) added, {} already present; {} insight(s) added, {} already present",
                done.turns_added, done.turns_present, done.insights_added, done.insights_present
            );
            exit::OK
        }
        Err(err) => report(&err),
    }
}

fn bad(line: usize, reason: impl std::fmt::Display) -> LifecycleError {
    LifecycleError::Failed(format!(
        "the import is not valid at line {line}: {reason}; nothing was imported"
    ))
}

/// Imports the lines of `input` in one transaction.
/// Imports into `tenant`. A file whose header names another tenant (a file without one is of
/// `default`) is refused before anything is written, unless `from_tenant` names the file's
/// tenant: moving memories between tenants is deliberate.
pub async fn import(
    pool: &PgPool,
    environment: Environment,
    tenant: &Tenant,
    from_tenant: Option<&Tenant>,
    input: impl BufRead,
) -> Result<Imported, LifecycleError> {
    let mut tx = begin_for_tenant(pool, tenant)
        .await
        .map_err(LifecycleError::query("start the import"))?;
    let mut done = Imported::default();
    let mut turn_ids: HashMap<u64, i64> = HashMap::new();
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut insights = 0u64;
    let mut header = false;
    let mut ended = false;
    for (index, text) in input.lines().enumerate() {
        let number = index + 1;
        let text = text.map_err(|err| bad(number, format!("cannot read it: {err}")))?;
        if text.trim().is_empty() {
            continue;
        }
        if ended {
            return Err(bad(number, "there is more after the end line"));
        }
        let line: Line = serde_json::from_str(&text).map_err(|err| bad(number, err))?;
        match line {
            Line::Header {
                format,
                version,
                environment: from,
                tenant: file_tenant,
                ..
            } => {
                if header || number != 1 {
                    return Err(bad(number, "a header may only be the first line"));
                }
                if format != EXPORT_FORMAT || version != EXPORT_VERSION {
                    return Err(bad(
                        number,
                        format!("this is not a version {EXPORT_VERSION} {EXPORT_FORMAT} file"),
                    ));
                }
                let file_tenant = file_tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
                match from_tenant {
                    Some(named) if named.as_str() != file_tenant => {
                        return Err(LifecycleError::Refused(format!(
                            "--from-tenant {named} was given, but the file holds the memories of tenant {file_tenant}; nothing was imported"
                        )));
                    }
                    None if file_tenant != tenant.as_str() => {
                        return Err(LifecycleError::Refused(format!(
                            "the file holds the memories of tenant {file_tenant} and the target is tenant {tenant}; to import them into {tenant} on purpose, add --from-tenant {file_tenant} (or choose the tenant with --tenant); nothing was imported"
                        )));
                    }
                    _ => {}
                }
                if file_tenant != tenant.as_str() {
                    eprintln!("importing memories of tenant {file_tenant} into tenant {tenant}");
                }
                if from != environment {
                    eprintln!("importing memories exported from {from} into {environment}");
                }
                header = true;
            }
            _ if !header => {
                return Err(bad(number, "the file does not start with an export header"));
            }
            Line::Turn {
                reference,
                session_id,
                speaker,
                content,
                metadata,
                created_at,
            } => {
                let metadata = metadata.to_string();
                let key = serde_json::to_string(&(
                    &session_id,
                    &speaker,
                    &created_at,
                    &content,
                    &metadata,
                ))
                .unwrap_or_default();
                let earlier = seen.entry(key).or_insert(0);
                let offset = *earlier;
                *earlier += 1;
                let found: Option<i64> = sqlx::query_scalar(FIND_TURN)
                    .bind(&session_id)
                    .bind(&speaker)
                    .bind(&created_at)
                    .bind(&content)
                    .bind(&metadata)
                    .bind(offset)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|err| bad(number, err))?;
                let id = match found {
                    Some(id) => {
                        done.turns_present += 1;
                        id
                    }
                    None => {
                        done.turns_added += 1;
                        sqlx::query_scalar(INSERT_TURN)
                            .bind(&session_id)
                            .bind(&speaker)
                            .bind(&created_at)
                            .bind(&content)
                            .bind(&metadata)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|err| bad(number, err))?
                    }
                };
                if turn_ids.insert(reference, id).is_some() {
                    return Err(bad(number, format!("turn ref {reference} appears twice")));
                }
            }
            Line::Insight {
                reference: _,
                content,
                source_refs,
                tags,
                importance,
                created_at,
            } => {
                insights += 1;
                let sources = source_refs
                    .iter()
                    .map(|r| {
                        turn_ids.get(r).copied().ok_or_else(|| {
                            bad(number, format!("the insight cites turn ref {r}, which is not in the file above it"))
                        })
                    })
                    .collect::<Result<Vec<i64>, _>>()?;
                let key =
                    serde_json::to_string(&(&created_at, &content, &tags, importance, &sources))
                        .unwrap_or_default();
                let earlier = seen.entry(key).or_insert(0);
                let offset = *earlier;
                *earlier += 1;
                let (added, _) = insight(
                    &mut tx,
                    &created_at,
                    &content,
                    &tags,
                    importance,
                    &sources,
                    offset,
                )
                .await
                .map_err(|err| bad(number, err))?;
                if added {
                    done.insights_added += 1;
                } else {
                    done.insights_present += 1;
                }
            }
            Line::End {
                turns,
                insights: expected,
            } => {
                if turns != turn_ids.len() as u64 || expected != insights {
                    return Err(bad(
                        number,
                        format!(
                            "the end line counts {turns} turns and {expected} insights, but the file holds {} and {insights}",
                            turn_ids.len()
                        ),
                    ));
                }
                ended = true;
            }
        }
    }
    if !ended {
        return Err(LifecycleError::Failed(
            "the import ends without its end line: the file is truncated; nothing was imported"
                .to_owned(),
        ));
    }
    tx.commit()
        .await
        .map_err(LifecycleError::query("commit the import"))?;
    Ok(done)
}

/// Finds or inserts one insight; `(added, id)`.
async fn insight(
    conn: &mut PgConnection,
    created_at: &str,
    content: &str,
    tags: &[String],
    importance: f32,
    sources: &[i64],
    offset: i64,
) -> Result<(bool, i64), sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(FIND_INSIGHT)
        .bind(created_at)
        .bind(content)
        .bind(tags)
        .bind(importance)
        .bind(sources)
        .bind(offset)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = found {
        return Ok((false, id));
    }
    let id = sqlx::query_scalar(INSERT_INSIGHT)
        .bind(created_at)
        .bind(content)
        .bind(tags)
        .bind(importance)
        .bind(sources)
        .fetch_one(&mut *conn)
        .await?;
    Ok((true, id))
}
