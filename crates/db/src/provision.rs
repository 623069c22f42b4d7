//! Per-environment database and login role, created by an administrator connection.

use std::fmt;

use config_core::Environment;
use secrecy::{ExposeSecret, SecretString};
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres};

use crate::stamp::read_stamp;
use crate::{DbError, scram};

/// The database of each environment.
pub fn database_name(environment: Environment) -> &'static str {
    match environment {
        Environment::Development => "cognitive_memory_dev",
        Environment::Test => "cognitive_memory_test",
        Environment::Staging => "cognitive_memory_staging",
        Environment::Production => "cognitive_memory",
    }
}

/// The login role of each environment; only it may connect to that environment's database.
pub fn role_name(environment: Environment) -> &'static str {
    match environment {
        Environment::Development => "mcp_user_dev",
        Environment::Test => "mcp_user_test",
        Environment::Staging => "mcp_user_staging",
        Environment::Production => "mcp_user",
    }
}

/// What to do about the role's password.
#[derive(Debug, Clone, Copy)]
pub enum RolePassword<'a> {
    /// No password (local peer/trust access only); an existing password is left alone.
    NoPassword,
    /// Give a new role this password; an existing role keeps its own.
    SetOnCreate(&'a SecretString),
    /// Make this the role's password, also when the role exists (rotation).
    Set(&'a SecretString),
}

/// One thing [`provision`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionChange {
    RoleCreated,
    LoginEnabled,
    PasswordSet,
    DatabaseCreated,
    OwnerChanged,
    PublicConnectRevoked,
    ConnectGranted,
}

impl fmt::Display for ProvisionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProvisionChange::RoleCreated => "created the role",
            ProvisionChange::LoginEnabled => "allowed the role to log in",
            ProvisionChange::PasswordSet => "set the role's password",
            ProvisionChange::DatabaseCreated => "created the database",
            ProvisionChange::OwnerChanged => "made the role the database's owner",
            ProvisionChange::PublicConnectRevoked => "revoked CONNECT from PUBLIC",
            ProvisionChange::ConnectGranted => "granted CONNECT to the role",
        })
    }
}

/// What [`provision`] found and did; no changes means everything was already in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionOutcome {
    pub role: String,
    pub database: String,
    pub changes: Vec<ProvisionChange>,
}

impl ProvisionOutcome {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

impl fmt::Display for ProvisionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role {}, database {}: ", self.role, self.database)?;
        if self.changes.is_empty() {
            return f.write_str("already in place, nothing changed");
        }
        let changes: Vec<String> = self.changes.iter().map(ToString::to_string).collect();
        f.write_str(&changes.join(", "))
    }
}

/// The backup role of each environment: it reads every tenant's rows (`BYPASSRLS`,
/// `pg_read_all_data`) for `pg_dump` and the backup's row counts (`backup.database_url`), and
/// may change nothing.
pub fn backup_role_name(environment: Environment) -> &'static str {
    match environment {
        Environment::Development => "mcp_backup_dev",
        Environment::Test => "mcp_backup_test",
        Environment::Staging => "mcp_backup_staging",
        Environment::Production => "mcp_backup",
    }
}

/// What [`provision_backup_role`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupRoleOutcome {
    /// The role is in place; `changes` says what this run did (empty: nothing).
    InPlace {
        role: String,
        changes: Vec<&'static str>,
        /// The password given by this run (a new role, or `RolePassword::Set`).
        password_set: bool,
    },
    /// The administrator is no superuser: only a superuser may create a `BYPASSRLS` role.
    NotPermitted { role: String },
}

impl fmt::Display for BackupRoleOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupRoleOutcome::InPlace { role, changes, .. } if changes.is_empty() => {
                write!(f, "backup role {role}: already in place, nothing changed")
            }
            BackupRoleOutcome::InPlace { role, changes, .. } => {
                write!(f, "backup role {role}: {}", changes.join(", "))
            }
            BackupRoleOutcome::NotPermitted { role } => write!(
                f,
                "backup role {role}: not created (BYPASSRLS needs a superuser; docs/tenancy.md, \"Backups\", says what to use instead)"
            ),
        }
    }
}

