//! The embedded migrations, applied through sqlx with refinery's bookkeeping.
//!
//! refinery has no sqlx driver, but its async traits are public: [`Refinery`] adapts a
//! `PgConnection`. refinery takes no lock of its own; [`migrate`] holds the schema lock.

use std::fmt;

use refinery::Migration;
use refinery::error::Kind;
use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::catalog::table_exists;
use crate::{DbError, lock};

mod embedded {
    // Relative to this crate's manifest: the workspace's top-level `migrations/`.
    refinery::embed_migrations!("../../migrations");
}

/// refinery's bookkeeping table; part of the fingerprint as migrations, not as catalog.
pub(crate) const HISTORY_TABLE: &str = "refinery_schema_history";

/// One migration, embedded or applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i32,
    pub name: String,
    /// refinery's checksum over name, version and SQL.
    pub checksum: u64,
}

impl fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{}__{}", self.version, self.name)
    }
}

impl From<&Migration> for MigrationInfo {
    fn from(migration: &Migration) -> Self {
        MigrationInfo {
            version: migration.version(),
            name: migration.name().to_owned(),
            checksum: migration.checksum(),
        }
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationReport {
    /// Every embedded migration was already applied.
    UpToDate,
    /// These were applied now, in order.
    Applied(Vec<MigrationInfo>),
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationReport::UpToDate => f.write_str("schema up to date; no migration applied"),
            MigrationReport::Applied(applied) => {
                let names: Vec<String> = applied.iter().map(ToString::to_string).collect();
                write!(f, "applied {}", names.join(", "))
            }
        }
    }
}

/// Apply the pending embedded migrations, each in its own transaction, under the schema lock.
/// An applied migration that was edited, or is unknown to this build, aborts before anything
/// is applied.
pub async fn migrate(pool: &PgPool) -> Result<MigrationReport, DbError> {
    let mut conn = lock::acquire(pool).await?;
    let result = apply(&mut conn).await;
    lock::release(conn).await;
    result
}

/// The embedded migrations not yet applied, in order. Fails like [`migrate`] on edited or
/// unknown applied migrations.
pub async fn pending(pool: &PgPool) -> Result<Vec<MigrationInfo>, DbError> {
    // A read-only transaction, rolled back on drop: through a pooler in transaction mode it
    // keeps one server connection for each statement's two exchanges (Parse, then Bind).
    let mut conn = pool
        .begin()
        .await
        .map_err(DbError::query("get a connection"))?;
    let applied = applied_migrations(&mut conn).await?;
    let embedded = embedded_migrations();
    let newest_applied = applied.iter().map(|m| m.version).max();
    for done in &applied {
        match embedded.iter().find(|m| m.version == done.version) {
            Some(ours) if ours != done => {
                return Err(DbError::DivergentMigration {
                    version: done.version,
                    name: done.name.clone(),
                    applied_checksum: done.checksum,
                    embedded_checksum: ours.checksum,
                });
            }
            Some(_) => {}
            None => return Err(missing(done, true)),
        }
    }
    let pending: Vec<MigrationInfo> = embedded
        .into_iter()
        .filter(|m| !applied.iter().any(|done| done.version == m.version))
        .collect();
    if let Some(skipped) = pending
        .iter()
        .find(|m| newest_applied.is_some_and(|newest| m.version < newest))
    {
        return Err(missing(skipped, false));
    }
    Ok(pending)
}

/// Apply on a connection that already holds the schema lock.
pub(crate) async fn apply(conn: &mut PgConnection) -> Result<MigrationReport, DbError> {
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(&mut Refinery(conn))
        .await
        .map_err(from_refinery)?;
    let applied: Vec<MigrationInfo> = report
        .applied_migrations()
        .iter()
        .map(MigrationInfo::from)
        .collect();
    Ok(if applied.is_empty() {
        MigrationReport::UpToDate
    } else {
        MigrationReport::Applied(applied)
    })
}

/// What refinery's history table says, oldest first; empty when there is no table yet.
pub(crate) async fn applied_migrations(
    conn: &mut PgConnection,
) -> Result<Vec<MigrationInfo>, DbError> {
    if !table_exists(conn, HISTORY_TABLE).await? {
        return Ok(Vec::new());
    }
    let rows: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version",
    )
    .persistent(false)
    .fetch_all(&mut *conn)
    .await
    .map_err(DbError::query("read the migration history"))?;
    rows.into_iter()
        .map(|(version, name, checksum)| {
            let checksum = checksum.parse().map_err(|_| DbError::Query {
                context: "read the migration history".to_owned(),
                reason: format!("V{version}__{name} has a malformed checksum {checksum:?}"),
            })?;
            Ok(MigrationInfo {
                version,
                name,
                checksum,
            })
        })
        .collect()
}

fn embedded_migrations() -> Vec<MigrationInfo> {
    let mut migrations: Vec<MigrationInfo> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(MigrationInfo::from)
        .collect();
    migrations.sort_by_key(|m| m.version);
    migrations
}

fn missing(migration: &MigrationInfo, applied_only: bool) -> DbError {
    DbError::MissingMigration {
        version: migration.version,
        name: migration.name.clone(),
        applied_only,
    }
}

fn from_refinery(err: refinery::Error) -> DbError {
    match err.kind() {
        Kind::DivergentVersion(applied, embedded) => DbError::DivergentMigration {
            version: applied.version(),
            name: applied.name().to_owned(),
            applied_checksum: applied.checksum(),
            embedded_checksum: embedded.checksum(),
        },
        Kind::MissingVersion(migration) => {
            let info = MigrationInfo::from(migration);
            let embedded = embedded_migrations()
                .iter()
                .any(|m| m.version == info.version);
            missing(&info, !embedded)
        }
        _ => DbError::Migration {
            reason: error_chain(&err),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// refinery's driver interface over a sqlx connection.
struct Refinery<'c>(&'c mut PgConnection);

impl AsyncTransaction for Refinery<'_> {
    type Error = sqlx::Error;

    /// All of `queries` in one transaction: a migration and its history row commit together.
    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let mut transaction = self.0.begin().await?;
        let mut count = 0;
        for query in queries {
            // Migration files are ours, embedded at build time; refinery builds the rest.
            sqlx::raw_sql(AssertSqlSafe(query))
                .execute(&mut *transaction)
                .await?;
            count += 1;
        }
        transaction.commit().await?;
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for Refinery<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows: Vec<(i32, String, String, String)> = sqlx::query_as(AssertSqlSafe(query))
            .persistent(false)
            .fetch_all(&mut *self.0)
            .await?;
        rows.into_iter()
            .map(|(version, name, applied_on, checksum)| {
                let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
                    .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
                let checksum = checksum
                    .parse::<u64>()
                    .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
                Ok(Migration::applied(version, name, applied_on, checksum))
            })
            .collect()
    }
}

impl AsyncMigrate for Refinery<'_> {}
