//! The environment stamp: a one-row table naming the environment a database belongs to.

use std::fmt;

use config_core::Environment;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::catalog::{current_database, table_exists};
use crate::migrate::{self, MigrationReport};
use crate::{DbError, lock};

/// Tables that hold memories: a database with rows in them is not new, whatever its stamp says.
const MEMORY_TABLES: [&str; 2] = ["l0_raw", "l2_insights"];

/// What a database is stamped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// `current_database()`.
    pub database: String,
    pub environment: Environment,
    /// UTC, RFC 3339.
    pub stamped_at: String,
    pub stamped_by: String,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "database {} is stamped for {} (by {} at {})",
            self.database, self.environment, self.stamped_by, self.stamped_at
        )
    }
}

/// What [`stamp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StampOutcome {
    /// Stamped now; the schema was brought up to date first, since the stamp table is part of it.
    Stamped { migrations: MigrationReport },
    /// Already stamped for this environment; nothing changed.
    AlreadyStamped(Stamp),
}

/// Stamp a database for `environment` (idempotent). Only a database that holds no memories yet
/// may be stamped; one stamped for another environment is refused. Pending migrations are
/// applied first, under the same lock.
pub async fn stamp(
    pool: &PgPool,
    environment: Environment,
    stamped_by: &str,
) -> Result<StampOutcome, DbError> {
    let mut conn = lock::acquire(pool).await?;
    let result = stamp_locked(&mut conn, environment, stamped_by).await;
    lock::release(conn).await;
    result
}

/// The stamp, if it names `running`; otherwise why this process must not use the database.
pub async fn check_stamp(pool: &PgPool, running: Environment) -> Result<Stamp, DbError> {
    // A read-only transaction, rolled back on drop: through a pooler in transaction mode it
    // keeps one server connection for each statement's two exchanges (Parse, then Bind).
    let mut conn = pool
        .begin()
        .await
        .map_err(DbError::query("get a connection"))?;
    match read_stamp(&mut conn).await? {
        Some(stamp) if stamp.environment == running => Ok(stamp),
        Some(stamp) => Err(DbError::WrongEnvironment {
            database: stamp.database,
            stamped: stamp.environment,
            running,
        }),
        None => Err(DbError::Unstamped {
            database: current_database(&mut conn).await?,
            running,
        }),
    }
}

async fn stamp_locked(
    conn: &mut PgConnection,
    environment: Environment,
    stamped_by: &str,
) -> Result<StampOutcome, DbError> {
    if let Some(existing) = read_stamp(conn).await? {
        return if existing.environment == environment {
            Ok(StampOutcome::AlreadyStamped(existing))
        } else {
            Err(DbError::StampRefused {
                reason: format!("it is already stamped for {}", existing.environment),
                database: existing.database,
            })
        };
    }
    if holds_memories(conn).await? {
        return Err(DbError::StampRefused {
            database: current_database(conn).await?,
            reason: "it already holds memories but no stamp, so nothing shows which environment they belong to"
                .to_owned(),
        });
    }
    let migrations = migrate::apply(conn).await?;
    sqlx::query("INSERT INTO environment_stamp (environment, stamped_by) VALUES ($1, $2)")
        .bind(environment.as_str())
        .bind(stamped_by)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(DbError::query("write the environment stamp"))?;
    Ok(StampOutcome::Stamped { migrations })
}

/// `None` when there is no stamp table or no row in it.
pub(crate) async fn read_stamp(conn: &mut PgConnection) -> Result<Option<Stamp>, DbError> {
    if !table_exists(conn, "environment_stamp").await? {
        return Ok(None);
    }
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        r#"SELECT current_database()::text, environment,
                  to_char(stamped_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), stamped_by
           FROM environment_stamp"#,
    )
    .persistent(false)
    .fetch_optional(&mut *conn)
    .await
    .map_err(DbError::query("read the environment stamp"))?;
    row.map(|(database, environment, stamped_at, stamped_by)| {
        let environment = environment
            .parse()
            .map_err(|err: config_core::InvalidEnvironment| DbError::Query {
                context: format!("read the environment stamp of {database}"),
                reason: err.to_string(),
            })?;
        Ok(Stamp {
            database,
            environment,
            stamped_at,
            stamped_by,
        })
    })
    .transpose()
}

/// Whether any memory row exists. Under the row-level security of migration V7 a statement sees
/// only the rows of the tenant `app.tenant` names, so each tenant listed in `memory_tenants` is
/// looked at in turn (the session's setting is restored afterwards).
async fn holds_memories(conn: &mut PgConnection) -> Result<bool, DbError> {
    let mut tenants: Vec<Option<String>> = vec![None];
    if table_exists(conn, "memory_tenants").await? {
        let names: Vec<String> = sqlx::query_scalar("SELECT tenant FROM memory_tenants")
            .persistent(false)
            .fetch_all(&mut *conn)
            .await
            .map_err(DbError::query("list the tenants"))?;
        tenants.extend(names.into_iter().map(Some));
    }
    let before: Option<String> = sqlx::query_scalar("SELECT current_setting('app.tenant', true)")
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::query("read app.tenant"))?;
    let mut found = false;
    for tenant in &tenants {
        if let Some(tenant) = tenant {
            set_tenant(conn, tenant).await?;
        }
        if any_rows(conn).await? {
            found = true;
            break;
        }
    }
    if tenants.len() > 1 {
        set_tenant(conn, before.as_deref().unwrap_or("")).await?;
    }
    Ok(found)
}

async fn set_tenant(conn: &mut PgConnection, tenant: &str) -> Result<(), DbError> {
    sqlx::query("SELECT set_config('app.tenant', $1, false)")
        .bind(tenant)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(DbError::query("set app.tenant"))?;
    Ok(())
}

async fn any_rows(conn: &mut PgConnection) -> Result<bool, DbError> {
    for table in MEMORY_TABLES {
        if table_exists(conn, table).await? {
            // `table` is one of our constant names.
            let any: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {table})"
            )))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::query(format!("look for rows in {table}")))?;
            if any {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