/// Make sure `environment`'s backup role exists: `LOGIN BYPASSRLS`, no other attribute, member of
/// `pg_read_all_data`, allowed to connect to the environment's database. Idempotent. An
/// administrator that is no superuser gets [`BackupRoleOutcome::NotPermitted`], not an error.
pub async fn provision_backup_role(
    admin: &PgPool,
    environment: Environment,
    password: RolePassword<'_>,
) -> Result<BackupRoleOutcome, DbError> {
    let role = backup_role_name(environment);
    let database = database_name(environment);
    let mut conn = admin_connection(admin).await?;
    let conn = &mut *conn;
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::query("look up the administrator's attributes"))?;
    if !superuser {
        return Ok(BackupRoleOutcome::NotPermitted {
            role: role.to_owned(),
        });
    }
    let mut changes = Vec::new();
    let mut password_set = false;
    let attributes: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolcanlogin, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .persistent(false)
            .fetch_optional(&mut *conn)
            .await
            .map_err(DbError::query(format!("look up role {role}")))?;
    match attributes {
        None => {
            let mut create = format!(
                "CREATE ROLE {} LOGIN BYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE",
                quote_ident(role)
            );
            if let RolePassword::SetOnCreate(secret) | RolePassword::Set(secret) = password {
                create.push_str(&format!(" PASSWORD {}", quote_literal(&verifier(secret)?)));
                password_set = true;
            }
            execute(conn, create, format!("create role {role}")).await?;
            changes.push("created the role");
        }
        Some((can_login, bypasses)) => {
            if !can_login || !bypasses {
                let alter = format!("ALTER ROLE {} LOGIN BYPASSRLS", quote_ident(role));
                execute(conn, alter, format!("alter role {role}")).await?;
                changes.push("allowed it to log in and bypass row-level security");
            }
            if let RolePassword::Set(secret) = password
                && give_password(conn, role, secret).await?
            {
                password_set = true;
                changes.push("set the role's password");
            }
        }
    }
    let reads_all: bool =
        sqlx::query_scalar("SELECT pg_has_role($1, 'pg_read_all_data', 'MEMBER')")
            .bind(role)
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::query(format!("look up the memberships of {role}")))?;
    if !reads_all {
        let grant = format!("GRANT pg_read_all_data TO {}", quote_ident(role));
        execute(conn, grant, format!("grant pg_read_all_data to {role}")).await?;
        changes.push("granted pg_read_all_data");
    }
    if grant_connect(conn, role, database).await? {
        changes.push("granted CONNECT");
    }
    Ok(BackupRoleOutcome::InPlace {
        role: role.to_owned(),
        changes,
        password_set,
    })
}

/// What [`drop_database`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropOutcome {
    Dropped,
    NotFound,
}

/// Make sure `environment`'s role and database exist, the role owns the database, and only it
/// (and superusers) may connect. Idempotent. `admin` must be a superuser connection.
///
/// Passwords are sent as SCRAM verifiers computed here, never in clear text.
pub async fn provision(
    admin: &PgPool,
    environment: Environment,
    password: RolePassword<'_>,
) -> Result<ProvisionOutcome, DbError> {
    let role = role_name(environment);
    let database = database_name(environment);
    let mut conn = admin_connection(admin).await?;
    let conn = &mut *conn;
    let mut changes = Vec::new();

    let can_login: Option<bool> =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .persistent(false)
            .fetch_optional(&mut *conn)
            .await
            .map_err(DbError::query(format!("look up role {role}")))?;
    match can_login {
        None => {
            let mut create = format!("CREATE ROLE {} LOGIN", quote_ident(role));
            if let RolePassword::SetOnCreate(secret) | RolePassword::Set(secret) = password {
                create.push_str(&format!(" PASSWORD {}", quote_literal(&verifier(secret)?)));
            }
            execute(conn, create, format!("create role {role}")).await?;
            changes.push(ProvisionChange::RoleCreated);
            if !matches!(password, RolePassword::NoPassword) {
                changes.push(ProvisionChange::PasswordSet);
            }
        }
        Some(can_login) => {
            if !can_login {
                execute(
                    conn,
                    format!("ALTER ROLE {} LOGIN", quote_ident(role)),
                    format!("enable login for {role}"),
                )
                .await?;
                changes.push(ProvisionChange::LoginEnabled);
            }
            if let RolePassword::Set(secret) = password
                && give_password(conn, role, secret).await?
            {
                changes.push(ProvisionChange::PasswordSet);
            }
        }
    }

    let owner: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(database)
    .persistent(false)
    .fetch_optional(&mut *conn)
    .await
    .map_err(DbError::query(format!("look up database {database}")))?;
    match owner {
        None => {
            let create = format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(database),
                quote_ident(role)
            );
            execute(conn, create, format!("create database {database}")).await?;
            changes.push(ProvisionChange::DatabaseCreated);
        }
        Some(owner) if owner != role => {
            let alter = format!(
                "ALTER DATABASE {} OWNER TO {}",
                quote_ident(database),
                quote_ident(role)
            );
            execute(conn, alter, format!("give database {database} to {role}")).await?;
            changes.push(ProvisionChange::OwnerChanged);
        }
        Some(_) => {}
    }

    if may_connect(conn, "public", database).await? {
        let revoke = format!(
            "REVOKE CONNECT ON DATABASE {} FROM PUBLIC",
            quote_ident(database)
        );
        execute(
            conn,
            revoke,
            format!("revoke CONNECT on {database} from PUBLIC"),
        )
        .await?;
        changes.push(ProvisionChange::PublicConnectRevoked);
    }
    if grant_connect(conn, role, database).await? {
        changes.push(ProvisionChange::ConnectGranted);
    }

    Ok(ProvisionOutcome {
        role: role.to_owned(),
        database: database.to_owned(),
        changes,
    })
}

/// Drop a database, but only one stamped `development` or `test`: resetting must never be able
/// to reach staging or production data. Connections to it are terminated.
pub async fn drop_database(admin: &PgPool, database: &str) -> Result<DropOutcome, DbError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .persistent(false)
            .fetch_one(admin)
            .await
            .map_err(DbError::query(format!("look up database {database}")))?;
    if !exists {
        return Ok(DropOutcome::NotFound);
    }
    let options = (*admin.connect_options()).clone().database(database);
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(DbError::query(format!(
            "connect to {database} to read its stamp"
        )))?;
    let stamp = read_stamp(&mut conn).await;
    // Only the stamp was needed; failing to say goodbye changes nothing.
    let _ = conn.close().await;
    match stamp? {
        Some(stamp)
            if matches!(
                stamp.environment,
                Environment::Development | Environment::Test
            ) => {}
        Some(stamp) => {
            return Err(DbError::DropRefused {
                database: database.to_owned(),
                reason: format!(
                    "it is stamped for {}; only development and test databases may be dropped",
                    stamp.environment
                ),
            });
        }
        None => {
            return Err(DbError::DropRefused {
                database: database.to_owned(),
                reason: "it has no environment stamp; only databases stamped development or test may be dropped"
                    .to_owned(),
            });
        }
    }
    let mut conn = admin_connection(admin).await?;
    execute(
        &mut conn,
        format!("DROP DATABASE {} WITH (FORCE)", quote_ident(database)),
        format!("drop {database}"),
    )
    .await?;
    Ok(DropOutcome::Dropped)
}

async fn may_connect(conn: &mut PgConnection, role: &str, database: &str) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT has_database_privilege($1, $2, 'CONNECT')")
        .bind(role)
        .bind(database)
        .persistent(false)
        .fetch_one(conn)
        .await
        .map_err(DbError::query(format!(
            "check whether {role} may connect to {database}"
        )))
}

/// Whether the role's stored verifier already belongs to `password` (so setting it again would
/// change nothing). Unknown (not a superuser, or no SCRAM verifier) counts as no.
async fn password_matches(
    conn: &mut PgConnection,
    role: &str,
    password: &SecretString,
) -> Result<bool, DbError> {
    let stored: Result<Option<Option<String>>, sqlx::Error> =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(role)
            .persistent(false)
            .fetch_optional(conn)
            .await;
    match stored {
        Ok(stored) => Ok(stored
            .flatten()
            .is_some_and(|stored| scram::matches(&stored, password.expose_secret()))),
        Err(err) if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("42501") => {
            Ok(false)
        }
        Err(err) => Err(DbError::query(format!(
            "read the password verifier of {role}"
        ))(err)),
    }
}

fn verifier(password: &SecretString) -> Result<String, DbError> {
    scram::verifier(password.expose_secret()).map_err(|err| DbError::Query {
        context: "generate a password salt".to_owned(),
        reason: err.to_string(),
    })
}

/// Utility statements (CREATE ROLE, GRANT, …) take no bind parameters; names and literals are
/// quoted here instead.
async fn execute(
    conn: &mut PgConnection,
    statement: String,
    context: String,
) -> Result<(), DbError> {
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(conn)
        .await
        .map_err(DbError::query(context))?;
    Ok(())
}

/// PostgreSQL's `quote_ident`, always quoting.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL's `quote_literal`: doubled quotes, and the `E''` form when backslashes occur.
fn quote_literal(text: &str) -> String {
    let doubled = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// Gives `role` a new password, sent as a SCRAM verifier computed here (never in clear text, so
/// it appears in no server log). `admin` needs the right to alter the role (a superuser, or
/// CREATEROLE over it). Open sessions of the role stay logged in.
pub async fn set_password(
    admin: &PgPool,
    role: &str,
    password: &SecretString,
) -> Result<(), DbError> {
    let mut conn = admin_connection(admin).await?;
    alter_password(&mut conn, role, password).await
}

/// One connection of the administrator's pool.
async fn admin_connection(admin: &PgPool) -> Result<PoolConnection<Postgres>, DbError> {
    admin
        .acquire()
        .await
        .map_err(DbError::query("get an admin connection"))
}

/// `ALTER ROLE role PASSWORD <SCRAM verifier of secret>`.
async fn alter_password(
    conn: &mut PgConnection,
    role: &str,
    secret: &SecretString,
) -> Result<(), DbError> {
    let alter = format!(
        "ALTER ROLE {} PASSWORD {}",
        quote_ident(role),
        quote_literal(&verifier(secret)?)
    );
    execute(conn, alter, format!("set the password of {role}")).await
}

/// Gives the existing `role` the password `secret` unless it already has it; whether it did.
async fn give_password(
    conn: &mut PgConnection,
    role: &str,
    secret: &SecretString,
) -> Result<bool, DbError> {
    if password_matches(conn, role, secret).await? {
        return Ok(false);
    }
    alter_password(conn, role, secret).await?;
    Ok(true)
}

/// Grants `role` CONNECT on `database` unless it may connect already; whether it did.
async fn grant_connect(
    conn: &mut PgConnection,
    role: &str,
    database: &str,
) -> Result<bool, DbError> {
    if may_connect(conn, role, database).await? {
        return Ok(false);
    }
    let grant = format!(
        "GRANT CONNECT ON DATABASE {} TO {}",
        quote_ident(database),
        quote_ident(role)
    );
    execute(
        conn,
        grant,
        format!("grant CONNECT on {database} to {role}"),
    )
    .await?;
    Ok(true)
}
